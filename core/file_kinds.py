"""The project's own kinds of file, told apart by name and by content, and the checks that a
file read has the structure its kind needs, or that an output path may be written.

Two rules live here. A file that loads may still be of the wrong shape (``{'foo': 1}`` where a
run's td-<task>.pt belongs, a checkpoint without its model): ``check_structure`` says so in one
line naming the file, instead of a KeyError later. And nothing overwrites a file it did not
create for that purpose: ``check_output_path(path, kind)`` refuses an output path that names,
or holds, a file of another kind (``--data-score-path RUN/ckpt-last.pt``, a dataset batch), so
a score file may replace a score file and nothing else.
"""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import torch

from core import safe_pickle
from core.errors import UserError, file_error

# kind -> how a message names it
KINDS = {
    "score": "score file",
    "checkpoint": "run checkpoint (ckpt-last.pt / ckpt-best.pt)",
    "training dynamics": "run's training dynamics (td-<task>.pt)",
    "authors' training dynamics": "training-dynamics log of the authors' scripts",
    "features": "features file (features-<task>.pt)",
    "metrics": "run's metrics.json",
    "log": "run's log",
    "coreset indices": "run's coreset indices (coreset-indices.pt)",
    "label noise": "run's label noise (label-noise.pt)",
    "validation indices": "run's validation split (val-indices.pt)",
    "lock": "run folder's lock",
    "dataset": "dataset file",
    "image": "image",
    "json": "JSON file",
    "tensor": "saved tensor",
    "empty": "empty file",
    "unknown": "file of unknown content",
}

# (pattern of the whole file name, kind); the run folder's names as core.run_folder makes them
_BY_NAME = [
    (r"ckpt-(last|best)\.pt", "checkpoint"),
    (r"td-.+-epoch-\d+\.pickle", "authors' training dynamics"),
    (r"td-.+\.pickle", "authors' training dynamics"),
    (r"td-.+\.pt", "training dynamics"),
    (r"features-.+\.pt", "features"),
    (r"data-score-.+\.pickle", "score"),
    (r"metrics\.json", "metrics"),
    (r"log-train-.+\.log", "log"),
    (r"coreset-indices\.pt", "coreset indices"),
    (r"label-noise\.pt", "label noise"),
    (r"val-indices\.pt", "validation indices"),
    (r"\.lock", "lock"),
    # the datasets' own files (core.data.datasets reads them)
    (r"data_batch_\d+|test_batch|batches\.meta", "dataset"),
    (r"(train|test|extra)_32x32\.mat", "dataset"),
    (r"decoded-.+-uint8-[0-9a-f]+\.npy", "dataset"),
]
_CIFAR100_FILES = ("train", "test", "meta")
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_TORCH_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")


def kind_by_name(path: str) -> str | None:
    """The project's kind of file that ``path``'s name stands for, None for any other name."""
    name = os.path.basename(path)
    for pattern, kind in _BY_NAME:
        if re.fullmatch(pattern, name):
            return kind
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if parent == "cifar-100-python" and name in _CIFAR100_FILES:
        return "dataset"
    return None


def kind_of_object(obj) -> str:
    """The kind of file a loaded object is the content of."""
    if isinstance(obj, torch.Tensor):
        integer = not obj.is_floating_point() and not obj.is_complex() and obj.ndim == 1
        return "coreset indices" if integer else "tensor"
    if not isinstance(obj, dict):
        return "unknown"
    keys = {k.decode("latin1") if isinstance(k, bytes) else k for k in obj}
    if keys & {"model", "model_state_dict"}:
        return "checkpoint"
    if "scores" in keys and "epochs" in keys:
        return "training dynamics"
    if "training_dynamics" in keys:
        return "authors' training dynamics"
    if "features" in keys:
        return "features"
    if {"true_targets", "noisy"} <= keys:
        return "label noise"
    if (
        "data" in keys
        and keys & {"labels", "fine_labels"}
        or keys
        & {
            "label_names",
            "fine_label_names",
        }
    ):
        return "dataset"
    if all(
        isinstance(v, torch.Tensor) or (isinstance(v, np.ndarray) and v.dtype.kind in "biuf")
        for v in obj.values()
    ):
        return "score"
    return "unknown"


