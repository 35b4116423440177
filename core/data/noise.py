"""Symmetric label noise: a known share of training labels flipped to another class.

CCS's hard cut exists because the hardest examples are often mislabeled; with labels
corrupted on purpose, a report can count how many mislabeled examples each coreset kept.
"""

import dataclasses
import hashlib

import torch

from core.errors import UserError


@dataclasses.dataclass(frozen=True)
class LabelNoise:
    targets: torch.Tensor  # the labels trained on (int64), some of them wrong
    true_targets: torch.Tensor  # the dataset's own labels (int64)
    noisy: torch.Tensor  # bool: targets != true_targets

    @property
    def rate(self) -> float:
        return float(self.noisy.float().mean()) if len(self.noisy) else 0.0

    def share_in(self, indices: torch.Tensor | None) -> float:
        """The fraction of mislabeled examples among ``indices`` (None: all)."""
        noisy = self.noisy if indices is None else self.noisy[indices]
        return float(noisy.float().mean()) if len(noisy) else 0.0

    def score_keys(self) -> dict:
        """What a score file carries so that any later selection can be judged (extra keys:
        the authors' scripts ignore them)."""
        return {
            "noisy_label": self.noisy.to(torch.int32),
            "true_targets": self.true_targets.to(torch.int32),
        }


def corrupt_labels(targets: torch.Tensor, num_classes: int, rate: float, seed: int) -> LabelNoise:
    """Flip exactly round(rate * N) labels, chosen uniformly, each to a uniformly drawn *other*
    class; the draw depends on ``seed`` alone (not on the run's --seed), so every run of a
    study sees the same corruption."""
    if not 0 <= rate < 1:
        raise UserError(f"--label-noise must be in [0, 1), got {rate}")
    if num_classes < 2 and rate > 0:
        raise UserError("--label-noise needs at least 2 classes")
    true = torch.as_tensor(targets).long().clone()
    n = len(true)
    generator = torch.Generator().manual_seed(noise_stream_seed(seed))
    flip = torch.randperm(n, generator=generator)[: round(rate * n)]
    # adding 1..C-1 modulo C moves to a uniformly chosen class other than the true one
    shift = torch.randint(1, max(num_classes, 2), (len(flip),), generator=generator)
    noisy_targets = true.clone()
    noisy_targets[flip] = (true[flip] + shift) % num_classes
    return LabelNoise(targets=noisy_targets, true_targets=true, noisy=noisy_targets != true)


def noise_stream_seed(seed: int) -> int:
    """The generator seed of the flips: ``seed`` hashed with a name, so that the flips never
    share a random stream with the coreset selections, which draw torch.randperm(N) from the
    run's --seed. (Seeded with ``seed`` itself, a --seed 0 random coreset was a subset of the
    --label-noise-seed 0 flips: every example it kept was mislabeled.)"""
    digest = hashlib.sha256(f"label-noise/{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # 63 bits: any torch accepts it


def noise_from_score_file(data_score: dict, targets: torch.Tensor, path: str) -> LabelNoise | None:
    """The corruption a score file's run trained on (None if it had none); refuses a file whose
    true labels are not this dataset's."""
    if "noisy_label" not in data_score:
        return None
    true = data_score["true_targets"].long()
    if len(true) != len(targets) or not torch.equal(true, torch.as_tensor(targets).long()):
        raise UserError(
            f"{path}: its true labels differ from this dataset's (scores of another dataset, "
            "ordering or --train-subset?)"
        )
    noisy_targets = data_score["targets"].long()
    return LabelNoise(targets=noisy_targets, true_targets=true, noisy=noisy_targets != true)


def with_targets(bundle, targets: torch.Tensor):
    """The dataset bundle training on ``targets`` instead of its own labels."""
    train = dataclasses.replace(bundle.train, targets=targets.clone())
    return dataclasses.replace(bundle, train=train)


def resolve_label_noise(
    rate: float | None,
    seed: int,
    targets: torch.Tensor,
    num_classes: int,
    score_data: dict | None,
    score_path: str | None,
) -> LabelNoise | None:
    """The labels a run trains on. A coreset run follows its score file's run (`score_data`,
    read from `score_path`; so a study trains every coreset on the labels its scores came
    from); --label-noise, if also given, must agree with it. Otherwise --label-noise RATE
    corrupts the labels afresh."""
    from_file = None
    if score_data is not None:
        from_file = noise_from_score_file(score_data, targets, score_path)
    if from_file is not None:
        if rate is not None and round(rate * len(targets)) != int(from_file.noisy.sum()):
            raise UserError(
                f"--label-noise {rate} contradicts {score_path}, whose run had "
                f"{from_file.rate:.4g} of its labels flipped; drop the flag to follow the file"
            )
        return from_file
    if rate and score_path is not None:
        raise UserError(
            f"--label-noise {rate}: the run of {score_path} trained on clean labels; its scores "
            "would judge other labels than these"
        )
    return corrupt_labels(targets, num_classes, rate, seed) if rate else None
