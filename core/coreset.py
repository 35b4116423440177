"""Coreset selection: random, score-ordered, CCS (stratified), Moderate-DS, and two peers on
the examples' features: D2 pruning and k-center greedy (their graph and greedy code is in
core.graph_selection).

Every mode returns dataset indices sorted ascending. Orderings by score are stable sorts (ties
go to the lower dataset index); randomness comes from a seeded torch.Generator. Settings are
checked by `check_settings`, score data by `check_data_score`, features by `check_features`,
each once per selection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from core import graph_selection
from core.errors import UserError
from core.run_folder import features_beside
from core.score_io import load_data_score, load_features

MODES = ("random", "coreset", "stratified", "moderate", "d2", "kcenter")
FEATURE_MODES = ("d2", "kcenter")  # select on the penultimate features of the scoring run
HARD_CUT_MODES = ("stratified", "d2", "kcenter")  # honour mis_ratio, mis_key, mis_descending
# d2: the importance score of the D2 authors' CIFAR-10/100 command (docs/FAITHFULNESS.md G2)
DEFAULT_KEYS = {"stratified": "accumulated_margin", "moderate": "moderate_distance",
                "d2": "forgetting"}  # fmt: skip
# D2 pruning's defaults, from the authors' CIFAR-10/100 command and code (FAITHFULNESS.md G2)
D2_NEIGHBORS, D2_FORWARD_GAMMA, D2_REVERSE_GAMMA = 5, 1.0, 0.1
UPPER_EDGE_FACTOR = 1.0001  # the reference widens the top edge by 0.01%


def method_name(mode: str, key: str | None) -> str:
    """Name of a selection method in results: random, ccs, moderate, d2, kcenter, or the key
    (coreset mode)."""
    _check_mode(mode)
    if mode == "coreset":
        return str(key)
    return {"stratified": "ccs"}.get(mode, mode)


def check_settings(
    mode: str | None,
    ratio: float | None,
    *,
    key: str | None = None,
    mis_ratio: float = 0.0,
    strata: int = 50,
    d2_neighbors: int = D2_NEIGHBORS,
    d2_forward_gamma: float = D2_FORWARD_GAMMA,
    d2_reverse_gamma: float = D2_REVERSE_GAMMA,
) -> None:
    """Raise UserError unless the selection settings are valid on their own (no score data
    needed): the one check of select_coreset's, select_from_score_file's and the scripts'
    settings. Each message starts with the command-line flag of the setting at fault, so
    a script user and a library user both recognise it: --coreset-mode (mode),
    --coreset-ratio (ratio), --coreset-key (key), --mis-ratio (mis_ratio), --strata (strata),
    --d2-neighbors, --d2-forward-gamma, --d2-reverse-gamma. Every setting is checked in
    every mode, though each mode uses only some.
    """
    _check_mode(mode)
    if ratio is None:
        raise UserError("--coreset-ratio: a coreset needs a ratio in (0, 1]")
    if not 0 < ratio <= 1:
        raise UserError(f"--coreset-ratio: the coreset ratio must be in (0, 1], got {ratio}")
    if not 0 <= mis_ratio < 1:
        raise UserError(f"--mis-ratio: the mis ratio must be in [0, 1), got {mis_ratio}")
    if mode in HARD_CUT_MODES and ratio + mis_ratio > 1:
        raise UserError(
            f"--coreset-ratio + --mis-ratio must be at most 1, got {ratio} + {mis_ratio}: "
            "not enough examples survive the hard cut"
        )
    _check_strata(strata)
    _check_d2(d2_neighbors, d2_forward_gamma, d2_reverse_gamma)
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


def _check_d2(neighbors, forward_gamma, reverse_gamma) -> None:
    if isinstance(neighbors, bool) or int(neighbors) != neighbors or neighbors < 1:
        raise UserError(
            f"--d2-neighbors: the number of neighbours must be a positive integer, got {neighbors}"
        )
    for flag, gamma in (
        ("--d2-forward-gamma", forward_gamma),
        ("--d2-reverse-gamma", reverse_gamma),
    ):
        if not (math.isfinite(gamma) and gamma >= 0):  # exp(-gamma * d) must be a weight in (0, 1]
            raise UserError(f"{flag}: a kernel width must be finite and at least 0, got {gamma}")


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
    features: torch.Tensor | None = None,
    d2_neighbors: int = D2_NEIGHBORS,
    d2_forward_gamma: float = D2_FORWARD_GAMMA,
    d2_reverse_gamma: float = D2_REVERSE_GAMMA,
) -> torch.Tensor:
    """Indices (LongTensor, ascending) of the int(ratio*N) examples a mode keeps.

    random: uniform. coreset: first by `key` (descending keeps the largest; class_balanced
    keeps int(n_c*ratio) per class). stratified (CCS): drop int(mis_ratio*N) by `mis_key`,
    then sample evenly over `strata` equal-width score strata. moderate: per class, the
    band of examples ranked around the class's median rank by `key`. d2 (D2 pruning) and kcenter
    (k-center greedy) select on `features` ([N, D], e.g. the penultimate features of the
    scoring run) after the same hard cut as CCS: d2 over a kNN graph of d2_neighbors
    neighbours with `key` as importance (descending: larger is more important; the default
    False takes smaller as more important, as for AUM), kcenter from a random start drawn
    from `seed`. With class_balanced both select within each class, the budget split
    equally over classes (a class with fewer examples gives its share to the others), as
    the D2 code does for both.
    `descending` applies to coreset and d2 modes, `class_balanced` to coreset, d2 and
    kcenter, `mis_*` to stratified, d2 and kcenter, `strata` to stratified mode only.
    """
    settings = _checked(locals())
    mode, key = settings["mode"], settings["key"]
    if mode == "random":
        n = _random_mode_size(data_score, num_examples)
    else:
        if data_score is None:
            raise _needs_score_file(mode)
        keys = _keys_read(mode, key, class_balanced, mis_ratio, mis_key)
        n = check_data_score(data_score, num_examples=num_examples, keys=keys)
    if mode in FEATURE_MODES:
        if features is None:
            raise UserError(f"coreset mode '{mode}' needs the examples' features (--features-path)")
        check_features(features, n)
    return _select(data_score, n, features, seed, **settings)


def select_from_score_file(
    path: str | None,
    *,
    mode: str,
    ratio: float,
    targets: torch.Tensor,
    seed: int | None = None,
    features_path: str | None = None,
    key: str | None = None,
    descending: bool = False,
    class_balanced: bool = False,
    mis_ratio: float = 0.0,
    mis_key: str = "accumulated_margin",
    mis_descending: bool = False,
    strata: int = 50,
    d2_neighbors: int = D2_NEIGHBORS,
    d2_forward_gamma: float = D2_FORWARD_GAMMA,
    d2_reverse_gamma: float = D2_REVERSE_GAMMA,
) -> torch.Tensor:
    """select_coreset on the score file at `path` for a training set labelled `targets`:
    settings, file and data are checked once, including that the file's targets (when it has
    them) equal `targets`. Random mode reads no file (`path` may be None). d2 and kcenter
    also read the features file at `features_path`, by default the one the scoring script
    writes beside the score file (core.run_folder.features_beside), checked the same way.
    `mode`, `ratio` and the keywords after `features_path` are select_coreset's settings:
    the keys of the dict core.cli.coreset_settings returns, so
    `select_from_score_file(path, targets=t, seed=s, **settings)` works.
    """
    settings = _checked(locals())
    n = len(targets)
    data_score = features = None
    if mode != "random":
        if path is None:
            raise _needs_score_file(mode)
        data_score = load_data_score(path)
        keys = _keys_read(mode, settings["key"], class_balanced, mis_ratio, mis_key)
        check_data_score(data_score, num_examples=n, keys=keys)
        _check_same_targets(path, "scores", data_score.get("targets"), targets)
    if mode in FEATURE_MODES:
        features_path = features_path or features_beside(path)
        features, feature_targets = load_features(features_path)
        check_features(features, n, source=features_path)
        _check_same_targets(features_path, "features", feature_targets, targets)
    return _select(data_score, n, features, seed, **settings)


SETTINGS = ("mode", "ratio", "key", "descending", "class_balanced", "mis_ratio", "mis_key",
            "mis_descending", "strata", "d2_neighbors", "d2_forward_gamma",
            "d2_reverse_gamma")  # fmt: skip


def _checked(arguments: dict) -> dict:
    """The selection settings among a selection function's arguments, checked, with the
    mode's default key filled in."""
    settings = {name: arguments[name] for name in SETTINGS}
    check_settings(
        settings["mode"],
        settings["ratio"],
        key=settings["key"],
        mis_ratio=settings["mis_ratio"],
        strata=settings["strata"],
        d2_neighbors=settings["d2_neighbors"],
        d2_forward_gamma=settings["d2_forward_gamma"],
        d2_reverse_gamma=settings["d2_reverse_gamma"],
    )
    settings["key"] = settings["key"] or DEFAULT_KEYS.get(settings["mode"])
    return settings