def kind_by_content(path: str) -> str:
    """The kind of the existing file ``path`` by what it holds (read without running code
    from it: torch.load(weights_only=True), the restricted unpickler). "unknown" for anything
    unreadable or foreign."""
    try:
        if os.path.getsize(path) == 0:
            return "empty"
        with open(path, "rb") as fh:
            head = fh.read(len(_LEGACY_TORCH_MAGIC))
            fh.seek(0)
            if head.startswith(_ZIP_MAGIC):
                try:  # mmap: only the pickled structure is read, not the tensors
                    obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except Exception:
                    return "unknown"  # a zip of something else (.npz, an archive)
                return kind_of_object(obj)
            if head == _LEGACY_TORCH_MAGIC:
                return _kind_or_unknown(lambda: safe_pickle.torch_load(fh))
            if head[:1] == b"\x80" or head[:1] in (b"(", b"}", b"]"):  # a pickle's opcodes
                return _kind_or_unknown(lambda: safe_pickle.load(fh, encoding="latin1"))
    except OSError as error:
        raise file_error(path, "read", error) from None
    if head.startswith(b"\x93NUMPY") or head.startswith(b"MATLAB"):
        return "dataset"
    if head.startswith(_IMAGE_MAGIC):
        return "image"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    return "unknown"


def _kind_or_unknown(load) -> str:
    try:
        return kind_of_object(load())
    except Exception:  # malformed, refused or foreign: not one of ours
        return "unknown"


def check_output_path(path: str, kind: str, flag: str | None = None) -> None:
    """UserError (one line) unless ``path`` may be written with a file of ``kind`` (a key of
    KINDS, e.g. "score", "features"): refused when its name is the name of another of the
    project's kinds (ckpt-last.pt, metrics.json, td-<task>.pt, features-<task>.pt, a dataset
    batch, ...), when it is a folder or not a regular file, and when it exists holding a file
    of another kind. A missing or empty file is fine. ``flag`` names the option in messages.

    Call it before the work whose result goes there (save_data_score calls it too).
    """
    what = f"{flag} {path}" if flag else path
    if os.path.isdir(path):
        raise UserError(f"{what} is a folder; give the path of the {KINDS[kind]} to write")
    named = kind_by_name(path)
    if named is not None and named != kind:
        raise UserError(
            f"refusing to write the {KINDS[kind]} to {what}: that name is the "
            f"{KINDS[named]}'s; choose another path"
        )
    if not os.path.lexists(path):
        return
    if not os.path.isfile(path):
        raise UserError(f"refusing to write the {KINDS[kind]} to {what}: it is not a regular file")
    found = kind_by_content(path)
    if found not in (kind, "empty"):
        raise UserError(
            f"refusing to overwrite {what} with the {KINDS[kind]}: it holds a {KINDS[found]}; "
            "choose another path (or remove that file if it is not needed)"
        )


# ---- structure of what was read ------------------------------------------------------------
def _type(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


def _keys(value) -> str:
    if not isinstance(value, dict):
        return _type(value)
    names = sorted(str(k) for k in value)
    return "the keys " + ", ".join(names[:6]) + (", ..." if len(names) > 6 else "") if names else "an empty dict"  # fmt: skip


def _need_dict(path: str, obj, what: str, keys) -> None:
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not {what}: it holds {_type(obj)}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise UserError(
            f"{path} is not {what}: it lacks '{missing[0]}' (it holds {_keys(obj)}); "
            "written by other code, or damaged"
        )


def _need(path: str, ok: bool, message: str) -> None:
    if not ok:
        raise UserError(f"{path}: {message}")


def _is_weights(value) -> bool:
    return isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values())


_OUR_CHECKPOINT = ("model", "optimizer", "scheduler", "position", "best_acc", "last_acc",
                   "history", "train_time_s", "images_seen", "rng")  # fmt: skip
_DYNAMICS_STATE = ("num_examples", "num_classes", "el2n_epochs", "counts", "sums",
                   "last_correctness")  # fmt: skip


