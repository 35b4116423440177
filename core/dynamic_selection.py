"""Selections that are draws, not a cut of a ranking: DUAL's Beta sampling and RS2.

Pure functions of their arguments (and seed), returning ascending dataset indices.
- `dual_sample`: DUAL's pruning-ratio-adaptive sampling (Cho et al., ICML 2025).
- `rs2_epoch_indices` / `RS2Schedule`: RS2 without replacement (Okanovic et al., ICLR 2024),
  a fresh subset every epoch, any epoch computable directly (exact resume without state).
"""

from __future__ import annotations

import hashlib
import math

import torch

from core.errors import UserError

# DUAL, exp_cifar: train_subset.py --c_d default 4 (the README's command too); data_subset.py
# beta_sampling: Beta(16 - b, b), b = 15 (1 - anchor) (1 - prune_rate^c_d), anchor = the mean
# prediction of the 10 highest-scored examples. (exp_imagenet's train_imagenet.py declares
# --d_c 11 but reads args.c_d; its dual_utils uses prune_rate^(2 + c_d).)
DUAL_C_D = 4.0
DUAL_BETA_SCALE = 15.0
DUAL_ANCHORS = 10


def _budget(ratio: float, n: int) -> int:
    if not 0 < ratio <= 1:
        raise UserError(f"--coreset-ratio must be in (0, 1], got {ratio}")
    budget = int(ratio * n)  # as every coreset mode here: int(ratio * N)
    if budget == 0:
        raise UserError(f"--coreset-ratio: {ratio} of {n} examples selects no example")
    return budget


def dual_beta(mean_prob, scores, ratio: float, c_d: float = DUAL_C_D) -> tuple[float, float]:
    """(alpha, beta) of DUAL's Beta distribution over the mean target probability."""
    top = torch.as_tensor(scores).double().argsort(descending=True)[:DUAL_ANCHORS]
    anchor = float(torch.as_tensor(mean_prob).double()[top].mean())
    prune_rate = 1.0 - ratio
    b = DUAL_BETA_SCALE * (1 - anchor) * (1 - prune_rate**c_d)
    return DUAL_BETA_SCALE + 1 - b, b


def dual_sample(
    scores,
    ratio: float,
    seed: int | None = None,
    *,
    mean_prob,
    c_d: float = DUAL_C_D,
    generator: torch.Generator | None = None,
) -> torch.LongTensor:
    """DUAL + Beta sampling: int(ratio*N) distinct examples drawn without replacement, each
    with weight Beta(mean_prob; alpha, beta) * score, where `scores` are DUAL scores and
    `mean_prob` each example's mean target probability over DUAL's epochs (score keys `dual`
    and `dual_mean_prob`). The higher the pruning rate, the more the Beta favours easy
    examples (high mean_prob). `generator` wins over `seed`; neither: fresh randomness.
    """
    scores = torch.as_tensor(scores).double().reshape(-1)
    mean_prob = torch.as_tensor(mean_prob).double().reshape(-1)
    n = len(scores)
    if len(mean_prob) != n:
        raise UserError(f"dual_mean_prob has {len(mean_prob)} entries, the scores {n}")
    if not (torch.isfinite(scores).all() and (scores >= 0).all()):
        raise UserError("DUAL sampling needs finite, non-negative scores (the 'dual' key)")
    budget = _budget(ratio, n)
    a, b = dual_beta(mean_prob, scores, ratio, c_d)
    # below 1: a Beta with b < 1 (pruning rates near 1) is infinite at 1, where the authors'
    # np.random.choice then fails on NaN probabilities
    x = mean_prob.clamp(0.0, 1.0 - 2.0**-24)
    log_pdf = (
        torch.special.xlogy(a - 1, x)
        + torch.special.xlog1py(b - 1, -x)
        - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    )
    weights = log_pdf.exp() * scores
    if generator is None:
        generator = torch.Generator()
        if seed is None:
            generator.seed()  # fresh, non-reproducible randomness
        else:
            generator.manual_seed(int(seed))
    positive = int((weights > 0).sum())
    if positive >= budget:
        chosen = torch.multinomial(weights, budget, replacement=False, generator=generator)
    else:  # fewer weighted examples than asked for: all of them, the rest uniformly
        rest = (weights <= 0).nonzero().squeeze(1)
        fill = rest[torch.randperm(len(rest), generator=generator)[: budget - positive]]
        chosen = torch.cat([(weights > 0).nonzero().squeeze(1), fill])
    return chosen.sort().values