def _check_same_targets(path: str, what: str, found, targets) -> None:
    if found is not None and not torch.equal(found.long(), torch.as_tensor(targets).long()):
        raise UserError(
            f"{path}: its targets differ from this dataset's labels "
            f"({what} of another dataset or another ordering?)"
        )


def check_features(features, num_examples: int | None = None, source: str | None = None) -> int:
    """Raise UserError unless `features` is a finite floating-point [N, D] tensor (D >= 1) of
    num_examples rows when given. Returns N. `source` (a path) starts the messages."""
    where = f"{source}: " if source else ""
    if not (isinstance(features, torch.Tensor) and features.dim() == 2):
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise UserError(f"{where}the features must be a 2-D tensor [N, D], got {shape}")
    if not features.is_floating_point() or features.shape[1] == 0:
        raise UserError(f"{where}the features must be floating point with D >= 1 columns")
    if num_examples is not None and len(features) != num_examples:
        raise UserError(
            f"{where}the features have {len(features)} rows but the training set has {num_examples}"
        )
    # in slices: a whole [N, D] mask would cost as much memory as the features
    bad = sum(int((~torch.isfinite(part)).sum()) for part in features.split(1 << 16))
    if bad:
        raise UserError(f"{where}the features have {bad} NaN or infinite values")
    return len(features)


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
    keys = [] if mode == "kcenter" else [key]  # k-center uses no score, only features
    keys += ["targets"] if class_balanced or mode == "moderate" else []
    keys += [mis_key] if mode in HARD_CUT_MODES and mis_ratio > 0 else []
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
    features,
    seed,
    *,
    mode,
    ratio,
    key,
    descending,
    class_balanced,
    mis_ratio,
    mis_key,
    mis_descending,
    strata,
    d2_neighbors,
    d2_forward_gamma,
    d2_reverse_gamma,
) -> torch.Tensor:
    """The selection itself, on settings, score data and features already checked."""
    generator = _generator(seed)
    budget = _budget(ratio, n)
    if mode == "random":
        return _ascending(torch.randperm(n, generator=generator)[:budget], n)
    kept = None
    if mode in HARD_CUT_MODES:
        kept = hard_cut_survivors(data_score, n, mis_ratio, mis_key, mis_descending)
    if mode in FEATURE_MODES:
        groups = _class_groups(data_score, kept, class_balanced)
        budgets = _group_budgets(groups, budget)
        d2 = dict(neighbours=d2_neighbors, forward_gamma=d2_forward_gamma,
                  reverse_gamma=d2_reverse_gamma)  # fmt: skip
        select_one = _picker(mode, data_score, kept, key, descending, generator, d2)
        return _per_group(features, kept, groups, budgets, select_one)
    score = data_score[key]
    if mode == "coreset" and class_balanced:
        return _class_balanced_first(score, data_score["targets"], ratio, descending)
    if mode == "coreset":
        return _ascending(_stable_order(score, descending)[:budget], n)
    if mode == "moderate":
        return _moderate(score, data_score["targets"], budget)
    chosen = stratified_sample(score.index_select(0, kept), budget, strata, generator)
    return kept.index_select(0, _ascending(chosen, len(kept)))  # kept is ascending


def _class_groups(data_score, kept: torch.Tensor, class_balanced: bool) -> list[torch.Tensor]:
    """Positions into `kept` of each group selected on its own: every class (in label
    order) with class_balanced, else all of them."""
    if not class_balanced:
        return [torch.arange(len(kept))]
    targets = data_score["targets"].index_select(0, kept)
    _, counts = torch.unique(targets, return_counts=True)
    return list(torch.split(_stable_order(targets, False), counts.tolist()))


def _group_budgets(groups: list[torch.Tensor], budget: int) -> list[int]:
    """The budget split equally over the groups, a group that has fewer taking all it has:
    allocate_budget, as the D2 code's uniform bin_allocate splits it over classes."""
    return allocate_budget([len(group) for group in groups], budget)


def _importance(score: torch.Tensor, descending: bool) -> torch.Tensor:
    """D2's importance: larger is more important (descending) or smaller is (AUM), shifted
    to start at 0 over the examples left after the hard cut (docs/FAITHFULNESS.md G4)."""
    score = score.double()
    return score - score.min() if descending else score.max() - score


def _picker(mode, data_score, kept, key, descending, generator, d2: dict):
    """select_one(rows, group, size): positions into `rows` (one group's features; `group`
    their positions into `kept`) of the `size` examples the mode picks."""
    if mode == "kcenter":
        return lambda rows, group, size: graph_selection.kcenter_greedy(rows, size, generator)
    importance = _importance(data_score[key].index_select(0, kept), descending)
    return lambda rows, group, size: graph_selection.d2_select(rows, importance[group], size, **d2)


