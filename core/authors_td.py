"""Training dynamics logged by the authors' train.py / train_imagenet.py, turned into our scores.

The authors log every training batch: a plain pickle of
``{'data-name': ..., 'training_dynamics': [{'epoch', 'iteration', 'idx', 'output'}, ...]}``,
``idx`` the batch's dataset indices (int64) and ``output`` its fp16 log-softmax. The CIFAR
family writes one file, ``td-<task>.pickle``; ImageNet one per epoch,
``training-dynamics/td-<task>-epoch-<i>.pickle`` with i = 1, 2, ... (file i holds epoch i-1).

Each record is fed to core.scores.TrainingDynamics as if its log-softmax were logits (the
softmax of a log-softmax is the same distribution), so the scores come from the one score
computation. Files are read through the restricted unpickler one at a time: an ImageNet log is
never in memory whole. docs/FAITHFULNESS.md S10.
"""

from __future__ import annotations

import os
import re

import torch

from core import safe_pickle
from core.errors import UserError, os_reason
from core.scores import TrainingDynamics

_EPOCH_FILE = re.compile(r"td-(.+)-epoch-(\d+)\.pickle")


def log_files(path: str) -> list[tuple[str, int | None]]:
    """``(file, epoch)`` pairs in training order: a single log file (the records' own epoch
    numbers count: None), or a folder of per-epoch files numbered 1..E (file i is epoch i-1,
    as the authors' ImageNet scoring script counts them)."""
    if os.path.isfile(path):
        return [(path, None)]
    if not os.path.isdir(path):
        raise UserError(f"authors' training dynamics not found: {path}")
    numbered = {}
    for name in os.listdir(path):
        match = _EPOCH_FILE.fullmatch(name)
        if match:
            numbered.setdefault(int(match.group(2)), []).append(name)
    if not numbered:
        raise UserError(f"{path} holds no td-<task>-epoch-<i>.pickle files")
    clash = next((names for names in numbered.values() if len(names) > 1), None)
    if clash:
        raise UserError(f"{path} holds logs of several runs: {', '.join(sorted(clash))}")
    missing = sorted(set(range(1, max(numbered) + 1)) - set(numbered))
    if missing:
        raise UserError(f"{path}: the per-epoch log of epoch {missing[0]} is missing")
    return [(os.path.join(path, numbered[i][0]), i - 1) for i in sorted(numbered)]


def read_log(path: str) -> list[dict]:
    """The records of one log file, read without running code from it."""
    try:
        with open(path, "rb") as fh:
            data = safe_pickle.load(fh)
    except safe_pickle.RefusedGlobal as refused:
        raise UserError(f"refusing {path}: it names the global {refused.name}") from None
    except Exception as error:  # malformed or truncated file, or an OS error reading it
        raise UserError(f"cannot read training dynamics {path}: {os_reason(error)}") from None
    records = data.get("training_dynamics") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise UserError(f"{path} is not a training-dynamics log (no 'training_dynamics' list)")
    return records


def dynamics_from_logs(
    path: str,
    targets: torch.Tensor,
    num_classes: int,
    el2n_epochs: int = 10,
    device=None,
    **options,
) -> TrainingDynamics:
    """Replay the authors' log at ``path`` (file or per-epoch folder) into a TrainingDynamics
    over the training set whose labels are ``targets``. ``options`` go to TrainingDynamics:
    ``extra_scores=True`` gives TDDS, Dyn-Unc, DUAL from the logged log-softmax, and the logit
    margin too (a log-softmax is the logits shifted per row, which a margin does not see; to
    fp16 rounding of the logged values)."""
    targets = torch.as_tensor(targets).long()
    dynamics = TrainingDynamics(len(targets), num_classes, el2n_epochs, device=device, **options)
    for file, file_epoch in log_files(path):
        for number, record in enumerate(read_log(file)):
            index, output, epoch = _checked(record, file, number, len(targets), num_classes)
            epoch = epoch if file_epoch is None else file_epoch
            dynamics.update(epoch, index, output.float(), targets[index])
    return dynamics


def _checked(record, file: str, number: int, num_examples: int, num_classes: int):
    """(idx, output, epoch) of one record, or a UserError naming the file and record."""
    where = f"{file}, record {number}"
    if not isinstance(record, dict) or not {"idx", "output", "epoch"} <= set(record):
        raise UserError(f"{where}: expected a dict with 'epoch', 'idx' and 'output'")
    index, output, epoch = record["idx"], record["output"], record["epoch"]
    if not isinstance(index, torch.Tensor) or index.ndim != 1 or index.is_floating_point():
        raise UserError(f"{where}: 'idx' is not a 1-D integer tensor")
    if not isinstance(output, torch.Tensor) or output.shape != (len(index), num_classes):
        shape = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise UserError(
            f"{where}: 'output' is {shape}, expected [{len(index)}, {num_classes}] "
            f"(one log-softmax row per index, {num_classes} classes)"
        )
    if len(index) and (index.min() < 0 or index.max() >= num_examples):
        raise UserError(
            f"{where}: indices outside 0..{num_examples - 1} (a log of another training set?)"
        )
    if not isinstance(epoch, int):
        raise UserError(f"{where}: 'epoch' is not an integer")
    return index.long(), output, epoch