# ---- RS2 -------------------------------------------------------------------------------------


def _pass_generator(seed: int, group: str, pass_number: int) -> torch.Generator:
    """A generator per (seed, class, pass), hashed so that nearby seeds share no stream."""
    digest = hashlib.sha256(f"rs2/{int(seed)}/{group}/{pass_number}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class _Stream:
    """One group's endless visiting order: pass after pass, each a fresh permutation of the
    group, read `size` at a time (one epoch). An epoch that straddles two passes takes the end
    of one and the start of the next; the next pass's start is drawn from the examples not in
    that end, so an epoch has no repeats and each pass visits every example exactly once."""

    def __init__(self, members: torch.Tensor, size: int, seed: int, group: str):
        self.members, self.size, self.seed, self.group = members, size, seed, group
        self._cached = (-1, None)  # (pass, its order): passes are built one from the last

    def _order(self, k: int) -> torch.Tensor:
        n, m = len(self.members), self.size
        done, order = self._cached if self._cached[0] <= k else (-1, None)
        for p in range(done + 1, k + 1):
            perm = torch.randperm(n, generator=_pass_generator(self.seed, self.group, p))
            straddle = (p * n) % m  # examples of pass p-1 in the epoch that starts pass p
            if p and straddle:
                in_tail = torch.zeros(n, dtype=torch.bool)
                in_tail[order[n - straddle :]] = True
                free = perm[~in_tail[perm]][: m - straddle]
                taken = torch.zeros(n, dtype=torch.bool)
                taken[free] = True
                perm = torch.cat([free, perm[~taken[perm]]])
            order = perm
        self._cached = (k, order)
        return order

    def epoch(self, epoch: int) -> torch.Tensor:
        n, m = len(self.members), self.size
        start = epoch * m
        k, offset = divmod(start, n)
        positions = self._order(k)[offset : offset + m]
        if len(positions) < m:
            positions = torch.cat([positions, self._order(k + 1)[: m - len(positions)]])
        return self.members[positions]


class RS2Schedule:
    """RS2 without replacement: epoch e trains on `indices(e)`, int(ratio*N) examples (with
    `targets`: split over classes in proportion to their sizes, each class its own stream).
    Deterministic in (n, ratio, seed, targets); epochs may be asked for in any order."""

    def __init__(self, n: int, ratio: float, seed: int, targets=None):
        self.n, self.size = int(n), _budget(ratio, int(n))
        if targets is None:
            names, groups, sizes = ["all"], [torch.arange(self.n)], [self.size]
        else:
            targets = torch.as_tensor(targets).reshape(-1).long()
            if len(targets) != self.n:
                raise UserError(f"RS2: {len(targets)} targets for {self.n} examples")
            classes, counts = torch.unique(targets, return_counts=True)
            names = [f"class{c}" for c in classes.tolist()]
            groups = [(targets == c).nonzero().squeeze(1) for c in classes.tolist()]
            from core.coreset import largest_remainder  # here: core.coreset imports this module

            sizes = largest_remainder(counts, self.size).tolist()
        self._streams = [
            _Stream(members, size, seed, name)
            for name, members, size in zip(names, groups, sizes)
            if size
        ]

    def indices(self, epoch: int) -> torch.LongTensor:
        if epoch < 0:
            raise UserError(f"RS2: epoch {epoch} < 0")
        return torch.cat([s.epoch(int(epoch)) for s in self._streams]).sort().values


def rs2_epoch_indices(n: int, ratio: float, epoch: int, seed: int, targets=None):
    """Ascending LongTensor: the examples RS2 (without replacement) trains on in `epoch`."""
    return RS2Schedule(n, ratio, seed, targets).indices(epoch)
