"""Atomic file writes: write to a temporary name beside the target, then rename.

A crash or a SIGKILL mid-write leaves the previous file intact, never a torn one; any exception
(KeyboardInterrupt, SystemExit and the project's SIGTERM included) removes the temporary file.
An OS error (disk full, read-only folder, permissions, a name too long) comes out as one line
naming the file, ``FileAccessError`` "<file>: cannot write: No space left on device", which is
also an OSError. ``check_writable_names`` checks up front that a folder can take a set of names.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
from collections.abc import Callable, Iterable
from typing import Any

import torch

from core.errors import FileAccessError, UserError, file_error

# The temporary file of `atomic_write`: "." + name + "." + 8 hex digits + ".tmp".
TEMP_SUFFIX = ".tmp"
TEMP_EXTRA = len(".") + len(".") + 8 + len(TEMP_SUFFIX)


def temp_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` (a bare file name) looks like an atomic_write temporary file."""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return False
    stem = name[: -len(TEMP_SUFFIX)]
    token = stem.rsplit(".", 1)[-1]
    return len(token) == 8 and all(c in "0123456789abcdef" for c in token) and len(stem) > 10


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(fileobj)`` on a temporary file in path's folder, then rename it to path.

    On any exception the temporary file is removed and ``path`` is as it was. An OSError on the
    way (making the folder, writing, syncing, renaming) is raised as FileAccessError naming
    ``path``; other exceptions from ``write`` pass through unchanged.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise file_error(path, "write", error) from None
    tmp = temp_name(os.path.join(folder, os.path.basename(path)))
    fd = handle = None
    try:
        # The name is chosen before the file exists, so that an interrupt anywhere from here
        # on knows what to remove. O_EXCL: never someone else's file; 0o666 minus the umask:
        # open()'s usual permissions.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        handle = os.fdopen(fd, mode)
        with handle as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if handle is None and fd is not None:
            _close_quietly(fd)
        _remove_quietly(tmp)
        if isinstance(error, OSError) and not isinstance(error, FileAccessError):
            raise file_error(path, "write", error) from None
        raise


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:  # never made (FileNotFoundError), or gone with its folder
        pass


class _RecordingFile:
    """A binary file for torch.save that remembers the first OSError of a write or flush:
    torch's zip writer swallows it and raises a RuntimeError about stream positions instead
    ("unexpected pos 704 vs 598"), which says nothing about a full disk."""

    def __init__(self, fh):
        self.fh, self.error = fh, None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        try:
            self.fh.flush()
        except OSError as error:
            self.error = self.error or error
            raise


def atomic_torch_save(obj: Any, path: str) -> None:
    def save(fh):
        recording = _RecordingFile(fh)
        try:
            torch.save(obj, recording)
        except RuntimeError as error:
            if recording.error is not None:
                raise recording.error from None
            if _is_stream_failure(error):  # no OSError seen: still a failed write of path
                first = str(error).strip().splitlines()[0]
                raise FileAccessError(f"{path}: cannot write: {first}", None, path) from None
            raise

    atomic_write(path, save)


def _is_stream_failure(error: RuntimeError) -> bool:
    text = str(error)
    return any(mark in text for mark in ("PytorchStreamWriter", "inline_container", "file write"))


def atomic_pickle_dump(obj: Any, path: str) -> None:
    atomic_write(path, lambda fh: pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL))


def atomic_json_dump(obj: Any, path: str) -> None:
    atomic_write(path, lambda fh: json.dump(obj, fh, indent=2, sort_keys=True, default=str), "w")


# ---- checking names up front ---------------------------------------------------------------
def _existing_ancestor(folder: str) -> tuple[str, list[str]]:
    """(the deepest existing folder above or at ``folder``, the names still to be made)."""
    folder = os.path.abspath(folder)
    missing = []
    while not os.path.lexists(folder):
        folder, name = os.path.split(folder)
        missing.append(name)
    return folder, missing[::-1]


def _limit(folder: str, name: str, default: int) -> int:
    try:
        value = os.pathconf(folder, name)
    except (OSError, ValueError, AttributeError):  # not reported, or not a POSIX system
        return default
    return value if value and value > 0 else default


def check_writable_names(folder: str, names: Iterable[str], *, temporary: bool = True) -> None:
    """UserError (one line naming the path) unless every file ``names`` (bare names) can be
    created in ``folder``, which need not exist yet: each folder still to be made and each
    name within the filesystem's NAME_MAX (``os.pathconf``; with the 14 characters an atomic
    write's temporary name adds when ``temporary``), whole paths within PATH_MAX, and the
    deepest existing folder a folder this process may write in (not read-only, not a file).

    For start-up, before hours of training: a 240-character --task-name fails here, not at the
    first checkpoint or when the scores are written.
    """
    base, missing = _existing_ancestor(folder)
    if not os.path.isdir(base):
        raise UserError(f"{base} is a file, not a folder: cannot create {folder} in it")
    name_max = _limit(base, "PC_NAME_MAX", 255)
    path_max = _limit(base, "PC_PATH_MAX", 4096)
    made = base
    for part in missing:
        made = os.path.join(made, part)
        if len(os.fsencode(part)) > name_max:
            raise UserError(
                f"{made}: cannot create the folder: its name is {len(os.fsencode(part))} bytes, "
                f"this filesystem allows {name_max} (a shorter --task-name or --base-dir)"
            )
    extra = TEMP_EXTRA if temporary else 0
    for name in names:
        path = os.path.join(os.path.abspath(folder), name)
        length = len(os.fsencode(name)) + extra
        if length > name_max:
            while_writing = f" while it is written ({extra} more for its temporary name)" if extra else ""  # fmt: skip
            raise UserError(
                f"{path}: cannot write: file name too long: {length} bytes{while_writing}, "
                f"this filesystem allows {name_max}; use a shorter --task-name or file name"
            )
        if len(os.fsencode(path)) + extra >= path_max:
            raise UserError(
                f"{path}: cannot write: the path is longer than this system's {path_max} bytes"
            )
    _check_can_write(os.path.abspath(folder), base)


def _check_can_write(folder: str, base: str) -> None:
    """UserError unless this process may create ``folder``'s files in ``base``, the deepest
    part of it that exists."""
    try:
        read_only = bool(os.statvfs(base).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (not POSIX): access() below still tells
        read_only = False
    reason = (
        "Read-only file system"
        if read_only
        else None
        if os.access(base, os.W_OK | os.X_OK)
        else "Permission denied"
    )
    if reason:
        where = "" if base == folder else f" (in {base})"
        raise UserError(f"{folder}: cannot write: {reason}{where}")
