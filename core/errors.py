"""The one exception type for mistakes a user can make (bad flags, files, data).

Scripts catch it and print ``error: <message>`` with exit code 2, no traceback.
"""

import sys


class UserError(ValueError):
    """A problem with the user's input, with a one-line message written for them."""


def exit_with_error(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)
