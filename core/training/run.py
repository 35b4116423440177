"""What every training script does around the Trainer: device, run folder, coreset, outputs."""
import os
import random
import time

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
            local = os.environ.get("LOCAL_RANK")
            first = int(local) if local is not None else int(gpuid.split(",")[0] or 0)
            return torch.device("cuda", first)
        return torch.device("cpu")
    try:
        device = torch.device(device_flag)
    except RuntimeError:
        raise UserError(f"--device {device_flag!r} is not a device (cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device_flag}: CUDA is not available on this machine")
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
    return {"dir": run_dir, "last": os.path.join(run_dir, "ckpt-last.pt"),
            "best": os.path.join(run_dir, "ckpt-best.pt"),
            "log": os.path.join(run_dir, f"log-train-{task_name}.log"),
            "td": os.path.join(run_dir, f"td-{task_name}.pt"),
            "metrics": os.path.join(run_dir, "metrics.json"),
            "indices": os.path.join(run_dir, "coreset-indices.pt")}


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
        raise UserError(f"{paths['dir']} holds a run with other settings ({k}: {old.get(k)!r} "
                        f"there, {fingerprint.get(k)!r} now); use --no-resume to overwrite it or "
                        "another --task-name")
    return state


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
        if "targets" in data_score and not torch.equal(data_score["targets"].long(),
                                                       train_targets.long()):
            raise UserError(f"{data_score_path}: its targets differ from this dataset's labels "
                            "(scores of another dataset or another ordering?)")
    return select_coreset(data_score, num_examples=n, seed=seed, **settings)


def write_outputs(paths, *, result, args, coreset, indices, train_size, dynamics, epochs_seen,
                  device, seed, dataset, network, started):
    """metrics.json, the dynamics file and the coreset indices (rank 0 only)."""
    if not dist_utils.is_main():
        return None
    from core.coreset import method_name

    if dynamics is not None:
        atomic_torch_save({"scores": dynamics.scores(), "epochs": epochs_seen,
                           "el2n_epochs": dynamics.el2n_epochs}, paths["td"])
    if indices is not None:
        atomic_torch_save(indices.clone(), paths["indices"])
    metrics = {
        "method": "full" if coreset is None else method_name(coreset["mode"], coreset["key"]),
        "pruning_rate": 0.0 if coreset is None else round(1.0 - coreset["ratio"], 6),
        "best_acc": result["best_acc"], "last_acc": result["last_acc"],
        "coreset_size": train_size if indices is None else int(indices.numel()),
        "train_size": train_size, "iterations": result["iterations"], "epochs": result["epochs"],
        "train_time_s": result["wall_time_s"], "wall_time_s": time.time() - started,
        "images_per_s": result["images_per_s"], "seed": seed, "dataset": dataset,
        "network": network, "coreset": coreset, "history": result["history"],
        "args": vars(args), **provenance(device),
    }
    atomic_json_dump(metrics, paths["metrics"])
    return metrics
