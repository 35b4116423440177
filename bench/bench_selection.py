"""Time core.coreset.select_coreset against a loop implementation of the reference, one core.

The loop versions follow the authors' code (per-stratum and per-class boolean masks over all N,
Python lists of indices) with the defects of docs/FAITHFULNESS.md C1 (each class's own count),
C5 (stable orderings) and C6 (allocation ties in stratum order) fixed, so their coresets can be
checked against ours: identical for the deterministic modes, identical per-stratum counts for
CCS (whose random draws differ, C7). Run it on one core: `taskset -c 0 python ...`.

    python bench/bench_selection.py [--sizes 50000 1281167] [--repeats 3]
"""

import argparse
import os
import sys
import time
from functools import partial

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from core.coreset import select_coreset, stratify

RATIO, MIS_RATIO, STRATA = 0.1, 0.3, 50


def synthetic_scores(n: int, classes: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {
        "targets": torch.randint(0, classes, (n,), generator=gen, dtype=torch.int32),
        "accumulated_margin": torch.randn(n, generator=gen) * 40 + 60,
        "el2n": torch.rand(n, generator=gen) * 5,
        "forgetting": torch.randint(0, 20, (n,), generator=gen, dtype=torch.int32),
        "moderate_distance": torch.rand(n, generator=gen) * 10,
    }


# ---- loop implementations of the reference ----------------------------------------------------


def loop_random(score, n):
    return torch.randperm(n)[: int(RATIO * n)]


def loop_coreset(score, n):
    return score["el2n"].argsort(descending=True, stable=True)[: int(RATIO * n)]


def loop_class_balanced(score, n):
    order = score["el2n"].argsort(descending=True, stable=True)
    targets = score["targets"][order]
    selected = []
    for target in torch.unique(targets):  # each class's own count (the reference used the last)
        members = torch.arange(n)[targets == target]
        selected = selected + list(members[: int(len(members) * RATIO)])
    return order[torch.tensor(selected)]


def loop_stratified(score, n):
    """The authors' mislabel_mask + stratified_sampling: every stratum's mask over all N is
    built twice (to count, then to sample) and picks are gathered with .item()."""
    order = score["accumulated_margin"].argsort(stable=True)
    easy = order[int(MIS_RATIO * n) :]
    values = score["accumulated_margin"][easy]
    low, high = torch.min(values), torch.max(values) * 1.0001
    step = (high - low) / STRATA

    def in_stratum(k):
        return torch.logical_and(values >= low + k * step, values < low + (k + 1) * step)

    sizes = torch.tensor([int(in_stratum(k).sum()) for k in range(STRATA)])
    budgets = loop_allocate(int(RATIO * n), sizes)
    selected = []
    positions = torch.arange(len(values))
    for k in range(STRATA):
        pool = positions[in_stratum(k)]
        selected += [idx.item() for idx in pool[torch.randperm(len(pool))][: budgets[k]]]
    return easy[selected]  # a Python list as index, as in the authors' train.py


def loop_allocate(budget, sizes):
    order = torch.sort(sizes, stable=True).indices
    result, rest = [0] * len(sizes), budget
    for i, k in enumerate(order.tolist()):
        result[k] = min(int(sizes[k]), rest // (len(sizes) - i))
        rest -= result[k]
    return result


def loop_moderate(score, n):
    targets, values = score["targets"], score["moderate_distance"].double()
    classes, counts = torch.unique(targets, return_counts=True)
    budget = int(RATIO * n)
    quotas = [int(c) * budget / n for c in counts]
    keep = [int(q) for q in quotas]
    for k in sorted(range(len(quotas)), key=lambda k: -(quotas[k] - keep[k]))[: budget - sum(keep)]:
        keep[k] += 1
    selected = []
    for c, k in zip(classes, keep):
        members = torch.arange(n)[targets == c]
        distance = (values[members] - values[members].quantile(0.5)).abs()
        selected += list(members[distance.argsort(stable=True)[:k]])
    return torch.tensor(selected)


MODES = {
    "random": (dict(mode="random", ratio=RATIO), loop_random),
    "coreset el2n": (dict(mode="coreset", ratio=RATIO, key="el2n", descending=True), loop_coreset),
    "class-balanced": (
        dict(mode="coreset", ratio=RATIO, key="el2n", descending=True, class_balanced=True),
        loop_class_balanced,
    ),
    "stratified (CCS)": (
        dict(mode="stratified", ratio=RATIO, key="accumulated_margin", mis_ratio=MIS_RATIO),
        loop_stratified,
    ),
    "moderate": (dict(mode="moderate", ratio=RATIO), loop_moderate),
}


def best_time(fn, repeats):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def agree(name, score, ours, loop) -> str:
    """Deterministic modes: same set; CCS: same per-stratum counts; random: same size."""
    if name == "random":
        return "size" if len(ours) == len(loop) else "DIFFERS"
    if name.startswith("stratified"):
        values = score["accumulated_margin"]
        inner = stratify(values[_survivors(values)], STRATA)[1].float()[1:-1].contiguous()

        def count(idx):
            return torch.bincount(torch.bucketize(values[idx], inner, right=True), minlength=STRATA)

        return "counts" if torch.equal(count(ours), count(loop)) else "DIFFERS"
    return "same" if torch.equal(ours, loop.sort().values) else "DIFFERS"


def _survivors(values):
    return values.argsort(stable=True)[int(MIS_RATIO * len(values)) :]


def main(args):
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, 1 thread, ratio {RATIO}, mis-ratio {MIS_RATIO}, "
        f"{STRATA} strata"
    )
    header = f"{'mode':<18}{'N':>10}{'classes':>9}{'ours s':>10}{'loop s':>10}{'speedup':>9}  check"
    print(header + "\n" + "-" * len(header))
    for n in args.sizes:
        classes = 10 if n <= 100_000 else 1000
        score = synthetic_scores(n, classes)
        for name, (kwargs, loop) in MODES.items():
            ours_s, ours = best_time(partial(select_coreset, score, seed=0, **kwargs), args.repeats)
            loop_s, reference = best_time(partial(loop, score, n), args.repeats)
            print(
                f"{name:<18}{n:>10}{classes:>9}{ours_s:>10.3f}{loop_s:>10.3f}"
                f"{loop_s / ours_s:>8.1f}x  {agree(name, score, ours, reference)}"
            )


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[50_000, 1_281_167],
        help="dataset sizes (default: 50000 1281167)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed runs of each implementation, best kept (default: 3)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
