"""What a run does around the Trainer: precision, seeding and placing the model. (The run path
itself, with the run folder's outputs, is core.experiment.)"""

import random

import numpy as np
import torch

from core.training import distributed as dist_utils


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
