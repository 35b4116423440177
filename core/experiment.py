"""The one run path of train.py and train_imagenet.py: settings in, a finished run folder out.

    settings ──> run folder (claimed, resumed or fresh) ──> data ──> labels (noise) ──> coreset
             ──> loaders, model ──> Trainer.fit ──> outputs (metrics.json, dynamics, indices)

What differs between the CIFAR family and ImageNet is a `DataFamily`: how the data are loaded,
which loaders and model they get, and the optimiser's constants. Everything else is here, once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from core.coreset import select_from_files
from core.data.noise import LabelNoise, resolve_label_noise, with_targets
from core.data.valsplit import ValSplit, check_score_file_split, split_validation
from core.errors import UserError
from core.fileio import atomic_json_dump, atomic_torch_save
from core.provenance import provenance
from core.run_folder import RunFolder, claim_run_folder
from core.score_io import load_data_score
from core.scores import TrainingDynamics
from core.settings import RunSettings
from core.training import distributed as dist_utils
from core.training.checkpoint import already_finished, resume_state
from core.training.optim import total_iterations
from core.training.recipe import FastRecipe, PaperRecipe
from core.training.run import place_model, resolve_precision, seed_everything
from core.training.runlog import RunLog
from core.training.trainer import Interrupted, Trainer


@dataclass(frozen=True)
class DataFamily:
    """What a launcher supplies: `load(settings) -> data` (with `.num_classes` and the training
    labels as `targets(data)`), `loaders(data, settings, indices, device) -> (train, test)`,
    `model(settings, num_classes)`, the SGD constants and the test's top-k. `follows_noise`:
    whether its data can carry label noise (the CIFAR family)."""

    name: Callable[[RunSettings], str]
    load: Callable
    targets: Callable
    loaders: Callable
    model: Callable
    weight_decay: float
    nesterov: bool
    topk: tuple = (1,)
    follows_noise: bool = False
    # the data's fingerprint (core.data.fingerprint), recorded for scoring to compare
    fingerprint: Callable = lambda data: {}
    prepare: Callable[[RunSettings], RunSettings] = lambda settings: settings
    dynamics_options: dict = dataclasses.field(default_factory=dict)  # TrainingDynamics windows
    # (split, data, settings, device) -> a loader of `split` as the test's: --val-size
    eval_loader: Callable | None = None


def train_run(settings: RunSettings, family: DataFamily) -> int:
    """Train (or resume, or find finished) the run `settings` describe; the exit code."""
    started = time.time()
    device = dist_utils.start_process(settings.device, settings.gpuid)
    settings = family.prepare(settings)  # values decided once the process is placed
    run = RunFolder(settings.base_dir, settings.task_name)
    claim_run_folder(run)  # one process per run folder
    fingerprint = dict(settings.fingerprint(), world_size=dist_utils.world_size())
    state = resume_state(run, fingerprint, settings.no_resume)
    if settings.no_resume:
        clear_outputs(run)
    if already_finished(run, state, outputs_written(run, state)):
        return 0

    data = family.load(settings)
    data_fingerprint = family.fingerprint(data)  # the dataset's own labels, before any noise
    full_size = len(family.targets(data))
    data, val = split_validation(data, settings.val_size)  # after --train-subset, before noise
    score_data = _read_score_file(settings)  # once: the labels and the selection read it
    check_score_file_split(score_data, val, full_size, _score_path(settings))
    data, noise = _labels(settings, family, data, score_data)
    targets = family.targets(data)
    indices, subsets = _coreset(settings, targets, score_data)
    seed_everything(settings.seed)  # the same on every rank: DDP starts from rank 0's weights
    recipe = make_recipe(settings, family)
    train_loader, test_loader = family.loaders(
        data, settings, None if subsets else indices, device, epoch_subsets=subsets,
        augment=recipe.augmentation(getattr(data, "augment", True)),
    )  # fmt: skip
    model = place_model(family.model(settings, data.num_classes), device, settings.compile)
    total = total_iterations(settings.epochs, settings.iterations, len(train_loader))
    optimizer, scheduler = recipe.build(
        model, lr=settings.lr, total_iterations=total, iterations_per_epoch=len(train_loader),
        batch_size=settings.batch_size,
    )  # fmt: skip
    if state is None:  # a fresh run: what the recipe sets from data (airbench's whitening)
        first = recipe.prepare_images
        recipe.prepare(model, train_loader.first_images(first) if first else None)
    n = len(targets)
    dynamics = _dynamics(settings, family, n, data.num_classes, device)
    used = n if indices is None else len(indices)
    precision, precision_why = resolve_precision(settings.precision, device)
    val_loader = _val_loader(family, val, data, settings, device)
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        train_loader=train_loader,
        test_loader=test_loader,
        device=device,
        run=run,
        dynamics=dynamics,
        recipe=recipe,
        topk=family.topk,
        precision=precision,
        precision_why=precision_why,
        log=RunLog(run.log),
        checkpoint_interval_s=settings.checkpoint_interval,
        started=started,
        state_extra={
            "fingerprint": fingerprint,
            "settings": settings.record(),
            "num_classes": data.num_classes,
            "data_fingerprint": data_fingerprint,
        },
        what=f"{settings.network} on {family.name(settings)}: {used}/{n} examples"
        + ("" if val is None else f" ({val.size} more held out for validation)"),
        val_loader=val_loader,
    )
    if state is not None:
        trainer.load_state_dict(state)
    try:
        result = trainer.fit(total, max(1, settings.iterations_per_testing // len(train_loader)))
    except Interrupted:
        return 130
    write_outputs(
        run,
        result,
        settings,
        indices=indices,
        train_size=n,
        dynamics=dynamics,
        device=device,
        noise=noise,
        val=val,
    )
    return 0


def _coreset(settings: RunSettings, targets, score_data) -> tuple:
    """(indices, epoch subsets): the coreset (None: all data), and for a dynamic method (RS2)
    its per-epoch subsets, `indices` then being epoch 0's."""
    if settings.selection is None:
        return None, None
    indices = select_from_files(
        settings.selection, targets=targets, seed=settings.seed, data_score=score_data
    )
    per_epoch = settings.selection.method.epoch_subsets
    subsets = None if per_epoch is None else per_epoch(settings.selection, targets, settings.seed)
    return indices, subsets


