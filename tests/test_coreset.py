"""core.coreset: every mode on hand-computed cases, invariants on random scores, validation."""

import os

import pytest
import torch

import core.coreset
from core.coreset import (
    allocate_budget,
    check_data_score,
    hard_cut_survivors,
    largest_remainder,
    select_coreset,
    select_from_score_file,
    stratify,
)
from core.errors import UserError
from core.methods import method_name, modes
from core.score_io import save_data_score
from core.settings import Selection

MODES = modes()


def check_settings(mode, ratio, **settings):
    """Selection's checks, in the library's keyword form."""
    return Selection.build(mode, ratio, **settings)


def random_scores(n=3000, classes=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {
        "targets": torch.randint(0, classes, (n,), generator=gen, dtype=torch.int32),
        "accumulated_margin": torch.randn(n, generator=gen) * 3,
        "el2n": torch.rand(n, generator=gen),
        "forgetting": torch.randint(0, 6, (n,), generator=gen, dtype=torch.int32),
    }


def reference_strata_counts(score, strata):
    """The authors' loop: per-stratum boolean masks over [min, max*1.0001)."""
    low, high = torch.min(score), torch.max(score) * 1.0001
    step = (high - low) / strata
    return [
        int(((score >= low + k * step) & (score < low + (k + 1) * step)).sum())
        for k in range(strata)
    ]


# ---- random and score-ordered modes -----------------------------------------------------------


def test_random_mode_size_order_and_seed():
    a = select_coreset(None, "random", 0.3, seed=1, num_examples=1001)
    assert len(a) == 300 and a.dtype == torch.long
    assert torch.equal(a, a.unique())  # unique and ascending
    assert torch.equal(a, select_coreset(None, "random", 0.3, seed=1, num_examples=1001))
    assert not torch.equal(a, select_coreset(None, "random", 0.3, seed=2, num_examples=1001))


def test_coreset_mode_ascending_descending_and_ties():
    score = {"s": torch.tensor([5.0, 1.0, 4.0, 1.0, 3.0])}
    assert select_coreset(score, "coreset", 0.4, key="s").tolist() == [1, 3]
    assert select_coreset(score, "coreset", 0.4, key="s", descending=True).tolist() == [0, 2]
    ties = {"s": torch.tensor([1, 1, 1, 0, 2], dtype=torch.int32)}
    assert select_coreset(ties, "coreset", 0.4, key="s").tolist() == [0, 3]  # lower index wins
    assert select_coreset(ties, "coreset", 0.4, key="s", descending=True).tolist() == [0, 4]


@pytest.mark.parametrize("descending", [False, True])
def test_first_k_equals_a_stable_sort(descending):
    # the coreset cut keeps the first k of a stable sort, the CCS hard cut drops them
    score = torch.randint(0, 7, (5000,), generator=torch.Generator().manual_seed(3)).float()
    for k in (1, 999, 2500, 5000):
        stable = torch.sort(score, descending=descending, stable=True).indices
        chosen = select_coreset({"s": score}, "coreset", k / 5000, key="s", descending=descending)
        assert torch.equal(chosen, stable[:k].sort().values)
        survivors = hard_cut_survivors({"s": score}, 5000, k / 5000, "s", descending)
        assert torch.equal(survivors, stable[k:].sort().values)


def test_class_balanced_uses_each_class_count():
    # class 0 has 6 examples, class 1 has 4; the reference would keep int(4 * .5) of each
    score = {
        "targets": torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1]),
        "s": torch.tensor([9.0, 8, 7, 6, 5, 4, 3, 2, 1, 0]),
    }
    chosen = select_coreset(score, "coreset", 0.5, key="s", class_balanced=True)
    assert chosen.tolist() == [3, 4, 5, 8, 9]  # the 3 and 2 lowest of each class


def test_class_balanced_counts_on_random_scores():
    score = random_scores()
    chosen = select_coreset(
        score, "coreset", 0.25, key="el2n", descending=True, class_balanced=True
    )
    targets = score["targets"]
    for c in range(10):
        members = (targets == c).nonzero().squeeze(1)
        picked = chosen[targets[chosen] == c]
        assert len(picked) == int(len(members) * 0.25)
        # the picks are the class's largest el2n values
        best = score["el2n"][members].sort(descending=True).values[: len(picked)]
        assert torch.equal(score["el2n"][picked].sort(descending=True).values, best)


