"""Coreset selection: random, score-ordered, CCS (stratified), Moderate-DS, and two peers on
the examples' features: D2 pruning and k-center greedy (their graph and greedy code is in
core.graph_selection).

Every mode returns dataset indices sorted ascending. Orderings by score are stable sorts (ties
go to the lower dataset index); randomness comes from a seeded torch.Generator. Settings are
checked by `check_settings`, score data by `check_data_score`, features by `check_features`,
each once per selection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from core import graph_selection
from core.dynamic_selection import RS2Schedule, dual_sample
from core.errors import UserError
from core.methods import FEATURES, SCORES, Method, Param, Preset, register
from core.run_folder import features_beside
from core.score_io import load_data_score, load_features
from core.settings import Selection, check_strata

UPPER_EDGE_FACTOR = 1.0001  # the reference widens the top edge by 0.01%


@dataclass
class Context:
    """What a method's select function gets: the checked selection, the number of examples,
    the checked score data and features (None where the method reads none), and the seeded
    generator that is all of the selection's randomness."""

    selection: Selection
    n: int
    data_score: Mapping[str, torch.Tensor] | None
    features: torch.Tensor | None
    generator: torch.Generator
    targets: torch.Tensor | None = None  # the training labels, where the caller knows them
    seed: int | None = None

    def __post_init__(self):
        self.budget = int(self.selection.ratio * self.n)  # the reference's int(ratio * N)
        if self.budget == 0:
            ratio = self.selection.ratio
            raise UserError(f"--coreset-ratio: {ratio} of {self.n} examples selects no example")

    def score(self, key: str | None = None) -> torch.Tensor:
        return self.data_score[key or self.selection.key]

    def survivors(self) -> torch.Tensor:
        """Indices (ascending) left after the CCS hard cut."""
        s = self.selection
        return hard_cut_survivors(self.data_score, self.n, s.mis_ratio, s.mis_key, s.mis_descending)


