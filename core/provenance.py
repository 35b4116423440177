"""What a result needs to be traced back: versions, device, git commit, host."""

import os
import platform
import subprocess
import sys
from importlib import metadata

import numpy
import torch


def git_commit() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        commit = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return (commit + ("-dirty" if dirty else "")) if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _version(package: str) -> str:
    # the installed version without importing the package (torchvision's import costs ~2 s)
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def provenance(device: torch.device) -> dict:
    return {
        "device": device_name(device),
        "git_commit": git_commit(),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "torchvision": _version("torchvision"),
            "numpy": numpy.__version__,
        },
        "host": platform.node(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }
