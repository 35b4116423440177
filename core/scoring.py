"""From a finished full-data run to its score file: dynamics + one eval pass of the final model."""

import os

import torch

from core.data import DeviceLoader, load_dataset
from core.data.imagenet import ImageFolderLoader, load_imagefolder
from core.data.noise import LabelNoise, with_targets
from core.data.subset import take_train_subset
from core.errors import UserError
from core.fileio import atomic_torch_save
from core.models import build_model, classifier_of
from core.run_folder import RunFolder
from core.score_io import save_data_score
from core.scores import inference_scores, make_data_score
from core.training import distributed as dist_utils
from core.training.checkpoint import load_checkpoint


def load_finished_run(
    run: RunFolder, script: str = "train.py", allow_unvisited: bool = False
) -> tuple[dict, dict]:
    """(final checkpoint, dynamics file) of a finished run, or a UserError saying why not.

    A run that never visited some training examples (a coreset run) has no dynamics for them:
    their AUM and forgetting would read 0, as if measured. Refused unless allowed."""
    if not os.path.isfile(run.last):
        raise UserError(
            f"no run in {run.dir}: {run.last} is missing (train it first "
            f"with {script} --task-name {run.task})"
        )
    state = load_checkpoint(run.last)
    if not state.get("finished"):
        raise UserError(
            f"the run in {run.dir} has not finished; run its {script} command "
            "again to resume and finish it"
        )
    if not os.path.isfile(run.td):
        raise UserError(f"{run.td} is missing: the run recorded no training dynamics")
    td = load_checkpoint(run.td)
    unvisited = int((td["scores"]["visits"] == 0).sum())
    if unvisited and not allow_unvisited:
        raise UserError(
            f"the run in {run.dir} never visited {unvisited} of its "
            f"{td['scores']['visits'].numel()} training examples (a coreset run?): their "
            "dynamics scores would read 0; score a full-data run, or pass --allow-unvisited"
        )
    return state, td


def write_score_files(
    run: RunFolder, *, extra=None, dynamics_scores, inference, targets, data_score_path=None
) -> dict:
    """data-score-<task>.pickle (reference format) and features-<task>.pt (for coverage)."""
    data_score = make_data_score(dynamics_scores, inference, targets)
    data_score.update(extra or {})
    data_score_path = data_score_path or run.data_score
    save_data_score(data_score_path, data_score)
    features_path = run.features
    if "features" in inference:
        atomic_torch_save(
            {"features": inference["features"].half(), "targets": targets.long().clone()},
            features_path,
        )
    return {
        "data_score_path": data_score_path,
        "features_path": features_path,
        "num_examples": len(targets),
        "keys": sorted(data_score),
    }


def score_finished_run(
    *,
    base_dir,
    task_name,
    dataset=None,
    data_dir=None,
    data_score_path=None,
    device_flag="auto",
    gpuid="0",
    download=True,
    allow_unvisited=False,
) -> dict:
    """Scores for a CIFAR-family run (train.py)."""
    run = RunFolder(base_dir, task_name)
    state, td = load_finished_run(run, allow_unvisited=allow_unvisited)
    run_args = state["args"]
    if dataset is not None and dataset != run_args["dataset"]:
        raise UserError(
            f"--dataset {dataset}: the run in {run.dir} was trained on {run_args['dataset']}"
        )
    device = dist_utils.select_device(device_flag, gpuid)
    data = load_dataset(run_args["dataset"], data_dir or run_args["data_dir"], download=download)
    data = take_train_subset(data, run_args.get("train_subset", 0))
    noise = run_label_noise(run, data.train.targets)
    if noise is not None:  # loss and the score file's targets: the labels it trained on
        data = with_targets(data, noise.targets)
    n = len(data.train.targets)
    if td["scores"]["visits"].numel() != n:
        raise UserError(
            f"{run.td} has {td['scores']['visits'].numel()} examples, the "
            f"{run_args['dataset']} training set {n}"
        )
    model = build_model(run_args["network"], data.num_classes).to(device)
    model.load_state_dict(state["model"])
    loader = DeviceLoader(
        data.train.images,
        data.train.targets,
        batch_size=1024,
        mean=data.mean,
        std=data.std,
        augment=False,
        shuffle=False,
        seed=0,
        device=device,
    )
    inference = inference_scores(model, loader.epoch(0), n, feature_module=classifier_of(model))
    return write_score_files(
        run,
        dynamics_scores=td["scores"],
        inference=inference,
        targets=data.train.targets,
        data_score_path=data_score_path,
        extra=None if noise is None else noise.score_keys(),
    )


def run_label_noise(run: RunFolder, targets) -> LabelNoise | None:
    """The label corruption a --label-noise run trained on (its label-noise.pt), or None."""
    if not os.path.isfile(run.label_noise):
        return None
    saved = load_checkpoint(run.label_noise)
    true = saved["true_targets"]
    if not torch.equal(true.long(), torch.as_tensor(targets).long()):
        raise UserError(f"{run.label_noise}: its true labels differ from the dataset's")
    return LabelNoise(targets=saved["targets"], true_targets=true, noisy=saved["noisy"])


def score_imagenet_run(
    *,
    base_dir,
    task_name,
    data_dir=None,
    data_score_path=None,
    device,
    image_size=None,
    batch_size=256,
    workers=0,
    allow_unvisited=False,
) -> dict | None:
    """Scores for a train_imagenet.py run. Under torchrun each rank scores its share of the
    training set and rank 0 writes the files (returns None on the other ranks)."""
    run = RunFolder(base_dir, task_name)
    state, td = load_finished_run(run, "train_imagenet.py", allow_unvisited)
    run_args = state["args"]
    if "image_size" not in run_args:
        raise UserError(
            f"the run in {run.dir} was not trained by train_imagenet.py; "
            "score it with generate_importance_score.py"
        )
    data = load_imagefolder(data_dir or run_args["data_dir"])
    n = len(data.train)
    if td["scores"]["visits"].numel() != n or state["num_classes"] != data.num_classes:
        raise UserError(
            f"{run.dir} was trained on {td['scores']['visits'].numel()} images "
            f"of {state['num_classes']} classes, {data.train.root} holds {n} of "
            f"{data.num_classes}"
        )
    model = build_model(run_args["network"], data.num_classes, imagenet=True)
    model.load_state_dict(state["model"])
    model = model.to(device, memory_format=torch.channels_last)
    loader = ImageFolderLoader(
        data.train,
        batch_size=batch_size,
        image_size=image_size or run_args["image_size"],
        mean=data.mean,
        std=data.std,
        augment=False,
        shuffle=False,
        seed=0,
        device=device,
        rank=dist_utils.rank(),
        world_size=dist_utils.world_size(),
        workers=workers,
        channels_last=True,
        persistent_workers=False,
    )
    inference = inference_scores(model, loader.epoch(0), n, feature_module=classifier_of(model))
    inference = _sum_across_ranks(inference, device)
    if not dist_utils.is_main():
        return None
    return write_score_files(
        run,
        dynamics_scores=td["scores"],
        inference=inference,
        targets=data.train.targets,
        data_score_path=data_score_path,
    )


def _sum_across_ranks(inference: dict, device) -> dict:
    """Each rank filled its own examples and left the rest 0: the sum holds them all."""
    if not dist_utils.is_distributed():
        return inference
    return {
        name: dist_utils.all_reduce_sum_(value.to(device)).cpu()
        for name, value in inference.items()
    }