def select(
    selection: Selection,
    data_score: Mapping[str, torch.Tensor] | None = None,
    *,
    num_examples: int | None = None,
    features: torch.Tensor | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """Indices (LongTensor, ascending) of the int(ratio*N) examples `selection` keeps, on score
    data and features in memory (checked here, once)."""
    entry = selection.method
    if SCORES in entry.inputs:
        if data_score is None:
            raise _needs_score_file(selection.mode)
        n = check_data_score(data_score, num_examples=num_examples, keys=keys_read(selection))
    else:
        n = _size_without_scores(data_score, num_examples)
    if FEATURES in entry.inputs:
        if features is None:
            raise UserError(
                f"coreset mode '{selection.mode}' needs the examples' features (--features-path)"
            )
        check_features(features, n)
    return _run(selection, n, data_score, features, seed)


def select_from_files(
    selection: Selection, *, targets: torch.Tensor, seed: int | None = None, data_score=None
) -> torch.Tensor:
    """`select` on the files `selection` names (its score file and, for feature modes, its
    features file, by default the one beside the score file: core.run_folder.features_beside),
    for a training set labelled `targets`: sizes, keys, NaNs and the files' targets against
    `targets` are checked once. A mode that reads no scores reads no file. `data_score`: the
    score file's contents where the caller has read it already."""
    n, entry = len(targets), selection.method
    features = None
    if SCORES not in entry.inputs:
        data_score = None
    if SCORES in entry.inputs:
        path = selection.data_score_path
        if path is None:
            raise _needs_score_file(selection.mode)
        if data_score is None:
            data_score = load_data_score(path)
        check_data_score(data_score, num_examples=n, keys=keys_read(selection))
        _check_same_targets(path, "scores", data_score.get("targets"), targets)
    if FEATURES in entry.inputs:
        path = selection.features_path or features_beside(selection.data_score_path)
        features, feature_targets = load_features(path)
        check_features(features, n, source=path)
        _check_same_targets(path, "features", feature_targets, targets)
    return _run(selection, n, data_score, features, seed, torch.as_tensor(targets))


def _run(selection, n, data_score, features, seed, targets=None) -> torch.Tensor:
    context = Context(selection, n, data_score, features, _generator(seed), targets, seed)
    return _ascending(selection.method.select(context), n)


# ---- the library's keyword form -----------------------------------------------------------
def select_coreset(
    data_score: Mapping[str, torch.Tensor] | None,
    mode: str,
    ratio: float,
    *,
    seed: int | None = None,
    num_examples: int | None = None,
    features: torch.Tensor | None = None,
    **settings,
) -> torch.Tensor:
    """`select` with the selection given as keywords: `mode`, `ratio` and Selection's fields
    (key, descending, class_balanced, mis_ratio, mis_key, mis_descending, strata) and the
    mode's parameters (d2_neighbors, ...). E.g. CCS at 10% with a 30% hard cut:
    `select_coreset(scores, "stratified", 0.1, key="accumulated_margin", mis_ratio=0.3, seed=0)`.
    The modes are in core.methods.METHODS (`python -m core.methods markdown`)."""
    selection = Selection.build(mode, ratio, **settings)
    return select(selection, data_score, num_examples=num_examples, features=features, seed=seed)


def select_from_score_file(
    path: str | None,
    *,
    mode: str,
    ratio: float,
    targets: torch.Tensor,
    seed: int | None = None,
    features_path: str | None = None,
    **settings,
) -> torch.Tensor:
    """`select_from_files` with the selection given as keywords (as select_coreset); `path`
    may be None for modes that read no scores."""
    selection = Selection.build(
        mode, ratio, data_score_path=path, features_path=features_path, **settings
    )
    return select_from_files(selection, targets=targets, seed=seed)


# ---- checks -------------------------------------------------------------------------------
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


def keys_read(selection: Selection) -> list[str]:
    """The score keys a selection reads, each listed once, in checking order."""
    entry = selection.method
    keys = [selection.key] if entry.reads_key else []
    keys += ["targets"] if selection.class_balanced or entry.needs_targets else []
    keys += [selection.mis_key] if entry.hard_cut and selection.mis_ratio > 0 else []
    keys += list(entry.extra_keys)
    return list(dict.fromkeys(keys))


def _needs_score_file(mode: str) -> UserError:
    return UserError(f"coreset mode '{mode}' needs a score file (--data-score-path)")


def _size_without_scores(data_score, num_examples) -> int:
    if data_score is not None:
        return check_data_score(data_score, num_examples=num_examples)
    if num_examples is None:
        raise UserError("random coreset mode needs the training-set size (num_examples)")
    return int(num_examples)


# ---- the built-in methods -----------------------------------------------------------------
def random_subset(ctx: Context) -> torch.Tensor:
    return torch.randperm(ctx.n, generator=ctx.generator)[: ctx.budget]


def score_order(ctx: Context) -> torch.Tensor:
    """First by the key (descending keeps the largest); class_balanced: int(n_c*ratio) of each
    class c."""
    s, score = ctx.selection, ctx.score()
    if s.class_balanced:
        return _class_balanced_first(score, ctx.score("targets"), s.ratio, s.descending)
    return _stable_order(score, s.descending)[: ctx.budget]


def ccs(ctx: Context) -> torch.Tensor:
    """Drop int(mis_ratio*N) by mis_key, then sample evenly over equal-width score strata."""
    kept = ctx.survivors()
    chosen = stratified_sample(
        ctx.score().index_select(0, kept), ctx.budget, ctx.selection.strata, ctx.generator
    )
    return kept.index_select(0, chosen)


def moderate(ctx: Context) -> torch.Tensor:
    return _moderate(ctx.score(), ctx.score("targets"), ctx.budget)


def d2(ctx: Context) -> torch.Tensor:
    """D2 pruning over a kNN graph of the features, the key as importance, after the hard cut."""
    s, kept = ctx.selection, ctx.survivors()
    importance = _importance(ctx.score().index_select(0, kept), s.descending)
    options = dict(
        neighbours=s.params["d2_neighbors"],
        forward_gamma=s.params["d2_forward_gamma"],
        reverse_gamma=s.params["d2_reverse_gamma"],
    )

    def select_one(rows, group, size):
        return graph_selection.d2_select(rows, importance[group], size, **options)

    return _per_group(ctx, kept, select_one)


def kcenter(ctx: Context) -> torch.Tensor:
    """k-center greedy on the features from a random start, after the hard cut."""
    return _per_group(
        ctx,
        ctx.survivors(),
        lambda rows, group, size: graph_selection.kcenter_greedy(rows, size, ctx.generator),
    )


def dual(ctx: Context) -> torch.Tensor:
    """DUAL's pruning-rate-dependent Beta sampling over the mean target probability."""
    mean_prob = ctx.score("dual_mean_prob")
    c_d = ctx.selection.params["dual_c_d"]
    return dual_sample(ctx.score(), ctx.selection.ratio, mean_prob=mean_prob, c_d=c_d,
                       generator=ctx.generator)  # fmt: skip


def rs2_schedule(selection: Selection, targets: torch.Tensor | None, seed: int) -> RS2Schedule:
    """RS2's epoch subsets: int(ratio*N) fresh examples per epoch, without replacement until
    the data are used up; per class with class_balanced."""
    if selection.class_balanced and targets is None:
        raise UserError("rs2 with --class-balanced 1 needs the training labels")
    labels = targets if selection.class_balanced else None
    return RS2Schedule(len(targets), selection.ratio, int(seed or 0), labels)


def rs2(ctx: Context) -> torch.Tensor:
    """Epoch 0's subset (the run's coreset-indices.pt); the loader draws every epoch's."""
    if ctx.targets is None:
        raise UserError("rs2 trains on a fresh subset each epoch: use it through train.py")
    return rs2_schedule(ctx.selection, ctx.targets, ctx.seed).indices(0)


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


def _per_group(ctx: Context, kept: torch.Tensor, select_one) -> torch.Tensor:
    """Dataset indices of what `select_one(rows, group, size)` picks in each group (every class
    with class_balanced, else all survivors): `rows` the group's features, `group` its
    positions into `kept`, `size` its share of the budget."""
    groups = _class_groups(ctx.data_score, kept, ctx.selection.class_balanced)
    features = ctx.features
    chosen = [
        group[select_one(features.index_select(0, kept[group].to(features.device)), group, size)]
        for group, size in zip(groups, _group_budgets(groups, ctx.budget))
        if size
    ]
    return kept[torch.cat(chosen)]


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
    check_strata(strata)
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


# ---- the registry entries of the built-in methods (core.methods) ---------------------------
# D2 pruning's defaults are the D2 authors' CIFAR-10/100 command and code (FAITHFULNESS.md G2).
D2_PARAMS = (
    Param(
        "d2_neighbors",
        5,
        "the number of neighbours",
        kind=int,
        low=1,
        help="(ours) d2: neighbours per example in the kNN graph (default: 5, the D2 "
        "authors' CIFAR command)",
    ),
    Param(
        "d2_forward_gamma",
        1.0,
        "a kernel width",
        low=0.0,
        help="(ours) d2: forward message passing weighs a neighbour's importance by "
        "exp(-gamma*distance) (default: 1.0, as the D2 code)",
    ),
    Param(
        "d2_reverse_gamma",
        0.1,
        "a kernel width",
        low=0.0,
        help="(ours) d2: a pick lowers each neighbour's score by exp(-gamma*distance) times "
        "its own (default: 0.1, the D2 authors' CIFAR command's --gamma)",
    ),
)


def ranked(key: str, descending: int, order: int, group: str = "main") -> Preset:
    """A score-ranked named method: the key's order, as the original README gives it."""
    flags = f"--coreset-mode coreset --coreset-key {key} --data-score-descending {descending}"
    return Preset(key, flags, group=group, order=order)


register(
    Method(
        "random",
        random_subset,
        "uniformly at random",
        result_name="random",
        presets=(Preset("random", "--coreset-mode random", group="main", order=0),),
    )
)
register(
    Method(
        "coreset",
        score_order,
        "the first by `--coreset-key` (descending: the largest)",
        label="(score-ranked)",
        inputs=(SCORES,),
        needs_key=True,
        # forgetting and EL2N keep the largest scores, AUM the smallest (the original README)
        presets=(
            ranked("forgetting", 1, 2),
            ranked("accumulated_margin", 0, 3),
            ranked("el2n", 1, 4),
            ranked("entropy", 1, 5),
            ranked("loss", 1, 9, "extra"),
            # TDDS and Dyn-Unc keep their highest scores, as their authors do
            ranked("tdds", 1, 10, "recent"),
            ranked("dyn_unc", 1, 11, "recent"),
        ),
    )
)
register(
    Method(
        "stratified",
        ccs,
        "CCS: the hard cut, then evenly over `--strata` score strata",
        label="(CCS)",
        inputs=(SCORES,),
        default_key="accumulated_margin",
        hard_cut=True,
        result_name="ccs",
        presets=(
            Preset(
                "ccs",
                "--coreset-mode stratified --coreset-key accumulated_margin",
                beta=0.3,
                group="main",
                order=1,
            ),
        ),
    )
)
register(
    Method(
        "moderate",
        moderate,
        "Moderate-DS: per class, the band of examples ranked around the median rank",
        inputs=(SCORES,),
        default_key="moderate_distance",
        needs_targets=True,
        result_name="moderate",
        presets=(
            Preset(
                "moderate",
                "--coreset-mode moderate --coreset-key moderate_distance",
                group="main",
                order=6,
            ),
        ),
    )
)
register(
    Method(
        "d2",
        d2,
        "D2 pruning: message passing on a kNN graph of the features, after the hard cut",
        label="(D2 pruning)",
        inputs=(SCORES, FEATURES),
        default_key="forgetting",
        hard_cut=True,
        params=D2_PARAMS,
        result_name="d2",
        # the D2 authors' CIFAR-10/100 command: per-class graphs of 5 neighbours, forgetting as
        # importance, reverse gamma 0.1 (forward gamma 1 is their code's)
        presets=(
            Preset(
                "d2",
                "--coreset-mode d2 --coreset-key forgetting --data-score-descending 1 "
                "--class-balanced 1 --d2-neighbors 5 --d2-forward-gamma 1 "
                "--d2-reverse-gamma 0.1",
                beta=0.4,
                group="peer",
                order=7,
            ),
        ),
    )
)
register(
    Method(
        "kcenter",
        kcenter,
        "k-center greedy on the features from a random start, after the hard cut",
        label="(k-center greedy)",
        inputs=(SCORES, FEATURES),
        reads_key=False,
        hard_cut=True,
        result_name="kcenter",
        presets=(Preset("kcenter", "--coreset-mode kcenter", group="peer", order=8),),
    )
)


# The 2023-2025 training-dynamics baselines (docs/FAITHFULNESS.md section D): TDDS and Dyn-Unc
# are score-ranked (the coreset entry's presets), DUAL and RS2 their own modes.
register(
    Method(
        "dual",
        dual,
        "DUAL: a Beta distribution over the mean target probability, weighted by the DUAL score",
        inputs=(SCORES,),
        default_key="dual",
        extra_keys=("dual_mean_prob",),
        result_name="dual",
        params=(
            Param(
                "dual_c_d",
                4.0,
                "DUAL's c_D",
                low=0.0,
                help="(ours) dual: the Beta's dependence on the pruning rate, b = 15 (1 - anchor) "
                "(1 - rate^c_D) (default: 4, the DUAL authors' CIFAR default)",
            ),
        ),
        presets=(Preset("dual", "--coreset-mode dual", group="recent", order=12),),
    )
)
register(
    Method(
        "rs2",
        rs2,
        "RS2: a fresh random int(ratio*N) every epoch, without replacement until all are seen",
        result_name="rs2",
        epoch_subsets=rs2_schedule,
        presets=(Preset("rs2", "--coreset-mode rs2", group="recent", order=13),),
    )
)

__all__ = [
    "Context",
    "allocate_budget",
    "check_data_score",
    "check_features",
    "hard_cut_survivors",
    "keys_read",
    "largest_remainder",
    "select",
    "select_coreset",
    "select_from_files",
    "select_from_score_file",
    "stratified_sample",
    "stratify",
]
