"""Coreset selection: random, score-ordered, CCS (stratified) and Moderate-DS.

Every mode returns dataset indices sorted ascending. Orderings by score are stable sorts (ties
go to the lower dataset index); randomness comes from a seeded torch.Generator. Settings are
checked by `check_settings`, score data by `check_data_score`, each once per selection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from core.errors import UserError
from core.score_io import load_data_score

MODES = ("random", "coreset", "stratified", "moderate")
DEFAULT_KEYS = {"stratified": "accumulated_margin", "moderate": "moderate_distance"}
UPPER_EDGE_FACTOR = 1.0001  # the reference widens the top edge by 0.01%


def method_name(mode: str, key: str | None) -> str:
    """Name of a selection method in results: random, ccs, moderate, or the key (coreset mode)."""
    _check_mode(mode)
    if mode == "coreset":
        return str(key)
    return {"random": "random", "stratified": "ccs", "moderate": "moderate"}[mode]


def check_settings(
    mode: str | None,
    ratio: float | None,
    *,
    key: str | None = None,
    mis_ratio: float = 0.0,
    strata: int = 50,
) -> None:
    """Raise UserError unless the selection settings are valid on their own (no score data
    needed): the one check of select_coreset's, select_from_score_file's and the scripts'
    settings. Each message starts with the command-line flag of the setting at fault, so
    a script user and a library user both recognise it: --coreset-mode (mode),
    --coreset-ratio (ratio), --coreset-key (key), --mis-ratio (mis_ratio), --strata (strata).
    mis_ratio and strata are checked in every mode, though only stratified mode uses them.
    """
    _check_mode(mode)
    if ratio is None:
        raise UserError("--coreset-ratio: a coreset needs a ratio in (0, 1]")
    if not 0 < ratio <= 1:
        raise UserError(f"--coreset-ratio: the coreset ratio must be in (0, 1], got {ratio}")
    if not 0 <= mis_ratio < 1:
        raise UserError(f"--mis-ratio: the mis ratio must be in [0, 1), got {mis_ratio}")
    if mode == "stratified" and ratio + mis_ratio > 1:
        raise UserError(
            f"--coreset-ratio + --mis-ratio must be at most 1, got {ratio} + {mis_ratio}: "
            "not enough examples survive the hard cut"
        )
    _check_strata(strata)
    if mode == "coreset" and not key:
        raise UserError("--coreset-key: coreset mode 'coreset' needs a score key to order by")


def _check_mode(mode) -> None:
    if mode is None:
        raise UserError(f"--coreset-mode: a coreset needs a mode, one of: {', '.join(MODES)}")
    if mode not in MODES:
        raise UserError(
            f"--coreset-mode: unknown coreset mode '{mode}'; choose one of: {', '.join(MODES)}"
        )


def _check_strata(strata) -> None:
    if int(strata) != strata or strata < 1:
        raise UserError(f"--strata: the number of strata must be a positive integer, got {strata}")


def select_coreset(
    data_score: Mapping[str, torch.Tensor] | None,
    mode: str,
    ratio: float,
    key: str | None = None,
    descending: bool = False,
    class_balanced: bool = False,
    mis_ratio: float = 0.0,
    mis_key: str = "accumulated_margin",
    mis_descending: bool = False,
    strata: int = 50,
    seed: int | None = None,
    num_examples: int | None = None,
) -> torch.Tensor:
    """Indices (LongTensor, ascending) of the int(ratio*N) examples a mode keeps.

    random: uniform. coreset: first by `key` (descending keeps the largest; class_balanced
    keeps int(n_c*ratio) per class). stratified (CCS): drop int(mis_ratio*N) by `mis_key`,
    then sample evenly over `strata` equal-width score strata. moderate: per class, the
    examples whose `key` is closest to the class median. `descending` and `class_balanced`
    apply to coreset mode, `mis_*` and `strata` to stratified mode only.
    """
    check_settings(mode, ratio, key=key, mis_ratio=mis_ratio, strata=strata)
    key = key or DEFAULT_KEYS.get(mode)
    if mode == "random":
        n = _random_mode_size(data_score, num_examples)
    else:
        if data_score is None:
            raise _needs_score_file(mode)
        keys = _keys_read(mode, key, class_balanced, mis_ratio, mis_key)
        n = check_data_score(data_score, num_examples=num_examples, keys=keys)
    return _select(
        data_score,
        n,
        mode,
        ratio,
        key,
        descending,
        class_balanced,
        mis_ratio,
        mis_key,
        mis_descending,
        strata,
        seed,
    )


def select_from_score_file(
    path: str | None,
    *,
    mode: str,
    ratio: float,
    targets: torch.Tensor,
    seed: int | None = None,
    key: str | None = None,
    descending: bool = False,
    class_balanced: bool = False,
    mis_ratio: float = 0.0,
    mis_key: str = "accumulated_margin",
    mis_descending: bool = False,
    strata: int = 50,
) -> torch.Tensor:
    """select_coreset on the score file at `path` for a training set labelled `targets`:
    settings, file and data are checked once, including that the file's targets (when it has
    them) equal `targets`. Random mode reads no file (`path` may be None). `mode`, `ratio`
    and the keywords after `seed` are select_coreset's settings: the keys of the dict
    core.cli.coreset_settings returns, so `select_from_score_file(path, targets=t, seed=s,
    **settings)` works.
    """
    check_settings(mode, ratio, key=key, mis_ratio=mis_ratio, strata=strata)
    key = key or DEFAULT_KEYS.get(mode)
    n = len(targets)
    data_score = None
    if mode != "random":
        if path is None:
            raise _needs_score_file(mode)
        data_score = load_data_score(path)
        keys = _keys_read(mode, key, class_balanced, mis_ratio, mis_key)
        check_data_score(data_score, num_examples=n, keys=keys)
        if "targets" in data_score and not torch.equal(
            data_score["targets"].long(), torch.as_tensor(targets).long()
        ):
            raise UserError(
                f"{path}: its targets differ from this dataset's labels "
                "(scores of another dataset or another ordering?)"
            )
    return _select(
        data_score,
        n,
        mode,
        ratio,
        key,
        descending,
        class_balanced,
        mis_ratio,
        mis_key,
        mis_descending,
        strata,
        seed,
    )


def check_data_score(
    data_score: Mapping[str, torch.Tensor], num_examples: int | None = None, keys: Sequence = ()
) -> int:
    """Raise UserError unless data_score is a dict of equally long tensors (of num_examples
    entries when given) holding every key in `keys` with finite values. Returns N.
    """
    if not isinstance(data_score, Mapping) or not data_score:
        raise UserError("the score data must be a non-empty dict of tensors")
    lengths = {}
    for name, value in data_score.items():
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            raise UserError(f"score '{name}' is not a 1-D tensor ({type(value).__name__})")
        lengths[name] = len(value)
    first = next(iter(lengths))
    for name, length in lengths.items():
        if length != lengths[first]:
            raise UserError(
                f"score arrays differ in length: '{first}' has {lengths[first]}, "
                f"'{name}' has {length}"
            )
    n = lengths[first]
    if num_examples is not None and n != num_examples:
        hint = (
            f" (scores of a --train-subset run? add --train-subset {n} to this command too)"
            if n < num_examples
            else ""
        )
        raise UserError(
            f"the score file has {n} examples but the training set has {num_examples}{hint}"
        )
    for name in keys:
        _check_key(data_score, name)
    return n


def _check_key(data_score: Mapping, name: str) -> None:
    if name not in data_score:
        raise UserError(
            f"unknown score key '{name}'; the score file has: {', '.join(sorted(data_score))}"
        )
    value = data_score[name]
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int(torch.count_nonzero(~torch.isfinite(value)))
        raise UserError(f"score '{name}' has {bad} NaN or infinite values")


def _keys_read(mode: str, key: str, class_balanced: bool, mis_ratio: float, mis_key: str):
    """The score keys a (non-random) selection reads, each listed once, in checking order."""
    keys = [key] + (["targets"] if class_balanced or mode == "moderate" else [])
    keys += [mis_key] if mode == "stratified" and mis_ratio > 0 else []
    return list(dict.fromkeys(keys))


def _needs_score_file(mode: str) -> UserError:
    return UserError(f"coreset mode '{mode}' needs a score file (--data-score-path)")


def _random_mode_size(data_score, num_examples) -> int:
    if data_score is not None:
        return check_data_score(data_score, num_examples=num_examples)
    if num_examples is None:
        raise UserError("random coreset mode needs the training-set size (num_examples)")
    return int(num_examples)


def _select(
    data_score,
    n,
    mode,
    ratio,
    key,
    descending,
    class_balanced,
    mis_ratio,
    mis_key,
    mis_descending,
    strata,
    seed,
) -> torch.Tensor:
    """The selection itself, on settings and score data already checked."""
    generator = _generator(seed)
    budget = _budget(ratio, n)
    if mode == "random":
        return _ascending(torch.randperm(n, generator=generator)[:budget], n)
    score = data_score[key]
    if mode == "coreset" and class_balanced:
        return _class_balanced_first(score, data_score["targets"], ratio, descending)
    if mode == "coreset":
        return _ascending(_stable_order(score, descending)[:budget], n)
    if mode == "moderate":
        return _moderate(score, data_score["targets"], budget)
    kept = hard_cut_survivors(data_score, n, mis_ratio, mis_key, mis_descending)
    chosen = stratified_sample(score.index_select(0, kept), budget, strata, generator)
    return kept.index_select(0, _ascending(chosen, len(kept)))  # kept is ascending


def _budget(ratio: float, n: int) -> int:
    budget = int(ratio * n)  # the reference's int(ratio * N)
    if budget == 0:
        raise UserError(f"--coreset-ratio: {ratio} of {n} examples selects no example")
    return budget


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()  # fresh, non-reproducible randomness
    else:
        generator.manual_seed(int(seed))
    return generator


def hard_cut_survivors(
    data_score, n: int, mis_ratio: float, mis_key: str, mis_descending: bool
) -> torch.Tensor:
    """CCS step 1: indices (ascending) left after dropping the int(mis_ratio*n) examples first
    by `mis_key` (by default the lowest AUM: the hardest, often mislabeled, examples)."""
    mis_num = int(mis_ratio * n)
    if mis_num <= 0:
        return torch.arange(n)
    return _ascending(_stable_order(data_score[mis_key], mis_descending)[mis_num:], n)


def _ascending(indices: torch.Tensor, n: int) -> torch.Tensor:
    """The distinct indices `indices` (into 0..n-1) in ascending order."""
    return torch.zeros(n, dtype=torch.bool).index_fill_(0, indices, True).nonzero().squeeze(1)


def _stable_order(score: torch.Tensor, descending: bool) -> torch.Tensor:
    """Indices ordering `score` (ties: lower index first)."""
    return torch.sort(score, descending=descending, stable=True).indices


def _class_balanced_first(score, targets, ratio: float, descending: bool) -> torch.Tensor:
    """First int(n_c * ratio) of each class c in score order (docs/FAITHFULNESS.md C1: the
    reference used the last class's n_c for every class)."""
    order = _stable_order(score, descending)
    by_class = order[_stable_order(targets[order], False)]
    _, counts = torch.unique(targets, return_counts=True)
    keep = [int(count * ratio) for count in counts.tolist()]
    return _ascending(_first_per_group(by_class, counts, keep), len(score))


def _first_per_group(grouped_order, counts: torch.Tensor, keep: Sequence[int]) -> torch.Tensor:
    """The first keep[g] entries of each group g of `grouped_order` (indices ordered by group,
    then by priority; group g holds counts[g] entries). One slice per group, no pass over N."""
    starts = (torch.cumsum(counts, 0) - counts).tolist()
    pieces = [grouped_order[start : start + k] for start, k in zip(starts, keep) if k]
    return torch.cat(pieces) if pieces else grouped_order[:0]


def stratify(scores: torch.Tensor, strata: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratum of each score among `strata` equal-width strata over [min, upper), and the
    strata+1 edges (float64).

    Edges are min + i*w computed in the score's float dtype exactly as the reference does,
    with upper = max*1.0001 when max > 0. When max <= 0 the reference's max*1.0001 would lie
    at or below the maximum and drop it, so upper = max + 1e-4*max(|max|, max - min)
    (docs/FAITHFULNESS.md C3). Scores at or above the top edge through float rounding fall in
    the last stratum (C4): stratum k holds edges[k] <= score < edges[k+1].
    """
    _check_strata(strata)
    strata = int(strata)
    dtype = scores.dtype if scores.is_floating_point() else torch.get_default_dtype()
    values = scores.to(dtype)
    low, high = torch.aminmax(values)
    step = (_upper_edge(low, high) - low) / strata
    edges = low + torch.arange(strata + 1, dtype=dtype) * step
    stratum = torch.bucketize(values, edges[1:strata].contiguous(), right=True)
    return stratum, edges.double()


def _upper_edge(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    if high > 0:
        return high * UPPER_EDGE_FACTOR  # the reference's edge, bit for bit
    # max*1.0001 would lie at or below a non-positive max: widen by 1e-4 of |max| or of the
    # range, whichever is larger (the range covers max == 0), and at least to the next float.
    widening = (UPPER_EDGE_FACTOR - 1) * torch.maximum(high.abs(), high - low)
    return torch.maximum(high + widening, torch.nextafter(high, high + 1))


def allocate_budget(sizes: Sequence[int], budget: int) -> list[int]:
    """The reference's budget split: visit strata from fewest to most examples (ties in
    stratum order); each takes min(size, remaining // strata_left), counting all strata."""
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    allocation = [0] * len(sizes)
    remaining = budget
    for visited, i in enumerate(order):
        take = min(sizes[i], remaining // (len(sizes) - visited))
        allocation[i] = take
        remaining -= take
    return allocation


def stratified_sample(
    scores: torch.Tensor, budget: int, strata: int, generator: torch.Generator
) -> torch.Tensor:
    """Positions (into `scores`) of a CCS sample: `budget` split over strata by
    `allocate_budget`, drawn uniformly within each stratum. One sort of (stratum, random rank).
    """
    n = len(scores)
    stratum, _ = stratify(scores, strata)
    sizes = torch.bincount(stratum, minlength=strata)
    allocation = allocate_budget(sizes.tolist(), budget)
    random_rank = torch.randperm(n, generator=generator)
    # the keys are distinct: ordered by stratum, then by random rank within a stratum
    grouped_order = torch.sort(stratum * n + random_rank).indices
    return _first_per_group(grouped_order, sizes, allocation)


def _moderate(score, targets, budget: int) -> torch.Tensor:
    """Moderate-DS: per class, the examples whose score is closest to the class's median."""
    _, group, counts = torch.unique(targets, return_inverse=True, return_counts=True)
    by_score = _stable_order(score, False)
    grouped = by_score[_stable_order(group[by_score], False)]  # by class, then score
    starts = torch.cumsum(counts, 0) - counts
    sorted_score = score.double()[grouped]
    median = (sorted_score[starts + (counts - 1) // 2] + sorted_score[starts + counts // 2]) / 2
    distance = (score.double() - median[group]).abs()
    by_distance = _stable_order(distance, False)
    grouped = by_distance[_stable_order(group[by_distance], False)]
    keep = largest_remainder(counts, budget).tolist()
    return _ascending(_first_per_group(grouped, counts, keep), len(score))


def largest_remainder(counts: torch.Tensor, budget: int) -> torch.Tensor:
    """Split `budget` over classes in proportion to `counts` (Hamilton's method): floor of
    each exact quota, then one more to the largest remainders (ties: lower class first)."""
    total = int(counts.sum())
    scaled = counts.long() * budget
    base = scaled // total
    remainder = scaled % total
    extra = budget - int(base.sum())
    order = _stable_order(remainder, True)
    base[order[:extra]] += 1
    return base


__all__ = [
    "MODES",
    "allocate_budget",
    "check_data_score",
    "check_settings",
    "hard_cut_survivors",
    "largest_remainder",
    "method_name",
    "select_coreset",
    "select_from_score_file",
    "stratified_sample",
    "stratify",
]
