"""From a finished full-data run to its score file: dynamics + one eval pass of the final model.

The dynamics come from our run's td-<task>.pt, or from the authors' logs (td-<task>.pickle,
or ImageNet's training-dynamics/ folder) when the run folder is theirs or --authors-td says so.
The final model is ckpt-last.pt, ours or the authors' ({'model_state_dict': ...}).
"""

import os

import torch

from core.authors_td import dynamics_from_logs, log_files
from core.data import DeviceLoader, inference_batch_size, load_dataset
from core.data.fingerprint import data_fingerprint, differences
from core.data.noise import LabelNoise, with_targets
from core.data.subset import take_train_subset
from core.data.valsplit import split_validation
from core.errors import UserError
from core.fileio import atomic_torch_save
from core.models import build_model, classifier_of
from core.run_folder import RunFolder
from core.score_io import save_data_score
from core.scores import inference_scores, make_data_score, scores_at
from core.settings import RunSettings
from core.training import distributed as dist_utils
from core.training.checkpoint import load_checkpoint

# What the authors' scoring scripts assume when no run of ours says otherwise.
AUTHORS_DEFAULTS = {"dataset": "cifar10", "data_dir": "./data", "imagenet_dir": "./data/imagenet"}


def load_finished_run(
    run: RunFolder, script: str = "train.py", allow_unvisited: bool = False
) -> tuple[dict, dict]:
    """(final checkpoint, dynamics file) of a finished run, or a UserError saying why not.

    A run that never visited some training examples (a coreset run) has no dynamics for them:
    their AUM and forgetting would read 0, as if measured. Refused unless allowed."""
    state = _finished_checkpoint(run, script)
    if not os.path.isfile(run.td):
        if state.get("dynamics") is not None:  # training finished, its outputs were not written
            raise UserError(
                f"{run.td} is missing, though the run's checkpoint holds its dynamics: run its "
                f"{script} command again, which writes its outputs without training"
            )
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


def _finished_checkpoint(run: RunFolder, script: str) -> dict:
    if not os.path.isfile(run.last):
        raise UserError(
            f"no run in {run.dir}: {run.last} is missing (train it first "
            f"with {script} --task-name {run.task})"
        )
    state = load_checkpoint(run.last)
    if "model_state_dict" not in state and not state.get("finished"):
        raise UserError(
            f"the run in {run.dir} has not finished; run its {script} command "
            "again to resume and finish it"
        )
    return state


def check_same_data(state: dict, found: dict, run: RunFolder, data_dir: str) -> None:
    """UserError unless the data loaded are those the run trained on (its recorded
    fingerprint; runs made before fingerprints are not checked)."""
    parts = differences(state.get("data_fingerprint"), found)
    if parts:
        raise UserError(
            f"--data-dir {data_dir}: its training set's {' and '.join(parts)} differ from those "
            f"the run in {run.dir} trained on; score it with the data it trained on"
        )


def authors_td_path(run: RunFolder, given: str | None, imagenet: bool) -> str | None:
    """The authors' dynamics to score: --authors-td, else theirs in the run folder when it
    holds no td-<task>.pt of ours, else None (our own dynamics). Checked before any long pass."""
    theirs = run.authors_td_dir if imagenet else run.authors_td
    if not given and not os.path.isfile(run.td) and os.path.exists(theirs):
        given = theirs
    if given:
        log_files(given)  # UserError now for a missing file or a gap in the epoch files
    return given or None


def _sources(run: RunFolder, authors_td, script: str, model_required: bool, allow_unvisited):
    """(final checkpoint or None, our dynamics file or None) to score the run from."""
    if authors_td is None:
        return load_finished_run(run, script, allow_unvisited)
    if os.path.isfile(run.last):
        return _finished_checkpoint(run, script), None
    if model_required:
        raise UserError(
            f"{run.last} is missing: entropy and loss need the run's final model (the authors' "
            "train.py writes ckpt-last.pt beside its td-<task>.pickle)"
        )
    return None, None


def _dynamics_scores(td, authors_td, data_targets, num_classes, device) -> dict:
    """Our run's accumulated dynamics, or the authors' logs replayed over the training set."""
    if authors_td is None:
        return td["scores"]
    replay = dynamics_from_logs(authors_td, data_targets, num_classes, device=device,
                                extra_scores=True)  # fmt: skip
    return replay.scores()


def final_weights(state: dict, imagenet: bool) -> tuple[dict, RunSettings | None, str | None]:
    """(state_dict, our run's settings or None, network) of a final checkpoint, ours or the
    authors': theirs name the CIFAR classifier `linear` (FAITHFULNESS T9) and prefix
    ImageNet's keys with `module.` (nn.DataParallel); their network is read off the keys.
    Ours record their settings (older ones their flags, which read back the same way)."""
    if "model_state_dict" not in state:
        settings = RunSettings.from_record(state.get("settings") or state["args"])
        return state["model"], settings, settings.network
    weights = {}
    for key, value in state["model_state_dict"].items():
        key = key.removeprefix("module.")
        weights["fc." + key[len("linear.") :] if key.startswith("linear.") else key] = value
    return weights, None, _authors_network(weights, imagenet)