# ---- stratification and budget allocation -----------------------------------------------------


def test_stratify_hand_computed():
    stratum, edges = stratify(torch.arange(10, dtype=torch.float32), 5)
    assert stratum.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert edges.dtype == torch.float64 and len(edges) == 6
    assert edges[0] == 0 and edges[-1].item() == pytest.approx(9 * 1.0001, rel=1e-6)


def test_stratify_keeps_a_negative_or_zero_maximum():
    scores = torch.tensor([-10.0, -5.0, -1.0])
    assert reference_strata_counts(scores, 3) == [1, 1, 0]  # the reference loses -1
    stratum, edges = stratify(scores, 3)
    assert stratum.tolist() == [0, 1, 2] and edges[-1].item() == pytest.approx(-1 + 9e-4)
    stratum, edges = stratify(torch.tensor([-2.0, 0.0]), 4)
    assert stratum.tolist() == [0, 3] and edges[-1] > 0


def test_stratify_matches_the_reference_bins_when_max_is_positive():
    for seed in range(3):
        score = random_scores(seed=seed)
        for key in ("accumulated_margin", "el2n", "forgetting"):
            stratum, _ = stratify(score[key], 50)
            assert torch.bincount(stratum, minlength=50).tolist() == reference_strata_counts(
                score[key], 50
            )


@pytest.mark.parametrize(
    "values",
    [
        torch.rand(20000) * 200 + 1e6,  # float32 spacing 1/16 at 1e6: uneven edges at 1000 strata
        torch.randint(0, 5, (1000,)).float(),
        torch.tensor([3.0, 3.0, 3.0]),
        torch.rand(5000, dtype=torch.float64) - 2,
        torch.randint(-3, 0, (100,), dtype=torch.int32),
        (torch.rand(3000) * 3).bfloat16(),  # 8-bit mantissa: many edges collapse
    ],
)
@pytest.mark.parametrize("strata", [1, 2, 7, 50, 1000, 100_000])  # 100k: collapsed edges
def test_stratum_is_the_bin_between_the_returned_edges(values, strata):
    stratum, edges = stratify(values, strata)
    dtype = values.dtype if values.is_floating_point() else torch.float32
    inner = edges.to(dtype)[1:strata].contiguous()
    assert torch.equal(stratum, torch.bucketize(values.to(dtype), inner, right=True))
    top = int(stratum[values.argmax()])
    assert top == strata - 1 or float(values.max()) < float(edges[top + 1])


def test_allocation_overflows_from_small_strata():
    assert allocate_budget([2, 10, 0, 30], 20) == [2, 9, 0, 9]
    assert allocate_budget([1, 1, 50], 12) == [1, 1, 10]
    assert allocate_budget([10, 10], 15) == [7, 8]  # equal sizes: stratum order


def test_stratified_hand_computed_with_hard_cut():
    score = {
        "accumulated_margin": torch.tensor([-5.0, -4.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 9.0])
    }
    # hard cut drops 0 and 1; strata of the rest over [0, 9.0009): sizes 4, 3, 1 in 3 strata
    chosen = select_coreset(score, "stratified", 0.4, mis_ratio=0.2, strata=3, seed=0)
    assert len(chosen) == 4 and not {0, 1} & set(chosen.tolist())
    # allocation: sizes [4, 3, 1] -> 1 to the top, then 3 // 2 = 1 and 2 -> [2, 1, 1]
    stratum_of = {2: 0, 3: 0, 4: 0, 5: 0, 6: 1, 7: 1, 8: 1, 9: 2}
    counts = torch.bincount(torch.tensor([stratum_of[i] for i in chosen.tolist()]), minlength=3)
    assert counts.tolist() == [2, 1, 1] and 9 in chosen.tolist()