def _dynamics(settings: RunSettings, family: DataFamily, n: int, num_classes: int, device):
    """The training dynamics every run records (the reference's scores and the recent
    baselines'), or None with --ignore-td."""
    if settings.ignore_td:
        return None
    options = {**family.dynamics_options, **settings.dynamics_options()}
    return TrainingDynamics(n, num_classes, device=device, extra_scores=True,
                            snapshot_epochs=settings.snapshot_epochs, **options)  # fmt: skip


def outputs_written(run: RunFolder, state: dict | None) -> bool:
    """Whether a run's outputs are all there: metrics.json, and the dynamics and coreset
    files its checkpoint says it makes. A checkpoint of finished training without them (the
    disk filled, the process was killed after the last step) is finished by writing them."""
    if state is None:
        return False
    fingerprint = state.get("fingerprint", {})
    needed = [run.metrics]
    if state.get("dynamics") is not None:
        needed.append(run.td)
    if (fingerprint.get("coreset") or {}).get("mode"):
        needed.append(run.indices)
    return all(os.path.isfile(path) for path in needed)


def clear_outputs(run: RunFolder) -> None:
    """--no-resume: the earlier run's outputs, and the scores and features made from it, go
    before anything trains, so none of them is ever taken for the new run's (rank 0)."""
    if not dist_utils.is_main():
        return
    paths = (run.last, run.best, run.metrics, run.td, run.indices, run.label_noise,
             run.val_indices, run.data_score, run.features)  # fmt: skip
    removed = [os.path.basename(p) for p in paths if os.path.isfile(p)]
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    if removed:
        RunLog(run.log).info(f"--no-resume: removed the earlier run's {', '.join(removed)}")