def _authors_network(weights: dict, imagenet: bool) -> str:
    """resnet50 has Bottlenecks (conv3); ImageNet's resnet34 has a sixth layer3 block."""
    if any(key.endswith("conv3.weight") for key in weights):
        return "resnet50"
    if imagenet and "layer3.5.conv1.weight" not in weights:
        return "resnet18"
    return "resnet34" if imagenet else "resnet18"


def load_model(weights: dict, network: str, num_classes: int, imagenet: bool, where: str):
    model = build_model(network, num_classes, imagenet=imagenet)
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UserError(
            f"{where} does not fit a {network} of {num_classes} classes: {first}"
        ) from None
    return model


def write_score_files(
    run: RunFolder,
    *,
    extra=None,
    dynamics_scores,
    inference,
    targets,
    data_score_path=None,
    score_epochs=None,
) -> dict:
    """data-score-<task>.pickle (reference format) and features-<task>.pt (for coverage).
    `score_epochs` K: the dynamics scores of the first K epochs (the run's snapshot)."""
    if score_epochs is not None:
        dynamics_scores = scores_at(dynamics_scores, score_epochs)
    data_score = make_data_score(dynamics_scores, inference, targets)
    data_score.update(extra or {})
    data_score_path = data_score_path or run.data_score
    save_data_score(data_score_path, data_score)
    features_path = None
    if inference is not None and "features" in inference:
        features_path = run.features
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


def summary_line(out: dict) -> str:
    """What the scoring scripts print when done."""
    line = f"wrote {out['data_score_path']} ({out['num_examples']} examples, keys: "
    line += ", ".join(out["keys"]) + ")"
    if out["features_path"]:
        line += f" and {out['features_path']}"
    if out["authors_td"]:
        line = f"scored the authors' training dynamics {out['authors_td']}: {line}"
    return line


def cifar_inference(model, data, device, normalized_inputs: bool = False) -> dict:
    """Entropy, loss and penultimate features of the final model over the training set.

    Entropy and loss on the reference's inputs by default: ToTensor() only, values in [0, 1],
    although the model trained on normalised images (docs/FAITHFULNESS.md S9);
    `normalized_inputs` scores the normalised images the model was trained on instead.
    Features always come from the normalised images: Moderate-DS and the coverage report want
    the model's features of its own inputs. Two passes when the two differ (not for SVHN,
    which is not normalised).
    """
    n = len(data.train.targets)

    def one_pass(mean, std, features: bool) -> dict:
        loader = DeviceLoader(
            data.train.images,
            data.train.targets,
            batch_size=inference_batch_size(device),
            mean=mean,
            std=std,
            augment=False,
            shuffle=False,
            seed=0,
            device=device,
        )
        hooked = classifier_of(model) if features else None
        return inference_scores(model, loader.epoch(0), n, feature_module=hooked)

    normalised = one_pass(data.mean, data.std, features=True)
    to_tensor = ((0.0,) * len(data.mean), (1.0,) * len(data.std))
    if normalized_inputs or (tuple(data.mean), tuple(data.std)) == to_tensor:
        return normalised
    reference = one_pass(*to_tensor, features=False)
    return {**normalised, "entropy": reference["entropy"], "loss": reference["loss"]}


def score_finished_run(
    *,
    base_dir,
    task_name,
    dataset=None,
    data_dir=None,
    data_score_path=None,
    device,
    download=True,
    normalized_inputs=False,
    authors_td=None,
    allow_unvisited=False,
    score_epochs=None,
) -> dict:
    """Scores for a CIFAR-family run: ours (train.py here) or the authors' (their train.py's
    td-<task>.pickle and ckpt-last.pt)."""
    run = RunFolder(base_dir, task_name)
    authors_td = authors_td_path(run, authors_td, imagenet=False)
    state, td = _sources(run, authors_td, "train.py", True, allow_unvisited)
    weights, trained, network = final_weights(state, imagenet=False)
    if trained is not None and dataset is not None and dataset != trained.dataset:
        raise UserError(
            f"--dataset {dataset}: the run in {run.dir} was trained on {trained.dataset}"
        )
    dataset = trained.dataset if trained else dataset or AUTHORS_DEFAULTS["dataset"]
    data_dir = data_dir or (trained.data_dir if trained else None) or AUTHORS_DEFAULTS["data_dir"]
    data = load_dataset(dataset, data_dir, download=download)
    data = take_train_subset(data, trained.train_subset if trained else 0)
    check_same_data(
        state, data_fingerprint(data.train.targets, images=data.train.images), run, data_dir
    )
    data, val = run_val_split(run, data, trained)  # the run trained on the rest only
    noise = run_label_noise(run, data.train.targets)
    if noise is not None:  # loss and the score file's targets: the labels it trained on
        data = with_targets(data, noise.targets)
    n = len(data.train.targets)
    if td is not None and td["scores"]["visits"].numel() != n:
        raise UserError(
            f"{run.td} has {td['scores']['visits'].numel()} examples, the "
            f"{dataset} training set {n}"
        )
    dynamics = _dynamics_scores(td, authors_td, data.train.targets, data.num_classes, device)
    model = load_model(weights, network, data.num_classes, False, run.last).to(device)
    inference = cifar_inference(model, data, device, normalized_inputs)
    out = write_score_files(
        run,
        dynamics_scores=dynamics,
        inference=inference,
        targets=data.train.targets,
        data_score_path=data_score_path,
        extra={**(noise.score_keys() if noise else {}), **(val.score_keys() if val else {})},
        score_epochs=score_epochs,
    )
    return {**out, "authors_td": authors_td}


