"""Atomic file writes: write to a temporary name beside the target, then rename.

A crash or a SIGKILL mid-write leaves the previous file intact, never a torn one.
"""

import contextlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from typing import Any

import torch


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(fileobj)`` on a temporary file in path's folder, then rename it to path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:  # closes the descriptor however this block ends
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give it open()'s usual mode
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt and SystemExit too: never leave a *.tmp behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: str) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_pickle_dump(obj: Any, path: str) -> None:
    atomic_write(path, lambda fh: pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL))


def atomic_json_dump(obj: Any, path: str) -> None:
    atomic_write(path, lambda fh: json.dump(obj, fh, indent=2, sort_keys=True, default=str), "w")