def make_recipe(settings: RunSettings, family: DataFamily):
    """The training recipe: the paper's (the launcher's SGD constants, --scheduler) or fast."""
    if settings.recipe == "fast":
        return FastRecipe()
    return PaperRecipe(weight_decay=family.weight_decay, nesterov=family.nesterov,
                       scheduler=settings.scheduler, lr=settings.lr)  # fmt: skip


def _read_score_file(settings: RunSettings) -> dict | None:
    selection = settings.selection
    if selection is None or selection.data_score_path is None:
        return None
    return load_data_score(selection.data_score_path)


def _score_path(settings: RunSettings) -> str | None:
    return settings.selection.data_score_path if settings.selection else None


def _val_loader(family: DataFamily, val: ValSplit | None, data, settings, device):
    """The validation split's loader (--val-size), built as the test set's is."""
    if val is None:
        return None
    if family.eval_loader is None:
        raise UserError(f"--val-size: {family.name(settings)} runs take no validation split")
    return family.eval_loader(val.split, data, settings, device)


def _labels(settings: RunSettings, family: DataFamily, data, score_data) -> tuple:
    """(data, noise): the data with the labels the run trains on. A coreset run follows its
    score file's run; --label-noise corrupts them afresh (core.data.noise)."""
    if not family.follows_noise:
        return data, None
    path = settings.selection.data_score_path if settings.selection else None
    noise = resolve_label_noise(
        settings.label_noise,
        settings.label_noise_seed,
        family.targets(data),
        data.num_classes,
        score_data,
        path,
    )
    return (data if noise is None else with_targets(data, noise.targets)), noise


def write_outputs(
    run: RunFolder,
    result: dict,
    settings: RunSettings,
    *,
    indices: torch.Tensor | None,
    train_size: int,
    dynamics: TrainingDynamics | None,
    device,
    noise: LabelNoise | None = None,
    val: ValSplit | None = None,
) -> dict | None:
    """metrics.json, the dynamics file and the coreset indices (rank 0 only), then the log's
    last line. ``result`` is what ``Trainer.fit`` returned."""
    if not dist_utils.is_main():
        return None
    if dynamics is not None:
        scores = {"scores": dynamics.scores(), "epochs": result["epochs"]}
        atomic_torch_save(dict(scores, el2n_epochs=dynamics.el2n_epochs), run.td)
    if indices is not None:
        atomic_torch_save(indices.clone(), run.indices)
    if noise is not None:
        flips = {"targets": noise.targets, "true_targets": noise.true_targets, "noisy": noise.noisy}
        atomic_torch_save(flips, run.label_noise)
    if val is not None:  # positions in the training set before the split
        atomic_torch_save(val.positions.clone(), run.val_indices)
    selection = settings.selection
    metrics = {
        "method": "full" if selection is None else selection.name,
        "pruning_rate": 0.0 if selection is None else round(1.0 - selection.ratio, 6),
        "coreset_size": train_size if indices is None else int(indices.numel()),
        "train_size": train_size,
        # the dataset's share of flipped labels, and the share among the examples trained on
        "label_noise": None if noise is None else noise.rate,
        "mislabeled_share": None if noise is None else noise.share_in(indices),
        **result,
        **settings.metrics_record(),
        "args": settings.record(),
        **provenance(device),
    }
    atomic_json_dump(metrics, run.metrics)
    RunLog(run.log).info(
        f"done: best acc {result['best_acc']:.4f}, last acc {result['last_acc']:.4f}, "
        f"{result['images_per_s']:,.0f} img/s; outputs in {run.dir}"
    )
    return metrics