def run_val_split(run: RunFolder, data, trained: RunSettings | None) -> tuple:
    """(data, ValSplit or None): the training set the run trained on, after the validation
    split its settings record (--val-size; the same split, drawn again from its fixed seed),
    checked against the positions its val-indices.pt holds."""
    data, val = split_validation(data, (trained.val_size or 0) if trained else 0)
    if val is None:
        return data, None
    if os.path.isfile(run.val_indices):
        saved = load_checkpoint(run.val_indices)
        if not torch.equal(saved.long(), val.positions):
            raise UserError(
                f"{run.val_indices}: the run held out other examples than --val-size "
                f"{val.size} holds out here (another dataset or --train-subset?)"
            )
    return data, val


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
    authors_td=None,
    allow_unvisited=False,
    score_epochs=None,
) -> dict | None:
    """Scores for an ImageNet run: ours (train_imagenet.py here) or the authors' per-epoch logs.
    Under torchrun each rank scores its share of the training set and rank 0 writes the files
    (returns None on the other ranks). An authors' run scores entropy and loss only when its
    ckpt-last.pt is there; their own ImageNet scoring computes neither."""
    run = RunFolder(base_dir, task_name)
    authors_td = authors_td_path(run, authors_td, imagenet=True)
    state, td = _sources(run, authors_td, "train_imagenet.py", False, allow_unvisited)
    weights, trained, network = (None, None, None)
    if state is not None:
        weights, trained, network = final_weights(state, imagenet=True)
        if trained is not None and not trained.imagenet:
            raise UserError(
                f"the run in {run.dir} was not trained by train_imagenet.py; "
                "score it with generate_importance_score.py"
            )
    run_data_dir = trained.data_dir if trained else AUTHORS_DEFAULTS["imagenet_dir"]
    run_image_size = trained.image_size if trained else 224
    # imported here: core.data.imagenet loads torchvision (~2 s) that CIFAR scoring never needs
    from core.data.imagenet import load_imagefolder

    data = load_imagefolder(data_dir or run_data_dir)
    if state is not None:
        found = data_fingerprint(data.train.targets, paths=data.train.paths)
        check_same_data(state, found, run, data_dir or run_data_dir)
    data, val = run_val_split(run, data, trained)
    n = len(data.train)
    if td is not None and (
        td["scores"]["visits"].numel() != n or state["num_classes"] != data.num_classes
    ):
        raise UserError(
            f"{run.dir} was trained on {td['scores']['visits'].numel()} images "
            f"of {state['num_classes']} classes, {data.train.root} holds {n} of "
            f"{data.num_classes}"
        )
    inference = None
    if weights is not None:
        model = load_model(weights, network, data.num_classes, True, run.last)
        model = model.to(device, memory_format=torch.channels_last)
        inference = _imagenet_inference(
            model, data, device, image_size or run_image_size, batch_size, workers
        )
    if not dist_utils.is_main():
        return None
    # after the pass: replaying 60 epoch files on rank 0 must not hold the others at a collective
    dynamics = _dynamics_scores(td, authors_td, data.train.targets, data.num_classes, device)
    out = write_score_files(
        run,
        dynamics_scores=dynamics,
        inference=inference,
        targets=data.train.targets,
        data_score_path=data_score_path,
        score_epochs=score_epochs,
        extra=None if val is None else val.score_keys(),
    )
    return {**out, "authors_td": authors_td}


def _imagenet_inference(model, data, device, image_size, batch_size, workers) -> dict:
    """One pass with the test transforms, normalised (the authors' ImageNet scoring has no
    entropy or loss to match; FAITHFULNESS S9), each rank its share, summed across ranks."""
    from core.data.imagenet import ImageFolderLoader

    loader = ImageFolderLoader(
        data.train,
        batch_size=batch_size,
        image_size=image_size,
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
    inference = inference_scores(
        model, loader.epoch(0), len(data.train), feature_module=classifier_of(model)
    )
    return _sum_across_ranks(inference, device)


def _sum_across_ranks(inference: dict, device) -> dict:
    """Each rank filled its own examples and left the rest 0: the sum holds them all."""
    if not dist_utils.is_distributed():
        return inference
    return {
        name: dist_utils.all_reduce_sum_(value.to(device)).cpu()
        for name, value in inference.items()
    }