def _check_checkpoint(path: str, obj) -> None:
    best = os.path.basename(path) == "ckpt-best.pt"
    what = "a checkpoint of this project's or the authors' training scripts"
    if isinstance(obj, dict) and "model_state_dict" in obj and "model" not in obj:  # theirs
        _need(path, _is_weights(obj["model_state_dict"]), "'model_state_dict' is not a dict of tensors")  # fmt: skip
        return
    _need_dict(path, obj, what, ("model",) if best else _OUR_CHECKPOINT)
    _need(path, _is_weights(obj["model"]), "'model' is not a dict of tensors (a state_dict)")
    if best:
        return
    position = obj["position"]
    _need(
        path,
        isinstance(position, dict)
        and all(isinstance(position.get(k), int) for k in ("iteration", "epoch", "batch")),
        "'position' lacks the integer iteration, epoch and batch",
    )
    for name in ("optimizer", "scheduler"):
        _need(path, isinstance(obj[name], dict), f"'{name}' is not a state dict")
    rng = obj["rng"]
    _need(path, isinstance(rng, dict) and isinstance(rng.get("torch"), torch.Tensor),
          "'rng' lacks the CPU generator's state")  # fmt: skip
    # the run's settings (core.settings.RunSettings.record), or the flags older runs kept
    args = obj.get("settings", obj.get("args"))
    _need(path, isinstance(args, dict) and isinstance(args.get("network"), str),
          "holds no run settings (no 'settings' or 'args' with a network)")  # fmt: skip
    _need(path, isinstance(obj["history"], list), "'history' is not a list")
    numbers = [obj[k] for k in ("best_acc", "train_time_s", "images_seen")]
    _need(
        path,
        all(isinstance(v, (int, float)) for v in numbers)
        and (obj["last_acc"] is None or isinstance(obj["last_acc"], (int, float))),
        "'best_acc', 'last_acc', 'train_time_s' or 'images_seen' is not a number",
    )
    dynamics = obj.get("dynamics")
    if dynamics is not None:
        _need_dict(path, dynamics, "a checkpoint with training dynamics", _DYNAMICS_STATE)
        n = dynamics["num_examples"]
        shapes = [(dynamics[k], d) for k, d in (("counts", 2), ("sums", 2), ("last_correctness", 1))]  # fmt: skip
        _need(
            path,
            isinstance(n, int)
            and all(
                isinstance(t, torch.Tensor) and t.ndim == d and t.shape[-1] == n for t, d in shapes
            ),  # fmt: skip
            f"its training dynamics are not tensors over its {n} examples",
        )


def _check_training_dynamics(path: str, obj) -> None:
    from core.scores import COUNT_FIELDS, SUM_FIELDS  # noqa: PLC0415 (scores imports little)

    _need_dict(path, obj, "a run's training dynamics (td-<task>.pt)", ("scores", "epochs"))
    scores = obj["scores"]
    fields = (*COUNT_FIELDS, *SUM_FIELDS, "last_correctness")
    _need_dict(path, scores, "a run's training dynamics (its 'scores')", fields)
    lengths = set()
    for name, value in scores.items():
        _need(path, isinstance(value, torch.Tensor) and value.ndim == 1,
              f"score '{name}' is {_type(value)}, not one value per example")  # fmt: skip
        lengths.add(len(value))
    _need(path, len(lengths) == 1, "its scores have different lengths")
    _need(path, isinstance(obj["epochs"], int), "'epochs' is not an integer")


def _check_label_noise(path: str, obj) -> None:
    _need_dict(path, obj, "a run's label noise (label-noise.pt)", ("targets", "true_targets", "noisy"))  # fmt: skip
    values = [obj[k] for k in ("targets", "true_targets", "noisy")]
    _need(
        path,
        all(isinstance(v, torch.Tensor) and v.ndim == 1 for v in values)
        and len({len(v) for v in values}) == 1,
        "'targets', 'true_targets' and 'noisy' are not tensors of one length",
    )


def _check_indices(path: str, obj) -> None:
    _need(
        path,
        isinstance(obj, torch.Tensor) and obj.ndim == 1 and not obj.is_floating_point(),
        f"holds {_type(obj)}, not the coreset's indices (a 1-D integer tensor)",
    )


def _check_val_indices(path: str, obj) -> None:
    _need(
        path,
        isinstance(obj, torch.Tensor) and obj.ndim == 1 and not obj.is_floating_point(),
        f"holds {_type(obj)}, not the held-out positions of a --val-size run (a 1-D integer "
        "tensor)",
    )


_CHECKS = {
    "checkpoint": _check_checkpoint,
    "training dynamics": _check_training_dynamics,
    "label noise": _check_label_noise,
    "coreset indices": _check_indices,
    "validation indices": _check_val_indices,
}


def check_structure(path: str, obj, kind: str | None = None):
    """``obj`` (loaded from ``path``) if it has the structure of its kind (given, else told by
    the file's name: ckpt-last.pt, ckpt-best.pt, td-<task>.pt, label-noise.pt,
    coreset-indices.pt, val-indices.pt); a UserError naming the file and what is wrong otherwise. Other names
    are not checked."""
    kind = kind or kind_by_name(path)
    check = _CHECKS.get(kind)
    if check is not None:
        check(path, obj)
    return obj


__all__ = [
    "KINDS",
    "check_output_path",
    "check_structure",
    "kind_by_content",
    "kind_by_name",
    "kind_of_object",
]
