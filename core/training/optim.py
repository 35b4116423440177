"""Optimisers and learning-rate schedules of the reference scripts (docs/FAITHFULNESS.md T-rows)."""

import torch

SCHEDULERS = ("default", "short", "short-400k", "cosine")


def build_sgd(model, lr, momentum=0.9, weight_decay=5e-4, nesterov=True):
    return torch.optim.SGD(
        model.parameters(),
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
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
    milestones = {
        "default": [e * iterations_per_epoch for e in (30, 60, 90, 100)],
        "short": [100_000, 150_000, 200_000],
        "short-400k": [200_000, 300_000, 350_000],
    }[name]  # argparse's choices= (SCHEDULERS) admits no other name
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)


def total_iterations(epochs: int | None, iterations: int | None, per_epoch: int) -> int:
    """--iterations as given, or --epochs whole epochs."""
    return iterations if iterations is not None else epochs * per_epoch
