"""Optimisers and learning-rate schedules of the reference scripts (REFERENCE §2, §6)."""

import torch

from core.cli import SCHEDULERS
from core.errors import UserError


def build_sgd(model, lr, momentum=0.9, weight_decay=5e-4, nesterov=True):
    return torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
    )


def build_scheduler(optimizer, name, total_iterations, iterations_per_epoch, eta_min=1e-4):
    """A scheduler stepped once per iteration.

    cosine: per-iteration cosine annealing to eta_min over the whole run (CIFAR and ImageNet).
    default: x0.1 at epochs 30/60/90/100; short: x0.1 at iterations 100k/150k/200k... (ImageNet).
    """
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total_iterations, eta_min=eta_min
        )
    if name == "default":
        milestones = [e * iterations_per_epoch for e in (30, 60, 90, 100)]
    elif name == "short":
        milestones = [100_000, 150_000, 200_000]
    elif name == "short-400k":
        milestones = [200_000, 300_000, 350_000]
    else:
        raise UserError(f"--scheduler {name!r} is unknown; choose from {', '.join(SCHEDULERS)}")
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
