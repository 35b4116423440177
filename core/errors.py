"""The one exception type for mistakes a user can make (bad flags, files, data), and how a
script's end is told to its user: one line on stderr, never a traceback.

Scripts catch UserError and print ``error: <message>`` with exit code 2. An OS error reading or
writing a file (disk full, read-only or removed folder, permissions, a name too long) is one
too: ``FileAccessError``, "<file>: cannot write: No space left on device". Ctrl-C and SIGTERM
end a script with one line and exit code 130 (``Terminated``, ``install_startup_handlers``).
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import os
import signal
import sys


class UserError(ValueError):
    """A problem with the user's input, with a one-line message written for them."""


class FileAccessError(UserError, OSError):
    """An OS error on a named file, as one line: ``<file>: cannot <action>: <strerror>``.

    Both a UserError (the scripts print it as one line, exit 2) and an OSError carrying
    ``errno``, ``strerror`` and ``filename`` (code that catches OSError, e.g. to skip an
    optional cache in a read-only folder, still does). Make one with ``file_error``.
    """

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None):
        super().__init__(message)
        self.message = message
        self.errno, self.filename = errno, filename
        self.strerror = os.strerror(errno) if errno else None

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable (DataLoader workers, multiprocessing)
        return (type(self), (self.message, self.errno, self.filename))


def os_reason(error: BaseException) -> str:
    """What went wrong, in words, without the traceback's decoration: an OSError's strerror
    ("No space left on device"), else the first line of the message, else the type's name."""
    if isinstance(error, FileAccessError):
        return error.message
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def file_error(path: str, action: str, error: OSError) -> FileAccessError:
    """``FileAccessError`` "<path>: cannot <action>: <the errno's meaning>" for an OSError
    met while acting on ``path`` (action: "write", "read", "create the folder", ...)."""
    if isinstance(error, FileAccessError):
        return error
    return FileAccessError(f"{path}: cannot {action}: {os_reason(error)}", error.errno, path)


def describe_os_error(error: OSError) -> str:
    """One line for any OSError: the file(s) it names and the errno's meaning."""
    if isinstance(error, FileAccessError):
        return error.message
    reason = os_reason(error)
    names = [str(n) for n in (error.filename, getattr(error, "filename2", None)) if n is not None]
    if not names:  # no file to name (a socket, a pipe): the errno's name says where to look
        code = errno_codes.errorcode.get(error.errno) if error.errno else None
        return f"{reason} ({code})" if code else reason
    return f"{' -> '.join(names)}: {reason}"


def exit_with_error(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


# ---- interrupts ----------------------------------------------------------------------------
class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that every
    ``finally`` and ``except BaseException`` runs (temporary files removed, the run folder's
    lock released by atexit) instead of the process vanishing mid-write."""


def interrupt_message(interrupt: BaseException) -> str:
    what = "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
    return f"interrupted ({what}); files are only ever written whole"


def raise_terminated(_signum, _frame):
    raise Terminated()


# The project's command-line scripts: `import core` makes their start-up interruptible with one
# line (install_startup_handlers). Any other program importing core is left alone.
SCRIPTS = (
    "train.py",
    "train_imagenet.py",
    "generate_importance_score.py",
    "generate_importance_score_imagenet.py",
)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _startup_signal(signum, _frame):
    """Ctrl-C or SIGTERM while the script imports PyTorch and reads its flags (seconds):
    nothing has been written yet, so one line and exit 130, not an import traceback."""
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    print(f"error: interrupted ({name}) during start-up; nothing was written", file=sys.stderr,
          flush=True)  # fmt: skip
    raise SystemExit(130)


def is_project_script() -> bool:
    """Whether the running program is one of the project's scripts (train.py, ...)."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path:
        return False
    path = os.path.abspath(path)
    return os.path.dirname(path) == _ROOT and os.path.basename(path) in SCRIPTS


def install_startup_handlers() -> None:
    """For the project's scripts only: Ctrl-C and SIGTERM during start-up (before
    ``run_entry_point`` takes over) end with one line and exit code 130. A signal the parent
    set to be ignored stays ignored. Called by ``core/__init__.py``, so it is in place before
    the first heavy import."""
    if not is_project_script():
        return
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _startup_signal)
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _startup_signal)
    except ValueError:  # not the main thread: leave the handlers alone
        pass


def is_startup_handler(handler) -> bool:
    return handler is _startup_signal


@contextlib.contextmanager
def signals_deferred():
    """Hold off Ctrl-C and SIGTERM for a few lines that must not be cut in two (create a lock
    and register its release): a signal that comes meanwhile is delivered when the block
    ends. Python runs signal handlers in the main thread only, so swapping the handlers there
    covers signals the kernel hands to any thread; elsewhere this does nothing."""
    caught = []
    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if handler is not None:
                previous[signum] = signal.signal(signum, lambda s, _f: caught.append(s))
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


__all__ = [
    "FileAccessError",
    "Terminated",
    "UserError",
    "describe_os_error",
    "exit_with_error",
    "file_error",
    "install_startup_handlers",
    "interrupt_message",
    "os_reason",
    "raise_terminated",
    "signals_deferred",
]