@pytest.mark.parametrize(
    "ratio,mis_ratio,strata", [(0.1, 0.3, 50), (0.5, 0.0, 50), (0.2, 0.2, 7), (0.7, 0.3, 1)]
)
def test_stratified_invariants(ratio, mis_ratio, strata):
    score = random_scores()
    n = len(score["targets"])
    chosen = select_coreset(
        score, "stratified", ratio, key="el2n", mis_ratio=mis_ratio, strata=strata, seed=4
    )
    assert len(chosen) == int(ratio * n) and torch.equal(chosen, chosen.unique())
    cut = torch.sort(score["accumulated_margin"], stable=True).indices[: int(mis_ratio * n)]
    assert not set(cut.tolist()) & set(chosen.tolist())
    kept = torch.ones(n, dtype=torch.bool)
    kept[cut] = False
    survivors = kept.nonzero().squeeze(1)
    stratum, _ = stratify(score["el2n"][survivors], strata)
    sizes = torch.bincount(stratum, minlength=strata).tolist()
    position = torch.full((n,), -1, dtype=torch.long)
    position[survivors] = torch.arange(len(survivors))
    picked = torch.bincount(stratum[position[chosen]], minlength=strata).tolist()
    assert picked == allocate_budget(sizes, int(ratio * n))
    again = select_coreset(
        score, "stratified", ratio, key="el2n", mis_ratio=mis_ratio, strata=strata, seed=4
    )
    assert torch.equal(chosen, again)


def test_stratified_seeds_differ_and_none_is_fresh():
    score = random_scores()
    picks = [select_coreset(score, "stratified", 0.1, seed=s).tolist() for s in (0, 1, None)]
    assert picks[0] != picks[1] and picks[0] != picks[2]


def test_stratified_honours_mis_key_and_mis_descending():
    score = random_scores()
    n = len(score["el2n"])
    chosen = select_coreset(
        score, "stratified", 0.5, mis_ratio=0.5, mis_key="el2n", mis_descending=True, seed=0
    )
    largest = score["el2n"].argsort(descending=True)[: n // 2]
    assert not set(largest.tolist()) & set(chosen.tolist())
    assert len(chosen) == n // 2  # ratio + mis_ratio = 1: every survivor is taken


def test_stratified_integer_key():
    score = random_scores()
    chosen = select_coreset(score, "stratified", 0.2, key="forgetting", strata=6, seed=0)
    stratum, _ = stratify(score["forgetting"], 6)
    sizes = torch.bincount(stratum, minlength=6).tolist()
    assert torch.bincount(stratum[chosen], minlength=6).tolist() == allocate_budget(sizes, 600)


# ---- moderate ---------------------------------------------------------------------------------


def test_moderate_hand_computed():
    score = {
        "targets": torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1]),
        "moderate_distance": torch.tensor([1.0, 2, 3, 10, 11, 5, 6, 7, 8]),
    }
    # budget 4 over classes of 5 and 4: quotas 2.22 and 1.78 -> 2 and 2
    # class 0 ranks 1..2 (values 2, 3: one rank dropped below, two above);
    # class 1 ranks 1..2 (values 6, 7: one dropped on each side)
    assert select_coreset(score, "moderate", 0.5).tolist() == [1, 2, 6, 7]


def test_moderate_keeps_the_median_rank_band_not_the_nearest_values():
    # a skewed class: the authors' band is of ranks (equal counts either side of the median
    # rank), which here reaches 100, not the values nearest the median 3 (1, 2, 3)
    score = {
        "targets": torch.zeros(7, dtype=torch.long),
        "moderate_distance": torch.tensor([100.0, 0, 101, 2, 3, 102, 1]),
    }
    # ascending: 0 (i1), 1 (i6), 2 (i3), 3 (i4), 100 (i0), 101 (i2), 102 (i5); budget
    # int(0.43 * 7) = 3 keeps ranks 2..4 (two dropped on each side): indices 3, 4, 0
    assert select_coreset(score, "moderate", 0.43).tolist() == [0, 3, 4]


def test_moderate_band_of_an_odd_remainder_and_ties():
    # 6 examples, budget 3: floor(3 / 2) = 1 rank dropped below the band, 2 above; the tie
    # at 5.0 (indices 1 and 4) ranks the lower index first, so ranks 1..3 are 2, 1, 4
    score = {
        "targets": torch.zeros(6, dtype=torch.long),
        "moderate_distance": torch.tensor([1.0, 5, 9, 0.5, 5, 8]),
    }
    # ascending: 0.5 (i3), 1 (i0), 5 (i1), 5 (i4), 8 (i5), 9 (i2): ranks 1..3 are i0, i1, i4
    assert select_coreset(score, "moderate", 0.5).tolist() == [0, 1, 4]


