"""Coreset selection: random, score-ordered, CCS (stratified) and Moderate-DS.

Every mode returns dataset indices sorted ascending. Orderings by score are stable (ties go
to the lower dataset index); randomness comes from a seeded torch.Generator. Work is O(N)
or one sort per mode, never a pass over all N per stratum or per class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from core.errors import UserError

MODES = ("random", "coreset", "stratified", "moderate")
DEFAULT_KEYS = {"stratified": "accumulated_margin", "moderate": "moderate_distance"}
UPPER_EDGE_FACTOR = 1.0001  # the reference widens the top edge by 0.01%


def method_name(mode: str, key: str | None) -> str:
    """Name of a selection method in results: random, ccs, moderate, or the key (coreset mode)."""
    _check_mode(mode)
    if mode == "coreset":
        return str(key)
    return {"random": "random", "stratified": "ccs", "moderate": "moderate"}[mode]


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
    _check_mode(mode)
    _check_ratios(mode, ratio, mis_ratio)
    generator = _generator(seed)
    if mode == "random":
        n = _random_mode_size(data_score, num_examples)
        return _budget_indices(torch.randperm(n, generator=generator)[: _budget(ratio, n)], n)
    if data_score is None:
        raise UserError(f"coreset mode '{mode}' needs a score file (--data-score-path)")
    key = key or DEFAULT_KEYS.get(mode)
    if key is None:
        raise UserError(
            f"coreset mode 'coreset' needs a score key; the score file has: "
            f"{', '.join(sorted(data_score))}"
        )
    keys = [key] + (["targets"] if class_balanced or mode == "moderate" else [])
    keys += [mis_key] if mode == "stratified" and mis_ratio > 0 else []
    n = check_data_score(data_score, num_examples=num_examples, keys=dict.fromkeys(keys))
    budget = _budget(ratio, n)
    score = data_score[key]
    if mode == "coreset" and class_balanced:
        return _class_balanced_first(score, data_score["targets"], ratio, descending)
    if mode == "coreset":
        return _mask_to_indices(_first_k_mask(score, budget, descending))
    if mode == "moderate":
        return _moderate(score, data_score["targets"], budget)
    kept = hard_cut_survivors(data_score, n, mis_ratio, mis_key, mis_descending)
    chosen = stratified_sample(score.index_select(0, kept), budget, strata, generator)
    # kept is ascending, so sorting the (fewer) chosen positions sorts the result
    return kept.index_select(0, torch.sort(chosen).values)


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
        raise UserError(f"the score file has {n} examples but the training set has {num_examples}")
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


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UserError(f"unknown coreset mode '{mode}'; choose one of: {', '.join(MODES)}")


def _check_ratios(mode: str, ratio: float, mis_ratio: float) -> None:
    if not 0 < ratio <= 1:
        raise UserError(f"coreset ratio must be in (0, 1], got {ratio}")
    if not 0 <= mis_ratio < 1:
        raise UserError(f"mis ratio must be in [0, 1), got {mis_ratio}")
    if mode == "stratified" and ratio + mis_ratio > 1:
        raise UserError(f"coreset ratio + mis ratio must be at most 1, got {ratio} + {mis_ratio}")


def _random_mode_size(data_score, num_examples) -> int:
    if data_score is not None:
        return check_data_score(data_score, num_examples=num_examples)
    if num_examples is None:
        raise UserError("random coreset mode needs the training-set size (num_examples)")
    return int(num_examples)


def _budget(ratio: float, n: int) -> int:
    budget = int(ratio * n)  # the reference's int(ratio * N)
    if budget == 0:
        raise UserError(f"coreset ratio {ratio} of {n} examples selects no example")
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
    return _mask_to_indices(~_first_k_mask(data_score[mis_key], mis_num, mis_descending))


def _mask_to_indices(mask: torch.Tensor) -> torch.Tensor:
    return mask.nonzero().squeeze(1)


def _budget_indices(indices: torch.Tensor, n: int) -> torch.Tensor:
    """Unique indices in ascending order: a sort when few, an O(N) mask when many."""
    if 4 * len(indices) < n:
        return torch.sort(indices).values
    return _mask_to_indices(torch.zeros(n, dtype=torch.bool).index_fill_(0, indices, True))


def _first_k_mask(score: torch.Tensor, k: int, descending: bool) -> torch.Tensor:
    """Mask of the first k examples of a stable sort of `score` (ties: lower index first),
    found in O(N) with kthvalue instead of a full sort.
    """
    values = score if score.is_floating_point() else score.long()  # int64: safe to negate
    if descending:
        values = -values
    mask = torch.zeros(len(values), dtype=torch.bool)
    if k <= 0:
        return mask
    threshold = values.kthvalue(k).values
    mask = values < threshold
    ties = _mask_to_indices(values == threshold)
    return mask.index_fill_(0, ties[: k - int(torch.count_nonzero(mask))], True)


def _stable_order(score: torch.Tensor, descending: bool) -> torch.Tensor:
    return torch.sort(score, descending=descending, stable=True).indices


def _class_balanced_first(score, targets, ratio: float, descending: bool) -> torch.Tensor:
    """First int(n_c * ratio) of each class c in score order (the reference used the last
    class's n_c for every class)."""
    order = _stable_order(score, descending)
    by_class = order[_stable_order(targets[order], False)]
    _, counts = torch.unique(targets, return_counts=True)
    keep = torch.tensor([int(count * ratio) for count in counts.tolist()], dtype=torch.long)
    return _budget_indices(_first_per_group(by_class, counts, keep), len(score))


def _first_per_group(grouped_order, counts, keep) -> torch.Tensor:
    """The first keep[g] entries of each group g of `grouped_order` (indices ordered by group,
    then by priority; group g holds counts[g] entries). One slice per group, no pass over N."""
    starts = (torch.cumsum(counts, 0) - counts).tolist()
    pieces = [grouped_order[start : start + k] for start, k in zip(starts, keep.tolist()) if k]
    return torch.cat(pieces) if pieces else grouped_order[:0]


def stratify(scores: torch.Tensor, strata: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratum of each score among `strata` equal-width strata over [min, upper), and the
    strata+1 edges (float64).

    Edges are min + i*w computed in the score's float dtype exactly as the reference does,
    with upper = max*1.0001 when max > 0. When max <= 0 the reference's max*1.0001 would lie
    at or below the maximum and drop it, so upper = max + 1e-4*max(|max|, max - min).
    Scores at or above the top edge through float rounding fall in the last stratum.
    """
    if int(strata) != strata or strata < 1:
        raise UserError(f"the number of strata must be a positive integer, got {strata}")
    strata = int(strata)
    dtype = scores.dtype if scores.is_floating_point() else torch.get_default_dtype()
    values = scores.to(dtype)
    low, high = torch.aminmax(values)
    step = (_upper_edge(low, high) - low) / strata
    edges = low + torch.arange(strata + 1, dtype=dtype) * step
    return _bin_of(values, edges, low, step), edges.double()


def _bin_of(values, edges, low, step) -> torch.Tensor:
    """Index k with edges[k] <= value < edges[k+1] (the last bin also takes values above the
    top edge). Arithmetic guess corrected against the edges, which are authoritative; a binary
    search when the guess is still off (edges that float rounding made uneven)."""
    strata = len(edges) - 1
    inner = edges[1:strata].contiguous()
    if not step > 0:
        return torch.bucketize(values, inner, right=True)
    top = torch.cat((edges[1:strata], edges.new_full((1,), float("inf"))))  # last bin: open

    def misplaced(guess):  # index_select: several times faster than edges[guess] on CPU
        return values < edges.index_select(0, guess), values >= top.index_select(0, guess)

    guess = ((values - low) / step).clamp_(0, strata - 1).long()
    below, above = misplaced(guess)
    guess += above.long() - below.long()  # float rounding puts a guess at most one bin off
    below, above = misplaced(guess)
    if bool((below | above).any()):
        return torch.bucketize(values, inner, right=True)
    return guess


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
    allocation = torch.tensor(allocate_budget(sizes.tolist(), budget), dtype=torch.long)
    random_rank = torch.randperm(n, generator=generator)
    key = stratum * n + random_rank  # unique: ordered by stratum, randomly within one
    if strata * n < 2**31:
        key = key.int()  # a radix sort of int32 takes half the time of int64
    grouped_order = torch.sort(key).indices
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
    keep = largest_remainder(counts, budget)
    return _budget_indices(_first_per_group(grouped, counts, keep), len(score))


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
    "largest_remainder",
    "method_name",
    "select_coreset",
    "stratified_sample",
    "stratify",
]


def select_from_score_file(path, *, targets, seed, **settings):  # TEMP shim
    from core.score_io import load_data_score

    data_score = None
    n = len(targets)
    if settings["mode"] != "random":
        data_score = load_data_score(path)
        keys = [settings["key"]]
        if settings["mode"] == "stratified" and settings["mis_ratio"] > 0:
            keys.append(settings["mis_key"])
        check_data_score(data_score, num_examples=n, keys=keys)
        if "targets" in data_score and not torch.equal(
            data_score["targets"].long(), targets.long()
        ):
            raise UserError(
                f"{path}: its targets differ from this dataset's labels "
                "(scores of another dataset or another ordering?)"
            )
    return select_coreset(data_score, num_examples=n, seed=seed, **settings)
