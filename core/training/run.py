"""What every training script does around the Trainer: device, run folder, coreset, outputs."""

import dataclasses
import math
import os
import random

import numpy as np
import torch

from core.errors import UserError
from core.fileio import atomic_json_dump, atomic_torch_save
from core.provenance import provenance
from core.training import distributed as dist_utils
from core.training.checkpoint import load_checkpoint


def select_device(device_flag: str, gpuid: str) -> torch.device:
    """--device auto means cuda:<first --gpuid> when CUDA is there, else the CPU."""
    if device_flag == "auto":
        if torch.cuda.is_available():
            local = dist_utils.local_rank()  # under torchrun: one GPU per process
            first = local if local is not None else int(gpuid.split(",")[0] or 0)
            return torch.device("cuda", first)
        return torch.device("cpu")
    try:
        device = torch.device(device_flag)
    except RuntimeError:
        raise UserError(f"--device {device_flag!r} is not a device (cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device_flag}: CUDA is not available on this machine")
    if device.type == "cuda" and dist_utils.local_rank() is not None:
        return torch.device("cuda", dist_utils.local_rank())  # one GPU per process
    return device


def start_process(device_flag: str, gpuid: str) -> torch.device:
    """This process's device, after relaunching per GPU (``--gpuid 0,1``) and joining the
    process group when there is one (torchrun)."""
    dist_utils.relaunch_per_gpu(gpuid, device_flag)
    device = select_device(device_flag, gpuid)
    dist_utils.init_from_env(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: pick the fastest kernels once
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_paths(base_dir: str, task_name: str) -> dict:
    run_dir = os.path.join(base_dir, task_name)
    return {
        "task": task_name,
        "dir": run_dir,
        "last": os.path.join(run_dir, "ckpt-last.pt"),
        "best": os.path.join(run_dir, "ckpt-best.pt"),
        "log": os.path.join(run_dir, f"log-train-{task_name}.log"),
        "td": os.path.join(run_dir, f"td-{task_name}.pt"),
        "metrics": os.path.join(run_dir, "metrics.json"),
        "indices": os.path.join(run_dir, "coreset-indices.pt"),
    }


def find_resume_state(paths: dict, fingerprint: dict, no_resume: bool):
    """The checkpoint to resume from, or None to start afresh.

    Refuses (UserError) to resume a folder that holds a run with other settings.
    """
    if no_resume or not os.path.isfile(paths["last"]):
        return None
    state = load_checkpoint(paths["last"])
    old = state.get("fingerprint", {})
    diff = [k for k in sorted(set(old) | set(fingerprint)) if old.get(k) != fingerprint.get(k)]
    if diff:
        k = diff[0]
        raise UserError(
            f"{paths['dir']} holds a run with other settings ({k}: {old.get(k)!r} "
            f"there, {fingerprint.get(k)!r} now); use --no-resume to overwrite it or "
            "another --task-name"
        )
    return state


def open_run(base_dir: str, task_name: str, fingerprint: dict, no_resume: bool):
    """``(paths, state)``: the run folder's files and the checkpoint to resume (or None).

    Every rank reads the checkpoint itself, and all must find the same one.
    """
    paths = run_paths(base_dir, task_name)
    fingerprint["world_size"] = dist_utils.world_size()
    state = find_resume_state(paths, fingerprint, no_resume)
    position = -1 if state is None else state["position"]["iteration"]
    dist_utils.check_same_on_all_ranks(position, "the checkpoint to resume from")
    return paths, state


def say_if_finished(paths: dict, state) -> bool:
    if state is None or not state.get("finished"):
        return False
    if dist_utils.is_main():
        print(
            f"{paths['dir']} is already finished (best acc {state['best_acc']:.4f}); "
            "use --no-resume to train it again"
        )
    return True


def select_training_subset(settings, data_score_path, train_targets, seed):
    """Coreset indices (sorted LongTensor) from the score file, or None for full data."""
    if settings is None:
        return None
    from core.coreset import check_data_score, select_coreset
    from core.score_io import load_data_score

    n = len(train_targets)
    data_score = None
    if settings["mode"] != "random":
        data_score = load_data_score(data_score_path)
        keys = [settings["key"]]
        if settings["mode"] == "stratified" and settings["mis_ratio"] > 0:
            keys.append(settings["mis_key"])
        check_data_score(data_score, num_examples=n, keys=keys)
        if "targets" in data_score and not torch.equal(
            data_score["targets"].long(), train_targets.long()
        ):
            raise UserError(
                f"{data_score_path}: its targets differ from this dataset's labels "
                "(scores of another dataset or another ordering?)"
            )
    return select_coreset(data_score, num_examples=n, seed=seed, **settings)


@dataclasses.dataclass
class Recipe:
    """How a script trains: the optimiser, schedule, length and test cadence (REFERENCE §2, §6)."""

    lr: float
    weight_decay: float
    nesterov: bool
    scheduler: str
    epochs: int | None
    iterations: int | None
    iterations_per_testing: int
    topk: tuple = (1,)

    def total_iterations(self, per_epoch: int) -> int:
        return self.iterations if self.iterations is not None else self.epochs * per_epoch


def train_and_record(
    *,
    paths,
    state,
    model,
    train_loader,
    test_loader,
    recipe,
    device,
    precision,
    num_classes,
    train_size,
    indices,
    coreset,
    record_dynamics,
    compile_model,
    checkpoint_interval,
    fingerprint,
    args_record,
    seed,
    dataset,
    network,
    started,
) -> int:
    """The common body of the training scripts: Trainer, resume, fit, run-folder outputs.

    ``model`` is the bare network on the CPU; ``indices`` the coreset (None: all data).
    Returns the exit code (130 after SIGINT/SIGTERM, with a checkpoint to resume from).
    """
    from core.scores import TrainingDynamics
    from core.training.optim import build_scheduler, build_sgd
    from core.training.runlog import RunLog
    from core.training.trainer import Interrupted, Trainer

    # channels_last: faster on CUDA (tensor cores) and on CPU (oneDNN) alike; the loaders
    # deliver their batches in it too
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = build_sgd(
        model, recipe.lr, weight_decay=recipe.weight_decay, nesterov=recipe.nesterov
    )
    per_epoch = len(train_loader)
    total = recipe.total_iterations(per_epoch)
    scheduler = build_scheduler(optimizer, recipe.scheduler, total, per_epoch)
    dynamics = TrainingDynamics(train_size, num_classes, device=device) if record_dynamics else None
    model = dist_utils.wrap_model(model, device)
    if compile_model:
        model = torch.compile(model)

    log = RunLog(paths["log"], enabled=dist_utils.is_main())
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        train_loader=train_loader,
        test_loader=test_loader,
        device=device,
        run_dir=paths["dir"],
        task_name=paths["task"],
        dynamics=dynamics,
        precision=precision,
        log=log,
        topk=recipe.topk,
        checkpoint_interval_s=checkpoint_interval,
        started=started,
        state_extra={"fingerprint": fingerprint, "args": args_record, "num_classes": num_classes},
    )
    if state is not None:
        trainer.load_state_dict(state)
        log.info(f"resuming {paths['dir']} at iteration {trainer.position['iteration']}/{total}")
    else:
        used = train_size if indices is None else int(indices.numel())
        log.info(
            f"training {network} on {dataset}: {used}/{train_size} examples, {total} "
            f"iterations ({per_epoch}/epoch), {device}, {precision}, "
            f"{dist_utils.world_size()} process(es)"
        )
    epochs_per_test = max(1, recipe.iterations_per_testing // per_epoch)
    try:
        result = trainer.fit(total, epochs_per_test)
    except Interrupted as stop:
        log.info(
            f"interrupted at iteration {stop.args[0]}; checkpoint saved in {paths['dir']}; "
            "run the same command again to resume"
        )
        return 130
    write_outputs(
        paths,
        result=result,
        args_record=args_record,
        coreset=coreset,
        indices=indices,
        train_size=train_size,
        dynamics=dynamics,
        epochs_seen=math.ceil(total / per_epoch),
        device=device,
        seed=seed,
        dataset=dataset,
        network=network,
    )
    log.info(
        f"done: best acc {result['best_acc']:.4f}, last acc {result['last_acc']:.4f}, "
        f"{result['images_per_s']:,.0f} img/s; outputs in {paths['dir']}"
    )
    return 0


def write_outputs(
    paths,
    *,
    result,
    args_record,
    coreset,
    indices,
    train_size,
    dynamics,
    epochs_seen,
    device,
    seed,
    dataset,
    network,
):
    """metrics.json, the dynamics file and the coreset indices (rank 0 only)."""
    if not dist_utils.is_main():
        return None
    from core.coreset import method_name

    if dynamics is not None:
        atomic_torch_save(
            {
                "scores": dynamics.scores(),
                "epochs": epochs_seen,
                "el2n_epochs": dynamics.el2n_epochs,
            },
            paths["td"],
        )
    if indices is not None:
        atomic_torch_save(indices.clone(), paths["indices"])
    metrics = {
        "method": "full" if coreset is None else method_name(coreset["mode"], coreset["key"]),
        "pruning_rate": 0.0 if coreset is None else round(1.0 - coreset["ratio"], 6),
        "best_acc": result["best_acc"],
        "last_acc": result["last_acc"],
        "coreset_size": train_size if indices is None else int(indices.numel()),
        "train_size": train_size,
        "iterations": result["iterations"],
        "epochs": result["epochs"],
        "train_time_s": result["train_time_s"],
        "wall_time_s": result["wall_time_s"],
        "images_per_s": result["images_per_s"],
        "seed": seed,
        "dataset": dataset,
        "network": network,
        "coreset": coreset,
        "history": result["history"],
        "args": args_record,
        **provenance(device),
    }
    atomic_json_dump(metrics, paths["metrics"])
    return metrics