def test_largest_remainder():
    assert largest_remainder(torch.tensor([5, 4]), 4).tolist() == [2, 2]
    assert largest_remainder(torch.tensor([1, 1, 1]), 2).tolist() == [1, 1, 0]
    counts = torch.randint(1, 500, (1000,), generator=torch.Generator().manual_seed(0))
    for budget in (1, 777, int(counts.sum()) // 3, int(counts.sum())):
        split = largest_remainder(counts, budget)
        assert int(split.sum()) == budget and bool((split <= counts).all())


def test_moderate_invariants():
    score = random_scores()
    score["moderate_distance"] = score["el2n"]
    chosen = select_coreset(score, "moderate", 0.3)
    assert len(chosen) == int(0.3 * len(score["el2n"])) and torch.equal(chosen, chosen.unique())
    targets = score["targets"]
    split = largest_remainder(torch.bincount(targets.long()), len(chosen))
    assert torch.bincount(targets[chosen].long(), minlength=10).tolist() == split.tolist()
    kept = torch.zeros(len(targets), dtype=torch.bool)
    kept[chosen] = True
    for c in range(10):  # a band of ranks: floor((n - b) / 2) dropped below it, the rest above
        values, members = score["el2n"][targets == c], kept[targets == c]
        n, b = len(values), int(members.sum())
        assert int((values < values[members].min()).sum()) == (n - b) // 2
        assert int((values > values[members].max()).sum()) == n - b - (n - b) // 2


# ---- validation and names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(mode="random", ratio=0.0), r"ratio must be in \(0, 1\], got 0.0"),
        (dict(mode="random", ratio=1.5), r"got 1.5"),
        (
            dict(mode="stratified", ratio=0.5, mis_ratio=1.0),
            r"mis ratio must be in \[0, 1\), got 1",
        ),
        (dict(mode="stratified", ratio=0.5, mis_ratio=-0.1), r"got -0.1"),
        (dict(mode="stratified", ratio=0.8, mis_ratio=0.3), r"at most 1, got 0.8 \+ 0.3"),
        (
            dict(mode="sorted", ratio=0.5),
            r"unknown coreset mode 'sorted'; choose one of: random, coreset, stratified, moderate",
        ),
        (
            dict(mode="coreset", ratio=0.5, key="aum"),
            (
                "unknown score key 'aum'; "
                "the score file has: accumulated_margin, el2n, forgetting, targets"
            ),
        ),
        (dict(mode="coreset", ratio=0.5), r"needs a score key"),
        (dict(mode="stratified", ratio=0.5, strata=0), r"strata must be a positive integer, got 0"),
        (
            dict(mode="coreset", ratio=0.5, key="el2n", num_examples=10),
            r"score file has 3000 examples but the training set has 10",
        ),
        (dict(mode="coreset", ratio=0.0001, key="el2n"), r"selects no example"),
    ],
)
def test_validation_messages(kwargs, message):
    with pytest.raises(UserError, match=message):
        select_coreset(random_scores(), **kwargs)


def test_validation_of_lengths_and_non_finite_values():
    score = random_scores()
    score["el2n"] = score["el2n"][:2999]
    with pytest.raises(UserError, match="'targets' has 3000, 'el2n' has 2999"):
        check_data_score(score)
    score = random_scores()
    score["el2n"][[3, 7, 9]] = torch.tensor([float("nan"), float("inf"), float("-inf")])
    with pytest.raises(UserError, match="'el2n' has 3 NaN or infinite values"):
        select_coreset(score, "coreset", 0.5, key="el2n")
    select_coreset(score, "coreset", 0.5, key="accumulated_margin")  # unused keys may be bad
    with pytest.raises(UserError, match="'el2n' has 3 NaN"):
        select_coreset(score, "stratified", 0.5, mis_ratio=0.1, mis_key="el2n")
    with pytest.raises(UserError, match="needs a score file"):
        select_coreset(None, "stratified", 0.5)
    with pytest.raises(UserError, match="training-set size"):
        select_coreset(None, "random", 0.5)


