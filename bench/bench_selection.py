"""Time core.coreset.select_coreset against a loop implementation of the reference, one core.

The loop versions follow the authors' code (per-stratum and per-class boolean masks over all N,
Python lists of indices) with the defects of docs/FAITHFULNESS.md C1 (each class's own count),
C5 (stable orderings) and C6 (allocation ties in stratum order) fixed, so their coresets can be
checked against ours: identical for the deterministic modes, identical per-stratum counts for
CCS (whose random draws differ, C7). Run it on one core: `taskset -c 0 python ...`.

A second table times the feature-space peers, D2 pruning and k-center greedy, on synthetic
512-dim features (no loop column: the authors' code builds a dense N x N distance matrix,
20 GB at N = 50,000); --scaling adds their N-scaling on one graph over all examples and the
extrapolation to ImageNet's N.

    python bench/bench_selection.py [--sizes 50000 1281167] [--repeats 3]
        [--feature-sizes 50000 1281167] [--scaling 12500 25000 50000 100000]
"""

import argparse
import math
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
    for c, k in zip(classes, keep):  # the authors' band of ranks around the median, per class
        members = torch.arange(n)[targets == c]
        low = (len(members) - k) // 2
        selected += list(members[values[members].argsort(stable=True)[low : low + k]])
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


# ---- the feature-space peers --------------------------------------------------------------------

IMAGENET_N = 1_281_167
FEATURE_DIM = 512
PEERS = {  # settings as scripts/methods.sh runs them, and the same on one graph of all examples
    "d2 per class": dict(
        mode="d2",
        ratio=RATIO,
        key="forgetting",
        descending=True,
        class_balanced=True,
        mis_ratio=0.4,
    ),
    "d2 all": dict(mode="d2", ratio=RATIO, key="forgetting", descending=True),
    "kcenter per class": dict(mode="kcenter", ratio=RATIO, class_balanced=True),
    "kcenter all": dict(mode="kcenter", ratio=RATIO),
}


def synthetic_features(targets: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """float16 [N, 512] features shaped like a trained network's penultimate ones: one
    cluster per class, spread along a 32-dim subspace plus small isotropic noise, after a
    ReLU. Made in slices so that ImageNet's N needs no float32 copy of it all."""
    gen = torch.Generator().manual_seed(seed)
    classes = int(targets.max()) + 1
    centers = torch.randn(classes, FEATURE_DIM, generator=gen) * 2
    spread = torch.randn(32, FEATURE_DIM, generator=gen) / 32**0.5
    parts = []
    for part in targets.long().split(1 << 16):
        latent = torch.randn(len(part), 32, generator=gen)
        noise = 0.1 * torch.randn(len(part), FEATURE_DIM, generator=gen)
        parts.append((centers[part] + latent @ spread + noise).relu().half())
    return torch.cat(parts)


def peer_rows(sizes, repeats):
    """One row per peer and size; a graph of all examples is skipped above 100,000."""
    header = f"{'mode':<20}{'N':>10}{'classes':>9}{'kept':>8}{'s':>10}"
    print(f"\nfeature-space peers, {FEATURE_DIM}-dim features, ratio {RATIO}")
    print(header + "\n" + "-" * len(header))
    for n in sizes:
        score = synthetic_scores(n, 10 if n <= 100_000 else 1000)
        features = synthetic_features(score["targets"])
        for name, kwargs in PEERS.items():
            if name.endswith("all") and n > 100_000:
                continue
            seconds, kept = best_time(
                partial(select_coreset, score, features=features, seed=0, **kwargs), repeats
            )
            classes = int(score["targets"].max()) + 1
            print(f"{name:<20}{n:>10}{classes:>9}{len(kept):>8}{seconds:>10.1f}")


def scaling_rows(sizes):
    """d2 and k-center on one graph of all examples at growing N, and the time at ImageNet's
    N extrapolated with the exponent of the last two sizes."""
    print(f"\nN-scaling, one graph of all examples (10 classes), ratio {RATIO}")
    for name in ("d2 all", "kcenter all"):
        times = []
        for n in sizes:
            score = synthetic_scores(n, 10)
            features = synthetic_features(score["targets"])
            times.append(
                best_time(
                    partial(select_coreset, score, features=features, seed=0, **PEERS[name]), 1
                )[0]
            )
            print(f"{name:<20}{n:>10}{times[-1]:>10.1f} s", flush=True)
        slope = math.log(times[-1] / times[-2]) / math.log(sizes[-1] / sizes[-2])
        at_imagenet = times[-1] * (IMAGENET_N / sizes[-1]) ** slope
        print(f"{name:<20}  ~N^{slope:.2f}: {at_imagenet / 3600:.1f} h at N = {IMAGENET_N:,}")


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
    print(f"torch {torch.__version__}, 1 thread")
    if args.sizes:
        loop_rows(args)
    if args.feature_sizes:
        peer_rows(args.feature_sizes, args.feature_repeats)
    if args.scaling:
        scaling_rows(args.scaling)


def loop_rows(args):
    print(f"against a loop implementation: ratio {RATIO}, mis-ratio {MIS_RATIO}, {STRATA} strata")
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
        nargs="*",
        default=[50_000, 1_281_167],
        help="dataset sizes of the loop comparison (default: 50000 1281167)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed runs of each implementation, best kept (default: 3)",
    )
    parser.add_argument(
        "--feature-sizes",
        type=int,
        nargs="*",
        default=[50_000, IMAGENET_N],
        help="dataset sizes of the d2 and kcenter rows (default: 50000 1281167)",
    )
    parser.add_argument(
        "--feature-repeats",
        type=int,
        default=1,
        help="timed runs of each d2 and kcenter row, best kept (default: 1)",
    )
    parser.add_argument(
        "--scaling",
        type=int,
        nargs="*",
        default=[],
        help="sizes of the N-scaling of d2 and kcenter on one graph of all examples, "
        "e.g. 12500 25000 50000 100000 (default: none)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
