"""Score files: write the reference's pickle format, read it without running code from it.

The reference format is `pickle.dump` of a dict of CPU tensors, whatever the file's name (the
ImageNet seed command's `imagenet-data-score.pt` too); the authors' scripts read it with
`pickle.load`. Plain unpickling calls any global the file names, so reading goes through
core.safe_pickle, which resolves only an allow-list of globals. A file is read by its bytes,
never its name: a torch.save file (zip, or the legacy format) through
torch.load(weights_only=True), anything else through the restricted unpickler.

Writing refuses what must not be written: NaN or infinite scores, and a path that names or
holds another kind of file (``check_output_path``, from core.file_kinds).
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from core import safe_pickle
from core.errors import UserError, os_reason
from core.file_kinds import check_output_path
from core.fileio import atomic_pickle_dump

# How torch.save files begin: a zip archive's local-file header (torch >= 1.6), or the legacy
# format's first record, the pickled magic number (protocol 2, torch.save's default).
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_TORCH_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)


def save_data_score(path: str, data_score: dict) -> None:
    """Write the score dict as the reference does, atomically: a plain pickle of CPU tensors,
    whatever the name (`.pt` too: the authors' train_imagenet.py reads its
    imagenet-data-score.pt with pickle.load).

    Refused with one line, writing nothing: anything but a dict of tensors; a float score
    holding NaN or infinity (a diverged run: every selection from it would be arbitrary); a
    path that names or holds a file of another kind (``check_output_path``: a score file
    replaces only a score file)."""
    if not isinstance(data_score, dict) or not all(
        isinstance(v, torch.Tensor) for v in data_score.values()
    ):
        raise UserError(f"refusing to write {path}: the scores must be a dict of tensors")
    check_finite_scores(path, data_score)
    check_output_path(path, "score")
    # clone: a view would pickle its whole underlying storage
    compact = {str(k): v.detach().cpu().clone() for k, v in data_score.items()}
    atomic_pickle_dump(compact, path)


def check_finite_scores(path: str, data_score: dict) -> None:
    """UserError naming the first float score with NaN or infinite values, and how many."""
    for name, value in data_score.items():
        if value.is_floating_point() or value.is_complex():
            bad = int((~torch.isfinite(value.detach())).sum())
            if bad:
                raise UserError(
                    f"refusing to write {path}: score '{name}' has {bad} NaN or infinite "
                    f"value(s) of {value.numel()} (did the training diverge?)"
                )


def load_data_score(path: str) -> dict[str, torch.Tensor]:
    """Read a score file (pickle or torch.save, told apart by the file's first bytes, not its
    name) without executing code from it.

    Returns a dict of CPU tensors (numpy arrays are converted). UserError for a missing
    file, a refused global, or content that is not a dict of arrays.
    """
    if os.path.isdir(path):
        raise UserError(f"score file {path} is a folder, not a file")
    if not os.path.isfile(path):
        raise UserError(f"score file not found: {path}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_LEGACY_TORCH_MAGIC))
            fh.seek(0)
            if head.startswith(_ZIP_MAGIC) or head == _LEGACY_TORCH_MAGIC:
                data = safe_pickle.torch_load(fh)
            else:
                data = safe_pickle.load(fh)
    except safe_pickle.RefusedGlobal as refused:
        raise UserError(f"refusing score file {path}: it names the global {refused.name}") from None
    except Exception as error:  # any malformed or hostile content, including weights_only's
        raise UserError(f"cannot read score file {path}: {os_reason(error)}") from None
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


def load_features(path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(features [N, D], targets or None) of a features-<task>.pt file, which
    generate_importance_score*.py writes beside the score file; read without running code
    from it (torch.load with weights_only). UserError for a missing or malformed file."""
    if not os.path.isfile(path):
        raise UserError(
            f"features file not found: {path} (generate_importance_score.py writes "
            "features-<task>.pt into the scored run's folder, beside its score file; "
            "pass --features-path if yours is elsewhere)"
        )
    try:
        data = safe_pickle.torch_load(path)
    except safe_pickle.RefusedGlobal as refused:
        raise UserError(
            f"refusing features file {path}: it names the global {refused.name}"
        ) from None
    except Exception as error:  # any malformed or hostile content
        raise UserError(f"cannot read features file {path}: {os_reason(error)}") from None
    features = data.get("features") if isinstance(data, dict) else None
    targets = data.get("targets") if isinstance(data, dict) else None
    if not isinstance(features, torch.Tensor) or not (
        targets is None or isinstance(targets, torch.Tensor)
    ):
        raise UserError(f"features file {path} holds no 'features' tensor [N, D]")
    return features, targets