def _per_group(features, kept, groups, budgets, select_one) -> torch.Tensor:
    """Dataset indices (ascending) of what `select_one(rows, group, size)` picks in each
    group: `rows` the group's features, `group` its positions into `kept`."""
    chosen = [
        group[select_one(features.index_select(0, kept[group].to(features.device)), group, size)]
        for group, size in zip(groups, budgets)
        if size
    ]
    return _ascending(kept[torch.cat(chosen)], len(features))


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
    return (~_first_k_stable(data_score[mis_key], mis_num, mis_descending)).nonzero().squeeze(1)


def _first_k_stable(score: torch.Tensor, k: int, descending: bool) -> torch.Tensor:
    """Mask of the first k examples of the stable ordering by `score` (ties by position):
    the same set as _stable_order(score, descending)[:k]. kthvalue, not a full sort: the
    bench showed the sort alone kept CCS at N = 1.28M above 0.3 s on one core."""
    score = score.double()  # exact for the int32/float32 scores, and negation is safe
    score = -score if descending else score
    value = score.kthvalue(k).values
    mask = score < value
    ties = (score == value).nonzero().squeeze(1)  # ascending positions: the stable tie-break
    mask[ties[: k - int(mask.sum())]] = True
    return mask


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
    """Moderate-DS within each class: rank the class by `score` (ascending, ties to the lower
    index) and keep the band of its budget around the median rank, dropping
    floor((n_c - b_c) / 2) ranks below the band and the rest above it. The authors'
    get_prune_idx keeps such a band of all examples at once (docs/FAITHFULNESS.md C9);
    the budgets b_c are largest_remainder's split of `budget` (C10)."""
    _, group, counts = torch.unique(targets, return_inverse=True, return_counts=True)
    by_score = _stable_order(score, False)
    grouped = by_score[_stable_order(group[by_score], False)]  # by class, then score
    keep = largest_remainder(counts, budget)
    below = ((counts - keep) // 2).repeat_interleave(counts)  # ranks dropped under the band
    rank = torch.arange(len(grouped)) - (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
    in_band = (rank >= below) & (rank < below + keep.repeat_interleave(counts))
    return _ascending(grouped[in_band], len(score))


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
    "FEATURE_MODES",
    "HARD_CUT_MODES",
    "MODES",
    "allocate_budget",
    "check_data_score",
    "check_features",
    "check_settings",
    "hard_cut_survivors",
    "largest_remainder",
    "method_name",
    "select_coreset",
    "select_from_score_file",
    "stratified_sample",
    "stratify",
]