def test_method_names():
    assert [method_name(m, "el2n") for m in MODES] == [
        "random",
        "el2n",
        "ccs",
        "moderate",
        "d2",
        "kcenter",
        "dual",
        "rs2",
    ]
    with pytest.raises(UserError, match="unknown coreset mode"):
        method_name("ccs", None)


@pytest.mark.parametrize(
    "args,kwargs,flags,message",
    [
        (("random", 1.5), {}, ["--coreset-ratio"], "must be in (0, 1], got 1.5"),
        (("random", None), {}, ["--coreset-ratio"], "needs a ratio"),
        ((None, 0.5), {}, ["--coreset-mode"], "one of: random, coreset, stratified, moderate"),
        (("ccs", 0.5), {}, ["--coreset-mode"], "unknown coreset mode 'ccs'"),
        (("random", 0.5), dict(mis_ratio=1.0), ["--mis-ratio"], "[0, 1), got 1.0"),
        (
            ("stratified", 0.8),
            dict(mis_ratio=0.3),
            ["--coreset-ratio", "--mis-ratio"],
            "at most 1, got 0.8 + 0.3",
        ),
        (("random", 0.5), dict(strata=0), ["--strata"], "positive integer, got 0"),
        (("coreset", 0.5), {}, ["--coreset-key"], "needs a score key"),
    ],
)
def test_check_settings_names_the_flag(args, kwargs, flags, message):
    with pytest.raises(UserError) as error:
        check_settings(*args, **kwargs)
    text = str(error.value)
    assert message in text and all(flag in text for flag in flags) and "\n" not in text


def test_check_settings_accepts_every_mode():
    for mode in MODES:
        check_settings(mode, 0.5, key="el2n", mis_ratio=0.5, strata=1)
    check_settings("stratified", 0.5)  # stratified and moderate have default keys
    check_settings("moderate", 1.0)


