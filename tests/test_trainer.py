"""Trainer.fit against the reference's loop: whole epochs, the same test points, the schedule."""

import pytest
import torch
from torch import nn

from core.run_folder import RunFolder
from core.training.optim import build_scheduler, build_sgd
from core.training.trainer import Trainer


class ListLoader:
    """``per_epoch`` fixed batches of 4 examples (2 features, 2 classes), any epoch."""

    def __init__(self, per_epoch):
        generator = torch.Generator().manual_seed(0)
        self.batches = [
            (
                torch.arange(4 * b, 4 * b + 4),
                torch.randn(4, 2, generator=generator),
                torch.tensor([0, 1, 0, 1]),
            )
            for b in range(per_epoch)
        ]

    def __len__(self):
        return len(self.batches)

    def epoch(self, epoch, start_batch=0):
        return iter(self.batches[start_batch:])


def reference_test_epochs(iterations, per_epoch, epochs_per_test):
    """The authors' train.py loop, reduced to which epochs it tests after (0-based)."""
    tested, epoch, remaining = [], 0, iterations
    while remaining > 0:
        remaining -= per_epoch  # a whole epoch, however few iterations were left
        if epoch % epochs_per_test == 0 or remaining == 0:
            tested.append(epoch)
        epoch += 1
    tested.append(epoch - 1)  # "last ckpt testing" after the loop: the final model again
    return sorted(set(tested)), epoch * per_epoch


def fit(tmp_path, iterations, per_epoch, epochs_per_test):
    model = nn.Linear(2, 2)
    optimizer = build_sgd(model, 0.1)
    scheduler = build_scheduler(optimizer, "cosine", iterations, per_epoch)
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        train_loader=ListLoader(per_epoch),
        test_loader=ListLoader(1),
        device=torch.device("cpu"),
        run=RunFolder(str(tmp_path), f"run-{iterations}-{per_epoch}-{epochs_per_test}"),
        progress=False,
    )
    return trainer.fit(iterations, epochs_per_test), optimizer


@pytest.mark.parametrize(
    "iterations,per_epoch,epochs_per_test",
    [(7, 3, 2), (9, 3, 2), (12, 3, 1), (10, 1, 4), (11, 4, 5), (2, 3, 1), (40, 7, 3)],
)
def test_tests_and_trains_where_the_reference_does(
    tmp_path, iterations, per_epoch, epochs_per_test
):
    result, optimizer = fit(tmp_path, iterations, per_epoch, epochs_per_test)
    tested, trained = reference_test_epochs(iterations, per_epoch, epochs_per_test)
    # history records the position after the test: epoch e was tested at epoch e + 1
    assert [entry["epoch"] - 1 for entry in result["history"]] == tested
    assert [entry["iteration"] for entry in result["history"]] == [
        (e + 1) * per_epoch for e in tested
    ]
    assert result["iterations_trained"] == trained and result["iterations"] == iterations
    assert result["epochs"] == trained // per_epoch
    # the cosine schedule keeps T_max = --iterations and is stepped past it, as the
    # reference's CosineAnnealingLR is: it turns back up (by ~2e-7 at 40,035 of 40,000)
    reference = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(reference, iterations, eta_min=1e-4)
    for _ in range(trained):
        reference.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(reference.param_groups[0]["lr"])
    assert result["best_acc"] == max(entry["acc"][0] for entry in result["history"])
