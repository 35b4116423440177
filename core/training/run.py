"""What a training script does around the Trainer: precision, seeding, placing the model, and
the run folder's final outputs (metrics.json, the dynamics file, the coreset indices)."""

import random

import numpy as np
import torch

from core.coreset import method_name
from core.data.noise import LabelNoise
from core.fileio import atomic_json_dump, atomic_torch_save
from core.provenance import provenance
from core.run_folder import RunFolder
from core.scores import TrainingDynamics
from core.training import distributed as dist_utils
from core.training.runlog import RunLog


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """(``bf16`` or ``fp32``, why). auto: bf16 autocast on CUDA and on a CPU that executes bf16
    matrix work natively (AMX or AVX512-BF16: 2-3x faster there); fp32 on other CPUs, where
    bf16 is emulated and slower. Dynamics and scores see fp32 logits either way."""
    if precision != "auto":
        return precision, f"--precision {precision}"
    if device.type == "cuda":
        return "bf16", "auto: bf16 autocast on CUDA"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16", "auto: this CPU has native bf16 (amx_bf16 or avx512_bf16)"
    return "fp32", f"auto: fp32 on {device.type} without native bf16"


def cpu_has_native_bf16() -> bool:
    """Whether the CPU advertises AMX-BF16 or AVX512-BF16 (Linux /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def place_model(model: torch.nn.Module, device, compile_model: bool = False) -> torch.nn.Module:
    """The bare network moved to the device in channels_last (faster with cuDNN and oneDNN
    alike; the loaders deliver batches in it too), wrapped in DDP under torchrun, compiled
    if asked. The optimiser may be built on the result: the parameters are the same."""
    model = model.to(device, memory_format=torch.channels_last)
    model = dist_utils.wrap_model(model, device)
    return torch.compile(model, **COMPILE_OPTIONS) if compile_model else model


# Static shapes: one graph per batch shape, compiled the first time it comes. An epoch has at
# most two shapes per mode (full batches and the last, partial one, which is kept: every
# example is trained on), so a run compiles about four graphs, each once. By default the first
# partial batch would instead recompile into a dynamic-shape graph that then serves every
# batch, without kernels specialised to the batch size.
COMPILE_OPTIONS = {"dynamic": False}


def write_outputs(
    run: RunFolder,
    result: dict,
    record: dict,
    *,
    indices: torch.Tensor | None,
    train_size: int,
    dynamics: TrainingDynamics | None,
    device,
    noise: LabelNoise | None = None,
) -> dict | None:
    """metrics.json, the dynamics file and the coreset indices (rank 0 only), then the log's
    last line. ``result`` is what ``Trainer.fit`` returned, ``record`` ``cli.run_record``."""
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
    coreset = record["coreset"]
    metrics = {
        "method": "full" if coreset is None else method_name(coreset["mode"], coreset["key"]),
        "pruning_rate": 0.0 if coreset is None else round(1.0 - coreset["ratio"], 6),
        "coreset_size": train_size if indices is None else int(indices.numel()),
        "train_size": train_size,
        # the dataset's share of flipped labels, and the share among the examples trained on
        "label_noise": None if noise is None else noise.rate,
        "mislabeled_share": None if noise is None else noise.share_in(indices),
        **result,
        **record,
        **provenance(device),
    }
    atomic_json_dump(metrics, run.metrics)
    RunLog(run.log).info(
        f"done: best acc {result['best_acc']:.4f}, last acc {result['last_acc']:.4f}, "
        f"{result['images_per_s']:,.0f} img/s; outputs in {run.dir}"
    )
    return metrics