def count_calls(monkeypatch, name):
    calls = []
    original = getattr(core.coreset, name)

    def counted(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(core.coreset, name, counted)
    return calls


SETTINGS = [
    dict(mode="random", ratio=0.3),
    dict(mode="coreset", ratio=0.2, key="el2n", descending=True, class_balanced=True),
    dict(mode="stratified", ratio=0.1, key="el2n", mis_ratio=0.3, mis_key="forgetting", strata=7),
    dict(mode="moderate", ratio=0.4, key="accumulated_margin"),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_select_from_score_file_equals_select_coreset(tmp_path, monkeypatch, settings):
    score = random_scores()
    path = str(tmp_path / "data-score.pickle")
    save_data_score(path, score)
    expected = select_coreset(score, seed=5, num_examples=3000, **settings)
    checks = count_calls(monkeypatch, "check_data_score")
    chosen = select_from_score_file(path, targets=score["targets"].long(), seed=5, **settings)
    assert torch.equal(chosen, expected)
    assert len(checks) == (settings["mode"] != "random")  # the data are checked once
    checks.clear()
    select_coreset(score, seed=5, **settings)
    assert len(checks) == 1


def test_select_from_score_file_checks(tmp_path):
    score = random_scores()
    path = str(tmp_path / "data-score.pickle")
    save_data_score(path, score)
    settings = dict(mode="stratified", ratio=0.1, key="el2n", mis_ratio=0.2)
    other = score["targets"].flip(0)
    with pytest.raises(UserError) as error:
        select_from_score_file(path, targets=other, seed=0, **settings)
    assert str(error.value) == (
        f"{path}: its targets differ from this dataset's labels "
        "(scores of another dataset or another ordering?)"
    )
    with pytest.raises(UserError, match="score file has 3000 examples but the training set has 5"):
        select_from_score_file(path, targets=torch.zeros(5), seed=0, **settings)
    with pytest.raises(UserError, match="unknown score key 'aum'"):
        select_from_score_file(path, targets=score["targets"], **dict(settings, key="aum"))
    with pytest.raises(UserError, match="--coreset-ratio"):  # settings first: no file read
        select_from_score_file("/nonexistent.pickle", targets=other, **dict(settings, ratio=2))
    with pytest.raises(UserError, match="score file not found: /nonexistent.pickle"):
        select_from_score_file("/nonexistent.pickle", targets=other, **settings)
    with pytest.raises(UserError, match=r"needs a score file \(--data-score-path\)"):
        select_from_score_file(None, targets=other, **settings)
    random = select_from_score_file(None, mode="random", ratio=0.5, targets=other, seed=1)
    assert torch.equal(random, select_coreset(None, "random", 0.5, seed=1, num_examples=3000))


# ---- feature-space modes: d2 and kcenter ------------------------------------------------------


def clustered_features(n=3000, dim=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(12, dim, generator=gen) * 4
    return (
        centers[torch.randint(0, 12, (n,), generator=gen)] + torch.randn(n, dim, generator=gen)
    ).half()


FEATURE_SETTINGS = [
    dict(mode="d2", ratio=0.1, mis_ratio=0.3, descending=True),
    dict(mode="d2", ratio=0.37, mis_ratio=0.2, key="el2n", descending=True, class_balanced=True),
    dict(mode="d2", ratio=0.5, key="accumulated_margin", d2_neighbors=2, d2_reverse_gamma=2.0),
    dict(mode="kcenter", ratio=0.1),
    dict(mode="kcenter", ratio=0.33, mis_ratio=0.3, class_balanced=True),
]


@pytest.mark.parametrize("settings", FEATURE_SETTINGS)
def test_feature_modes_exact_size_hard_cut_and_seed(settings):
    score, features = random_scores(), clustered_features()
    chosen = select_coreset(score, features=features, seed=3, **settings)
    assert len(chosen) == int(settings["ratio"] * 3000) and torch.equal(chosen, chosen.unique())
    cut = score["accumulated_margin"].argsort(stable=True)[
        : int(settings.get("mis_ratio", 0) * 3000)
    ]
    assert not set(cut.tolist()) & set(chosen.tolist())  # the hard cut is honoured
    again = select_coreset(score, features=features, seed=3, **settings)
    assert torch.equal(chosen, again)


@pytest.mark.parametrize("mode", ["d2", "kcenter"])
def test_feature_modes_split_the_budget_equally_over_classes(mode):
    score, features = random_scores(), clustered_features()
    score["targets"][score["targets"] == 3] = 4  # class 3 gone, class 4 twice as large
    score["targets"][:2990][score["targets"][:2990] == 7] = 8  # class 7: fewer than its share
    kept = hard_cut_survivors(score, 3000, 0.3, "accumulated_margin", False)
    sizes = torch.bincount(score["targets"][kept].long(), minlength=10)
    chosen = select_coreset(
        score, mode, 0.2, mis_ratio=0.3, class_balanced=True, features=features, seed=0
    )
    counts = torch.bincount(score["targets"][chosen].long(), minlength=10)
    assert counts.tolist() == allocate_budget(sizes.tolist(), 600)  # as the D2 code's split
    assert counts[7] == sizes[7] and sorted(set(counts.tolist()) - {0, int(sizes[7])}) == [74, 75]


def test_d2_importance_orientation():
    """Far-apart features: no message reaches a neighbour, so d2 keeps the most important
    scores: the largest with descending, the smallest (AUM's hard end) without."""
    score = random_scores(200)
    features = torch.arange(200, dtype=torch.float32)[:, None] * 1e4
    largest = select_coreset(score, "d2", 0.1, key="el2n", descending=True, features=features)
    assert set(largest.tolist()) == set(score["el2n"].argsort(descending=True)[:20].tolist())
    smallest = select_coreset(score, "d2", 0.1, key="el2n", features=features)
    assert set(smallest.tolist()) == set(score["el2n"].argsort()[:20].tolist())


def test_kcenter_seed_and_features_matter():
    score, features = random_scores(), clustered_features()
    a = select_coreset(score, "kcenter", 0.05, features=features, seed=0)
    assert not torch.equal(a, select_coreset(score, "kcenter", 0.05, features=features, seed=1))
    shuffled = features[torch.randperm(3000, generator=torch.Generator().manual_seed(0))]
    assert not torch.equal(a, select_coreset(score, "kcenter", 0.05, features=shuffled, seed=0))


def test_feature_mode_validation():
    score, features = random_scores(), clustered_features()
    with pytest.raises(UserError, match=r"needs the examples' features \(--features-path\)"):
        select_coreset(score, "d2", 0.1)
    with pytest.raises(
        UserError, match="the features have 2999 rows but the training set has 3000"
    ):
        select_coreset(score, "kcenter", 0.1, features=features[:2999])
    bad = features.clone()
    bad[[1, 5]] = float("nan")
    with pytest.raises(UserError, match="^the features have 16 NaN or infinite values$"):
        select_coreset(score, "kcenter", 0.1, features=bad)
    with pytest.raises(UserError, match=r"2-D tensor \[N, D\], got \(3000,\)"):
        select_coreset(score, "d2", 0.1, features=features[:, 0])
    with pytest.raises(UserError, match="unknown score key 'forgetting'"):  # d2's default key
        select_coreset({"targets": score["targets"]}, "d2", 0.1, features=features)
    with pytest.raises(UserError, match=r"at most 1, got 0.8 \+ 0.3"):
        select_coreset(score, "kcenter", 0.8, mis_ratio=0.3, features=features)


@pytest.mark.parametrize(
    "kwargs,flag,message",
    [
        (dict(d2_neighbors=0), "--d2-neighbors", "positive integer, got 0"),
        (dict(d2_neighbors=2.5), "--d2-neighbors", "got 2.5"),
        (dict(d2_forward_gamma=-1.0), "--d2-forward-gamma", "at least 0, got -1.0"),
        (dict(d2_reverse_gamma=float("nan")), "--d2-reverse-gamma", "got nan"),
    ],
)
def test_check_settings_d2_parameters(kwargs, flag, message):
    with pytest.raises(UserError) as error:
        check_settings("d2", 0.5, **kwargs)
    assert str(error.value).startswith(flag) and message in str(error.value)


def write_run_files(tmp_path, score, features, task="all-data"):
    """A scored run folder as generate_importance_score.py leaves it."""
    folder = tmp_path / task
    folder.mkdir()
    path = str(folder / f"data-score-{task}.pickle")
    save_data_score(path, score)
    torch.save(
        {"features": features.half(), "targets": score["targets"].long()},
        str(folder / f"features-{task}.pt"),
    )
    return path


@pytest.mark.parametrize("settings", FEATURE_SETTINGS)
def test_select_from_score_file_reads_the_features_beside_it(tmp_path, settings):
    score, features = random_scores(), clustered_features()
    path = write_run_files(tmp_path, score, features)
    expected = select_coreset(score, features=features, seed=5, **settings)
    chosen = select_from_score_file(path, targets=score["targets"], seed=5, **settings)
    assert torch.equal(chosen, expected)


def test_select_from_score_file_features_errors(tmp_path):
    score, features = random_scores(), clustered_features()
    path = write_run_files(tmp_path, score, features)
    targets = score["targets"]
    beside = str(tmp_path / "all-data" / "features-all-data.pt")
    elsewhere = str(tmp_path / "moved.pt")
    os.rename(beside, elsewhere)
    with pytest.raises(UserError) as error:
        select_from_score_file(path, mode="d2", ratio=0.1, targets=targets)
    message = str(error.value)
    assert message.startswith(f"features file not found: {beside} (")
    assert "generate_importance_score.py" in message and "--features-path" in message
    assert "\n" not in message
    chosen = select_from_score_file(
        path, mode="kcenter", ratio=0.1, targets=targets, seed=0, features_path=elsewhere
    )
    assert len(chosen) == 300
    torch.save({"features": features, "targets": targets.flip(0).long()}, elsewhere)
    with pytest.raises(UserError, match="its targets differ.*features of another dataset"):
        select_from_score_file(
            path, mode="kcenter", ratio=0.1, targets=targets, features_path=elsewhere
        )
    torch.save({"weights": features}, elsewhere)
    with pytest.raises(UserError, match="holds no 'features' tensor"):
        select_from_score_file(
            path, mode="kcenter", ratio=0.1, targets=targets, features_path=elsewhere
        )


def test_features_beside_follows_the_run_folder():
    from core.run_folder import RunFolder, features_beside

    run = RunFolder("/runs/cifar10", "all-data")
    assert features_beside(run.data_score) == run.features
    assert features_beside("/runs/x/custom-name.pickle") == "/runs/x/features-x.pt"
    assert features_beside("./runs/x/s.pickle") == os.path.join("runs", "x", "features-x.pt")
    here = os.path.basename(os.getcwd())
    assert features_beside("s.pickle") == os.path.join(os.getcwd(), f"features-{here}.pt")
