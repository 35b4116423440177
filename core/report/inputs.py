"""The files a report reads besides metrics.json, taken only from where they are recorded or
given, never searched for:

- score file: ``--data-score``, else the ``coreset.data_score_path`` a coreset run recorded
  (as it was passed to train.py: a relative path is relative to the folder the report runs in);
- features: ``--features``, else the features file of the run folder that holds that score
  file (generate_importance_score.py writes ``<run>/data-score-<task>.pickle`` and
  ``<run>/features-<task>.pt`` side by side; docs/FAITHFULNESS.md, T13);
- coreset indices: the run folder's ``coreset-indices.pt`` (docs/FAITHFULNESS.md, T14).
"""

import os
import pickle

import torch

from core.errors import UserError
from core.report.runs import run_folder

# what torch.load(weights_only=True) raises for a missing, torn or foreign file
LOAD_ERRORS = (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError)


def check_given(flag: str, path: str | None) -> None:
    """A file named on the command line must exist: a one-line error, not a skipped figure."""
    if path is not None and not os.path.isfile(path):
        raise UserError(f"{flag} {path!r}: no such file")


def recorded_score_path(run: dict) -> str | None:
    """The score file the run's coreset was selected from, as its metrics.json records it."""
    return (run["coreset"] or {}).get("data_score_path")


def load_features(path: str) -> torch.Tensor:
    """The penultimate features [N, D] of a ``features-<task>.pt`` file."""
    if not os.path.isfile(path):
        raise UserError(f"features file {path} is missing")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as exc:
        raise UserError(f"cannot read features file {path}: {exc}") from None
    features = payload.get("features") if isinstance(payload, dict) else None
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        raise UserError(f"{path} holds no 'features' [N, D] tensor")
    return features


def read_indices(run: dict, size: int) -> torch.Tensor:
    """The run's coreset indices, checked to fall within ``size`` examples; UserError naming
    the file otherwise (callers turn it into a note: a figure or an AUCpr goes missing)."""
    path = run_folder(run["abs_dir"]).indices
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing")
    try:
        indices = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(indices, torch.Tensor) or indices.dim() != 1 or indices.is_floating_point():
        raise UserError(f"{path} is not a 1-D tensor of indices")
    if len(indices) == 0 or int(indices.min()) < 0 or int(indices.max()) >= size:
        raise UserError(f"{path} is empty or indexes past the {size} examples")
    return indices.long()
