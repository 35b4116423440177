"""python -m core.report BASE_DIR [--out DIR]: see core/report/cli.py for the flags."""

import signal
import sys

from core.report import INTERRUPTED


def _interrupt(signum, frame):
    raise KeyboardInterrupt


# before the imports, which take seconds (torch): an early Ctrl-C or SIGTERM is one line too
signal.signal(signal.SIGTERM, _interrupt)
try:
    from core.report.cli import main
except KeyboardInterrupt:
    print(f"error: {INTERRUPTED}", file=sys.stderr)
    raise SystemExit(130) from None

main()
