"""A validation split held out of the training set (--val-size, ours): the honest protocol.

The paper reports each run's best test accuracy over its test points and tunes the hard-cut
ratio β on that same test accuracy. With a validation split, model selection (the test point
reported, ckpt-best.pt, β) looks at held-out training examples instead, and the test set is
only ever read for the number reported.

The split is drawn once per dataset, whatever the run's --seed: VAL_SEED hashed with a name
(as core.data.noise does for the flips), so that it shares no random stream with the subset,
the flips or the coreset draws. It is class-stratified: each class gives its proportional
share of the N held-out examples, by largest remainders, so the total is exactly N. The
training set that remains stands in for the whole of it (positions 0..M-1, in the original
order): dynamics, scores, coreset indices and label noise refer to positions within it.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch

from core.errors import UserError

VAL_SEED = 0  # fixed: every run of a study holds out the same examples, whatever its --seed
SCORE_KEY = "train_positions"  # the score file's record of the split (an extra key)


@dataclasses.dataclass(frozen=True)
class ValSplit:
    """The held-out part of a training set of ``total`` examples: ``positions`` (sorted, int64,
    in the training set before the split), ``rest`` (the complement, sorted: position i of the
    training set the run uses is ``rest[i]`` before the split) and ``split`` (the held-out
    examples, the same type as the training split: core.data ArrayDataset or ImageList)."""

    positions: torch.Tensor
    rest: torch.Tensor
    split: object
    total: int

    @property
    def size(self) -> int:
        return int(self.positions.numel())

    def score_keys(self) -> dict:
        """What a score file carries so that a coreset run can tell which split it covers
        (an extra key, one entry per example: the authors' scripts ignore it)."""
        return {SCORE_KEY: self.rest.clone()}


def val_stream_seed(seed: int = VAL_SEED) -> int:
    """The generator seed of the split: ``seed`` hashed with a name, so that the split never
    shares a random stream with a draw seeded by the same small integer (--seed, the subset's
    seed 0, --label-noise-seed; see core.data.noise.noise_stream_seed for what that did)."""
    digest = hashlib.sha256(f"val-split/{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # 63 bits: any torch accepts it


def check_val_size(size) -> None:
    if isinstance(size, bool) or int(size) != size or size < 0:
        raise UserError(f"--val-size must be 0 (none) or a positive number of examples, got {size}")


def class_quotas(targets: torch.Tensor, size: int) -> torch.Tensor:
    """How many examples each class gives: ``size`` split in proportion to the class counts,
    floors first, then one more to the largest remainders (ties: the lower class); the total
    is exactly ``size`` and no class gives more than it has."""
    counts = torch.bincount(torch.as_tensor(targets).long())
    scaled = counts * size
    quotas = scaled // len(targets)
    remainder = scaled % len(targets)
    extra = size - int(quotas.sum())
    # stable: equal remainders keep class order
    order = torch.from_numpy(np.argsort(-remainder.numpy(), kind="stable"))
    quotas[order[:extra]] += 1
    return quotas


def holdout_positions(targets: torch.Tensor, size: int, seed: int = VAL_SEED) -> torch.Tensor:
    """The ``size`` held-out positions (sorted int64): one fixed permutation of all positions,
    and from each class the first of its examples in that order, its quota many."""
    targets = torch.as_tensor(targets).long()
    n = len(targets)
    check_val_size(size)
    if size >= n:
        raise UserError(
            f"--val-size {size} leaves nothing to train on: the training set has {n} examples"
        )
    generator = torch.Generator().manual_seed(val_stream_seed(seed))
    order = torch.randperm(n, generator=generator)
    in_order = targets[order]
    quotas = class_quotas(targets, size)
    chosen = [order[in_order == c][: int(k)] for c, k in enumerate(quotas.tolist()) if k]
    return torch.cat(chosen).sort().values if chosen else torch.zeros(0, dtype=torch.long)


def take(split, positions: torch.Tensor):
    """The examples of a training split (ArrayDataset: images and targets; ImageList: paths
    and targets) at ``positions``, in that order."""
    n = len(split)
    values = {}
    for f in dataclasses.fields(split):
        value = getattr(split, f.name)
        if isinstance(value, torch.Tensor) and value.dim() and len(value) == n:
            values[f.name] = value[positions].contiguous()
        elif isinstance(value, np.ndarray) and value.ndim and len(value) == n:
            values[f.name] = value[positions.numpy()]
    return dataclasses.replace(split, **values)


def split_validation(bundle, size: int, seed: int = VAL_SEED):
    """(bundle, ValSplit or None): the bundle whose training set is what remains after
    holding ``size`` examples out (class-stratified, fixed seed), and the held-out part.
    ``size`` 0: the bundle as it was and None."""
    check_val_size(size)
    if not size:
        return bundle, None
    targets = bundle.train.targets
    positions = holdout_positions(targets, size, seed)
    keep = torch.ones(len(targets), dtype=torch.bool)
    keep[positions] = False
    rest = keep.nonzero().flatten()
    val = ValSplit(positions, rest, take(bundle.train, positions), len(targets))
    return dataclasses.replace(bundle, train=take(bundle.train, rest)), val


def check_score_file_split(data_score: dict | None, val: ValSplit | None, total: int, path):
    """A coreset run selects from the training examples its scores cover: refuse a score file
    made with another validation split (or with one, for a run without, and the other way).
    ``total``: the run's training-set size before the split."""
    if data_score is None:
        return
    found = data_score.get(SCORE_KEY)
    ours = None if val is None else val.rest
    if found is None and ours is None:
        return
    if found is not None and ours is not None and torch.equal(found.long(), ours):
        return

    def described(rest) -> str:
        return "no validation split" if rest is None else f"--val-size {total - len(rest)}"

    theirs = described(found)
    if found is not None and ours is not None and len(found) == len(ours):
        theirs += " but other held-out examples"
    raise UserError(
        f"{path} was scored with {theirs}, this run has {described(ours)}: its scores cover "
        "other training examples; give this run the score file's --val-size, or score a "
        "full-data run made with this one's"
    )
