"""core.graph_selection against brute force: the kNN graph, D2's message passing and picks,
and k-center greedy, each recomputed here from a dense distance matrix."""

import pytest
import torch

from core import graph_selection
from core.graph_selection import (
    d2_forward,
    d2_greedy,
    d2_select,
    kcenter_greedy,
    knn_graph,
    undirected_graph,
)


def blobs(n=600, dim=16, centers=8, spread=0.3, seed=0, dtype=torch.float64):
    """Gaussian clusters around random centers: clustered data, distinct distances."""
    gen = torch.Generator().manual_seed(seed)
    middle = torch.randn(centers, dim, generator=gen, dtype=torch.float64) * 3
    label = torch.randint(0, centers, (n,), generator=gen)
    x = middle[label] + spread * torch.randn(n, dim, generator=gen, dtype=torch.float64)
    return x.to(dtype)


def dense_distances(x):
    x = x.double()
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1).sqrt()


def dense_knn(x, k):
    distance = dense_distances(x).fill_diagonal_(float("inf"))
    return distance.topk(k, dim=1, largest=False)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 64 x 64 pairs: the diagonal blocks, the blocks above them and a ragged
    last block all take part at a few hundred rows."""
    monkeypatch.setattr(graph_selection, "CHUNK_ELEMENTS", 64 * 64)


# ---- the kNN graph ----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 5, 12])
@pytest.mark.parametrize("n", [50, 333])
def test_knn_graph_equals_dense_topk(small_blocks, n, k):
    x = blobs(n)
    neighbours, distances = knn_graph(x, k)
    expected = dense_knn(x, k)
    assert torch.equal(neighbours, expected.indices)
    torch.testing.assert_close(distances.double(), expected.values, rtol=1e-6, atol=1e-6)


def test_knn_graph_in_one_block_and_in_float16():
    x = blobs(400)
    expected = dense_knn(x, 5)
    assert torch.equal(knn_graph(x, 5)[0], expected.indices)  # one block: n^2 < CHUNK_ELEMENTS
    half = x.half()  # as the scoring script stores features; float32 arithmetic inside
    neighbours, distances = knn_graph(half, 5)
    expected = dense_knn(half.double(), 5)
    assert torch.equal(neighbours, expected.indices)
    torch.testing.assert_close(distances.double(), expected.values, rtol=1e-5, atol=1e-5)


def test_knn_graph_ties_go_to_the_lower_index_and_small_groups():
    x = torch.tensor([[0.0], [1.0], [1.0], [1.0], [5.0]])
    neighbours, distances = knn_graph(x, 2)
    assert neighbours[0].tolist() == [1, 2] and neighbours[2].tolist() == [1, 3]
    assert distances[2].tolist() == [0.0, 0.0]
    assert knn_graph(x, 10)[0].shape == (5, 4)  # at most n - 1 neighbours
    assert knn_graph(x[:1], 5)[0].shape == (1, 0)


def test_undirected_graph_is_the_symmetric_closure():
    x = blobs(120)
    neighbours, distances = knn_graph(x, 4)
    offsets, target, distance = undirected_graph(neighbours, distances)
    dense = torch.zeros(120, 120, dtype=torch.bool)
    dense[torch.arange(120)[:, None], neighbours] = True
    dense |= dense.T.clone()
    rebuilt = torch.zeros_like(dense)
    source = torch.arange(120).repeat_interleave(offsets.diff())
    rebuilt[source, target] = True
    assert torch.equal(rebuilt, dense) and len(target) == int(dense.sum())
    assert torch.all(target[:-1][source[:-1] == source[1:]] < target[1:][source[:-1] == source[1:]])
    torch.testing.assert_close(distance.double(), dense_distances(x)[source, target])


# ---- D2 pruning -------------------------------------------------------------------------------


def dense_d2(x, importance, k, forward_gamma, reverse_gamma, budget):
    """D2 on a dense matrix, as the authors' GraphDensitySampler does it: symmetric kNN
    adjacency; density = s_i + sum_j exp(-gamma_f d_ij) max(s_j, 1e-7); then repeatedly the
    argmax, whose unpicked neighbours lose exp(-gamma_r d_ij) times its score."""
    distance = dense_distances(x)
    nearest = distance.clone().fill_diagonal_(float("inf")).topk(k, largest=False).indices
    adjacent = torch.zeros(len(x), len(x), dtype=torch.bool)
    adjacent[torch.arange(len(x))[:, None], nearest] = True
    adjacent |= adjacent.T.clone()
    weight = torch.where(adjacent, torch.exp(-forward_gamma * distance), 0.0)
    density = importance + (weight * importance.clamp_min(1e-7)[None, :]).sum(1)
    score, taken, picks = density.clone(), torch.zeros(len(x), dtype=torch.bool), []
    for _ in range(budget):
        pick = int(torch.where(taken, -torch.inf, score).argmax())
        picks.append(pick)
        taken[pick] = True
        around = adjacent[pick] & ~taken
        score[around] -= torch.exp(-reverse_gamma * distance[pick, around]) * score[pick]
    return density, picks


@pytest.mark.parametrize("k,forward_gamma,reverse_gamma", [(5, 1.0, 0.1), (10, 0.5, 1.0)])
def test_d2_message_passing_and_picks_equal_dense(small_blocks, k, forward_gamma, reverse_gamma):
    x = blobs(300, spread=0.5)
    gen = torch.Generator().manual_seed(1)
    importance = torch.randint(0, 6, (300,), generator=gen).double()  # forgetting-like, ties
    graph = undirected_graph(*knn_graph(x, k))
    density = d2_forward(importance, graph, forward_gamma)
    expected_density, expected_picks = dense_d2(x, importance, k, forward_gamma, reverse_gamma, 150)
    torch.testing.assert_close(density, expected_density, rtol=1e-12, atol=1e-12)
    picks = d2_greedy(density, graph, reverse_gamma, 150)
    assert picks == expected_picks
    chosen = d2_select(
        x, importance, 150, neighbours=k, forward_gamma=forward_gamma, reverse_gamma=reverse_gamma
    )
    assert chosen.tolist() == expected_picks


def test_d2_on_far_apart_examples_takes_the_most_important():
    """Without near neighbours message passing changes nothing: the top scores are taken."""
    x = torch.arange(20, dtype=torch.float64)[:, None] * 1000
    importance = torch.tensor([3.0, 9, 1, 7, 5, 8, 2, 6, 4, 0] * 2) + torch.arange(20) / 100
    chosen = d2_select(x, importance, 5, neighbours=3, forward_gamma=1.0, reverse_gamma=0.1)
    assert sorted(chosen.tolist()) == sorted(importance.argsort(descending=True)[:5].tolist())
    assert d2_select(
        x, importance, 25, neighbours=3, forward_gamma=1.0, reverse_gamma=0.1
    ).tolist() == list(range(20))


def test_d2_reverse_passing_spreads_the_picks():
    """Two tight clusters, the important one larger: reverse message passing makes D2 take
    from both, where a score ranking would take only the larger one."""
    gen = torch.Generator().manual_seed(0)
    x = torch.cat(
        [torch.randn(40, 2, generator=gen) * 0.01, torch.randn(10, 2, generator=gen) * 0.01 + 50]
    )
    importance = torch.cat([torch.full((40,), 2.0), torch.full((10,), 1.0)])
    chosen = d2_select(x, importance, 10, neighbours=5, forward_gamma=1.0, reverse_gamma=0.1)
    assert (chosen >= 40).any() and (chosen < 40).any()


# ---- k-center greedy --------------------------------------------------------------------------


def dense_kcenter(x, budget, first):
    distance = dense_distances(x)
    gap, picks = distance[first].clone(), [first]
    gap[first] = -1
    for _ in range(budget - 1):
        pick = int(gap.argmax())
        picks.append(pick)
        gap = torch.minimum(gap, distance[pick])
        gap[picks] = -1
    return picks


def first_draw(n, seed):
    return int(torch.randint(n, (1,), generator=torch.Generator().manual_seed(seed)))


@pytest.fixture(params=["plain", "bounds", "bounds and sketch"])
def kcenter_path(request, monkeypatch):
    """Each way kcenter_greedy can run on a few hundred rows: every distance (up to 4,096
    rows), the lower bounds, and the bounds with the principal-direction sketch (from 256
    picks of more than 32 dims)."""
    if request.param != "plain":
        monkeypatch.setattr(graph_selection, "PLAIN_MAX_ROWS", 0)
    if request.param == "bounds and sketch":
        monkeypatch.setattr(graph_selection, "SKETCH_DIM", 4)
        monkeypatch.setattr(graph_selection, "SKETCH_MIN_PICKS", 0)
    return request.param


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcenter_picks_equal_dense_greedy(kcenter_path, seed):
    x = blobs(500, seed=seed)
    picks = kcenter_greedy(x, 120, torch.Generator().manual_seed(seed))
    assert picks.tolist() == dense_kcenter(x, 120, first_draw(500, seed))


def test_kcenter_float16_features_keep_the_greedy_radius(kcenter_path):
    """float16 features are computed in float32: same picks as the dense float64 greedy on
    the same (rounded) values, up to float32 ties, so compare the covering radius."""
    x = blobs(500, seed=3).half()
    picks = kcenter_greedy(x, 60, torch.Generator().manual_seed(3))
    expected = dense_kcenter(x.double(), 60, first_draw(500, 3))
    distance = dense_distances(x)
    radius = distance[:, picks].min(1).values.max()
    expected_radius = distance[:, expected].min(1).values.max()
    torch.testing.assert_close(radius, expected_radius, rtol=1e-4, atol=1e-4)


def first_pick_seed(n, first):
    return next(seed for seed in range(1000) if first_draw(n, seed) == first)


@pytest.mark.parametrize("delta,expected", [(1e-3, [0, 3, 2]), (1e-4, [0, 3, 2]), (0.0, [0, 3, 1])])
def test_kcenter_near_tie_is_decided_in_float64(kcenter_path, delta, expected):
    """Rows 1 and 2 lie at 1 and 1 + delta from the first pick, row 3 far away: with centred
    norms of ~350, |x|^2 + |c|^2 - 2 x.c in float32 rounds both distances to 1.0, so float32
    alone picked row 1 at delta 1e-3 and 1e-4. An exact tie (delta 0) goes to the lower row."""
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0 + delta], [1000.0, 1000.0]])
    picks = kcenter_greedy(x, 3, torch.Generator().manual_seed(first_pick_seed(4, 0)))
    assert picks.tolist() == expected == dense_kcenter(x.double(), 3, 0)


@pytest.mark.parametrize("seed", [3, 11])
def test_kcenter_float16_features_pick_as_the_dense_float64_greedy(kcenter_path, seed):
    """Near ties of the float32 distances are settled in float64: the same picks as the
    dense float64 greedy on the same float16 values (seed 11 differed at pick 56 before)."""
    x = blobs(500, seed=seed).half()
    picks = kcenter_greedy(x, 60, torch.Generator().manual_seed(seed))
    assert picks.tolist() == dense_kcenter(x.double(), 60, first_draw(500, seed))


@pytest.mark.parametrize("seed", range(3))
def test_kcenter_covers_clustered_data_no_worse_than_random(seed):
    x = blobs(1500, dim=8, centers=20, spread=0.2, seed=seed)
    distance = dense_distances(x)
    for budget in (20, 60):
        picks = kcenter_greedy(x, budget, torch.Generator().manual_seed(seed))
        random = torch.randperm(1500, generator=torch.Generator().manual_seed(seed))[:budget]
        radius = distance[:, picks].min(1).values.max()
        assert radius <= distance[:, random].min(1).values.max()
        assert len(set(picks.tolist())) == budget


def test_kcenter_with_duplicates_and_whole_groups(kcenter_path):
    x = torch.zeros(6, 3)
    x[5] = 1.0  # five identical rows and one apart
    picks = kcenter_greedy(x, 4, torch.Generator().manual_seed(0))
    assert len(set(picks.tolist())) == 4  # never a row twice, even at distance 0
    assert 5 in picks.tolist()[:2]
    assert kcenter_greedy(x, 6, torch.Generator().manual_seed(0)).tolist() == list(range(6))
