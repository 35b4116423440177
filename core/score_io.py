"""Score files: write the reference's pickle format, read it without running code from it.

The reference format is `pickle.dump` of a dict of CPU tensors (the authors' scripts read it
with `pickle.load`). Plain unpickling calls any global the file names, so reading uses an
allow-list of the few globals a pickled dict of tensors / numpy arrays needs.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile

import numpy as np
import torch
import torch._utils

from core.errors import UserError
from core.fileio import atomic_pickle_dump, atomic_torch_save

_np_core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core to numpy._core


class _Refused(pickle.UnpicklingError):
    """A global outside the allow-list."""


def _safe_torch_load(source):
    """torch.load(weights_only=True), with a refused global reported as _Refused."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if refused:
            raise _Refused(refused.group(1)) from None
        # torch's own text advises weights_only=False, which is exactly what must not happen
        raise pickle.UnpicklingError(
            "it holds objects that torch.load(weights_only=True) refuses"
        ) from None


def _load_storage_bytes(data: bytes):
    """Replaces torch.storage._load_from_bytes (which calls torch.load with weights_only=False):
    the embedded bytes are a legacy torch.save of one storage, read with the safe unpickler."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("malformed storage record")
    return _safe_torch_load(io.BytesIO(data))


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad, hooks, metadata=None):
    """torch._utils._rebuild_tensor_v2, accepting only a storage and no backward hooks."""
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)) or hooks:
        raise pickle.UnpicklingError("malformed tensor record")
    return torch._utils._rebuild_tensor_v2(
        storage, storage_offset, size, stride, requires_grad, hooks, metadata
    )


def _latin1_encode(text, encoding="latin1"):
    """_codecs.encode as protocol-2 pickles use it for bytes: latin1 only."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"unexpected codec {encoding!r}")
    return text.encode("latin1")


# (module, name) -> the object it may stand for. Found with pickletools.dis on pickle.dumps of
# tensors (torch 2.14) and numpy arrays (protocols 2, 4, 5; numpy 1 and 2 module names).
_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("collections", "OrderedDict"): __import__("collections").OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _module in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_module}.multiarray", "_reconstruct")] = _np_core.multiarray._reconstruct
    _ALLOWED_GLOBALS[(f"{_module}.numeric", "_frombuffer")] = _np_core.numeric._frombuffer


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in _ALLOWED_GLOBALS; anything else is refused."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def save_data_score(path: str, data_score: dict) -> None:
    """Write the score dict as the reference does, atomically: a pickle of CPU tensors, or
    torch.save for a path ending in .pt (as the ImageNet scripts name theirs, and as
    load_data_score reads such a path)."""
    if not isinstance(data_score, dict) or not all(
        isinstance(v, torch.Tensor) for v in data_score.values()
    ):
        raise UserError(f"refusing to write {path}: the scores must be a dict of tensors")
    # clone: a view would pickle its whole underlying storage
    compact = {str(k): v.detach().cpu().clone() for k, v in data_score.items()}
    if path.endswith(".pt"):
        atomic_torch_save(compact, path)
    else:
        atomic_pickle_dump(compact, path)


def load_data_score(path: str) -> dict[str, torch.Tensor]:
    """Read a score file (pickle or torch.save) without executing code from it.

    Returns a dict of CPU tensors (numpy arrays are converted). UserError for a missing
    file, a refused global, or content that is not a dict of arrays.
    """
    if not os.path.isfile(path):
        raise UserError(f"score file not found: {path}")
    try:
        if path.endswith(".pt") or zipfile.is_zipfile(path):
            data = _safe_torch_load(path)
        else:
            with open(path, "rb") as fh:
                data = _RestrictedUnpickler(fh).load()
    except _Refused as refused:
        raise UserError(f"refusing score file {path}: it names the global {refused}") from None
    except Exception as error:  # any malformed or hostile content, including weights_only's
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot read score file {path}: {reason}") from None
    return _as_tensor_dict(path, data)


def _as_tensor_dict(path: str, data) -> dict[str, torch.Tensor]:
    if not isinstance(data, dict):
        raise UserError(f"score file {path} holds a {type(data).__name__}, not a dict of scores")
    out = {}
    for name, value in data.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, torch.Tensor):
            raise UserError(
                f"score file {path}: '{name}' is a {type(value).__name__}, not a tensor or array"
            )
        out[str(name)] = value
    return out
