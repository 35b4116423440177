"""The one restricted unpickler for every pickle the project reads (score files, CIFAR batches).

Plain `pickle.load` calls any global a file names, so a file could run code. Here a global
resolves only through an allow-list of what pickled tensors, numpy arrays and builtin
containers need (docs/FAITHFULNESS.md F1, F2); any other global is refused before anything is
called. Nothing from a pickle is ever executed.
"""

from __future__ import annotations

import builtins
import collections
import io
import pickle
import re

import numpy as np
import torch
import torch._utils

try:  # numpy 2 renamed numpy.core to numpy._core; pickles name either
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global outside the allow-list; `name` is "module.qualname"."""

    def __init__(self, name: str):
        super().__init__(f"refusing to load the global {name}")
        self.name = name


def load(file, *, encoding: str = "ASCII"):
    """Unpickle one object from the binary file `file`, resolving only allow-listed globals.

    `encoding` decodes Python 2 str objects as pickle.Unpickler does: "latin1" for Python 2
    pickles holding numpy arrays (the CIFAR batches), "bytes" to keep them as bytes. Raises
    RefusedGlobal for a global outside the allow-list, other exceptions for malformed data.
    """
    return _RestrictedUnpickler(file, encoding=encoding).load()


def torch_load(source):
    """torch.load(weights_only=True) onto the CPU, a refused global raised as RefusedGlobal."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if refused:
            raise RefusedGlobal(refused.group(1)) from None
        # torch's own text advises weights_only=False, which is exactly what must not happen
        raise pickle.UnpicklingError(
            "it holds objects that torch.load(weights_only=True) refuses"
        ) from None


def _load_storage_bytes(data: bytes):
    """Stands in for torch.storage._load_from_bytes (which calls torch.load with
    weights_only=False): the bytes are a legacy torch.save of one storage, read safely."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("malformed storage record")
    return torch_load(io.BytesIO(data))


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad, hooks, metadata=None):
    """torch._utils._rebuild_tensor_v2, accepting only a storage and no backward hooks."""
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)) or hooks:
        raise pickle.UnpicklingError("malformed tensor record")
    return torch._utils._rebuild_tensor_v2(
        storage, storage_offset, size, stride, requires_grad, hooks, metadata
    )


def _latin1_encode(text, encoding="latin1"):
    """_codecs.encode as protocol-2 pickles of Python 3 bytes use it: latin1 only."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"unexpected codec {encoding!r}")
    return text.encode("latin1")


# (module, name) -> the object it stands for. Found with pickletools.dis on pickle.dumps of
# tensors (torch 2.14), numpy arrays (protocols 2, 4, 5; numpy 1 and 2 module names) and
# Python 2 / Python 3 protocol-2 pickles of builtin containers (sets, bytes, bytearrays).
_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _module in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_module}.multiarray", "_reconstruct")] = _reconstruct
    _ALLOWED_GLOBALS[(f"{_module}.numeric", "_frombuffer")] = _frombuffer
for _name in ("list", "dict", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int"):
    for _module in ("builtins", "__builtin__"):  # protocol < 3 pickles name the Python 2 module
        _ALLOWED_GLOBALS[(_module, _name)] = getattr(builtins, _name)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in _ALLOWED_GLOBALS; anything else is refused."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


__all__ = ["RefusedGlobal", "load", "torch_load"]
