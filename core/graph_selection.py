"""Feature-space selection: an exact k-nearest-neighbour graph, D2 pruning on it, and k-center
greedy. Nothing here builds an N x N matrix.

D2 pruning (Maharana, Yadav, Bansal, ICLR 2024): over the undirected kNN graph of the
examples' features, forward message passing adds to each node's importance its neighbours'
importance weighted by exp(-gamma_f * distance); greedy selection then takes the highest
score and reverse message passing lowers each neighbour j of the pick i by
exp(-gamma_r * d_ij) * score_i. k-center greedy (Sener & Savarese, ICLR 2018): from a random
start, repeatedly take the example farthest from everything taken so far.

Inputs are positions 0..n-1 of one group of examples; core.coreset maps them to dataset
indices, applies the hard cut and splits by class. docs/FAITHFULNESS.md (G rows) lists where
this follows the authors' code and where it does not.
"""

from __future__ import annotations

import contextlib
import heapq
from array import array
from math import isqrt

import torch

IMPORTANCE_FLOOR = 1e-7  # the D2 code's epsilon: a neighbour's message uses max(score, 1e-7)
# entries per block of pairs: 16 MiB in float32, small enough for the passes over it to stay fast
CHUNK_ELEMENTS = 1 << 22
# k-center skips an example when the triangle inequality proves the new center is not nearer;
# the slack keeps float rounding from skipping one that ties
PRUNE_SLACK = 1e-4
# k-center bounds distances within this many principal directions when it picks more than
# SKETCH_MIN_PICKS (computing the directions costs about as much as a few hundred picks)
SKETCH_DIM, SKETCH_MIN_PICKS = 32, 256
PLAIN_MAX_ROWS = 4096  # k-center on at most this many rows skips the bounds altogether


def knn_graph(features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(neighbours [n, k'] int64, distances [n, k']) of each row's k' = min(k, n-1) nearest
    other rows in Euclidean distance, nearest first, ties to the lower index. Distances are
    float64 for float64 features, else float32 (the dtype computed in).

    Exact, in square blocks of pairs on the features' device, O(n*k + block) memory. A fast
    pass keeps each row's best k'+8 candidates by |x_i|^2 + |x_j|^2 - 2 x_i.x_j: first
    within each diagonal block, then each block above the diagonal (one matrix product
    serving its rows and its columns: n^2/2 dot products in all) only offers the pairs
    nearer than a row's current worst candidate. A row whose first k'+1 keys lie within
    the fast pass's rounding error of each other has its candidates re-ranked by directly
    computed distances (_exact_rerank), so float cancellation cannot swap a neighbour in or
    out; the distances returned are always computed directly.
    """
    x = _centred(features)
    n = len(x)
    k = max(0, min(int(k), n - 1))
    if k == 0:
        return torch.empty(n, 0, dtype=torch.long, device=x.device), x.new_empty(n, 0)
    kept = min(n - 1, k + 8)  # room for near ties at the k-th, which the re-ranking settles
    best_key = x.new_full((n, kept), float("inf"))
    best = torch.zeros(n, kept, dtype=torch.long, device=x.device)
    squared = (x * x).sum(1)
    size = max(1, isqrt(CHUNK_ELEMENTS))
    starts = range(0, n, size)
    for a in starts:  # within each block: every row gets its first candidates
        block = _squared_distances(x, squared, a, a, size)
        block.fill_diagonal_(float("inf"))  # an example is not its own neighbour
        top = block.topk(min(kept, len(block)), dim=1, largest=False)
        best_key[a : a + size, : top.values.shape[1]] = top.values
        best[a : a + size, : top.values.shape[1]] = top.indices + a
    worst = best_key.amax(1)
    for a in starts:
        for b in range(a + size, n, size):
            block = _squared_distances(x, squared, a, b, size)
            row, column = (block < worst[a : a + size, None]).nonzero().unbind(1)
            row_t, column_t = (block < worst[None, b : b + size]).nonzero().unbind(1)
            if len(row) or len(row_t):  # (row, candidate, key) from both sides of the block
                _merge_candidates(
                    best_key,
                    best,
                    worst,
                    torch.cat([row + a, column_t + b]),
                    torch.cat([column + b, row_t + a]),
                    torch.cat([block[row, column], block[row_t, column_t]]),
                )
    return _exact_rerank(x, squared, best_key, best, k)


def _squared_distances(x, squared, a, b, size) -> torch.Tensor:
    """|x_i - x_j|^2 for rows a.. and columns b.. of one block: [x_i, |x_i|^2, 1] times
    [-2 x_j, 1, |x_j|^2], one matrix product with no pass over the block to add the norms."""
    rows, columns = slice(a, a + size), slice(b, b + size)
    one = x.new_ones(1)
    left = torch.cat([x[rows], squared[rows, None], one.expand(len(x[rows]), 1)], 1)
    right = torch.cat([-2 * x[columns], one.expand(len(x[columns]), 1), squared[columns, None]], 1)
    return left @ right.T


def _merge_candidates(best_key, best, worst, row, candidate, key) -> None:
    """Each offered row keeps the `kept` smallest keys of its current candidates and the
    offered ones (a pair is offered to a row once: blocks do not overlap)."""
    kept = best.shape[1]
    rows, group = torch.unique(row, return_inverse=True)
    group = torch.cat([torch.arange(len(rows), device=row.device).repeat_interleave(kept), group])
    key = torch.cat([best_key[rows].reshape(-1), key])
    candidate = torch.cat([best[rows].reshape(-1), candidate])
    order = torch.sort(key, stable=True).indices
    order = order[torch.sort(group[order], stable=True).indices]  # by row, then by key
    sizes = torch.bincount(group, minlength=len(rows))
    rank = (
        torch.arange(len(order), device=row.device) - (torch.cumsum(sizes, 0) - sizes)[group[order]]
    )
    keep = order[rank < kept]  # the first `kept` of each row, rows in order
    best_key[rows] = key[keep].view(len(rows), kept)
    best[rows] = candidate[keep].view(len(rows), kept)
    worst[rows] = best_key[rows].amax(1)


def _exact_rerank(x, squared, best_key, best, k):
    """Each row's k nearest by directly computed distance, ties to the lower index.

    The fast keys carry rounding error up to about sqrt(D) * eps * max |x|^2 (the matrix
    product's); a row whose first k+1 keys are further apart than twice that already has
    its k nearest, in order, among the candidates' first k. Only the other rows (near ties)
    have all their candidates' distances computed directly; the rest only their k."""
    best, order = best.sort(dim=1)  # ties below go to the lower index
    best_key, order = best_key.gather(1, order).sort(dim=1, stable=True)
    best = best.gather(1, order)
    tolerance = 16 * (x.shape[1] + 2) ** 0.5 * torch.finfo(x.dtype).eps * float(squared.max())
    settled = (best_key[:, : k + 1].diff(dim=1) > 2 * tolerance).all(1)
    neighbours, distances = best[:, :k].clone(), x.new_empty(len(x), k)
    for rows in _row_chunks(len(x), k * x.shape[1]):
        distances[rows] = _direct_distances(x, rows, neighbours[rows])
    unsettled = (~settled).nonzero().squeeze(1)
    for rows in _row_chunks(len(unsettled), best.shape[1] * x.shape[1]):
        near_ties = unsettled[rows]
        distance, order = _direct_distances(x, near_ties, best[near_ties]).sort(dim=1, stable=True)
        neighbours[near_ties] = best[near_ties].gather(1, order[:, :k])
        distances[near_ties] = distance[:, :k]
    return neighbours, distances


def _row_chunks(n: int, per_row: int):
    rows = max(1, CHUNK_ELEMENTS // per_row)
    return [slice(start, start + rows) for start in range(0, n, rows)]


def _direct_distances(x, rows, columns) -> torch.Tensor:
    """|x[rows[i]] - x[columns[i, j]]| as [len(rows), columns.shape[1]], by differences."""
    return (x[rows].unsqueeze(1) - x[columns]).norm(dim=2)


def undirected_graph(
    neighbours: torch.Tensor, distances: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kNN graph made undirected (an edge where either end is among the other's k
    nearest, as the D2 code's dense graph is), as CSR: (offsets [n+1], targets [E],
    distances [E]); node i's edges are targets[offsets[i]:offsets[i+1]], by target index."""
    n, k = neighbours.shape
    device = neighbours.device
    source = torch.arange(n, device=device).repeat_interleave(k)
    target = neighbours.reshape(-1)
    both_source = torch.cat([source, target])
    both_target = torch.cat([target, source])
    both_distance = torch.cat([distances.reshape(-1), distances.reshape(-1)])
    edge_key, order = torch.sort(both_source * n + both_target)
    first = torch.ones_like(edge_key, dtype=torch.bool)
    first[1:] = edge_key[1:] != edge_key[:-1]  # an edge found from both ends is kept once
    keep = order[first]
    source, target, distance = both_source[keep], both_target[keep], both_distance[keep]
    offsets = torch.zeros(n + 1, dtype=torch.long, device=device)
    offsets[1:] = torch.cumsum(torch.bincount(source, minlength=n), 0)
    return offsets, target, distance


def d2_forward(importance: torch.Tensor, graph, gamma: float) -> torch.Tensor:
    """Forward message passing (float64): importance_i + sum over neighbours j of
    exp(-gamma * d_ij) * max(importance_j, 1e-7)."""
    offsets, target, distance = graph
    importance = importance.double().to(target.device)
    source = torch.repeat_interleave(
        torch.arange(len(importance), device=target.device), offsets.diff()
    )
    message = torch.exp(-gamma * distance.double()) * importance[target].clamp_min(IMPORTANCE_FLOOR)
    return importance + torch.zeros_like(importance).index_add_(0, source, message)


def d2_greedy(score: torch.Tensor, graph, gamma: float, budget: int) -> list[int]:
    """Reverse message passing: `budget` positions in pick order. Each pick is the highest
    current score (ties: the lower position); every unpicked neighbour j of a pick i then
    loses exp(-gamma * d_ij) * score_i. A heap with lazy deletion: each changed score is
    pushed anew and stale entries are skipped, O((n + budget * degree) log n)."""
    offsets, target, distance = (t.cpu() for t in graph)
    scores = _doubles(score.double().cpu())
    weight = _doubles(torch.exp(-gamma * distance.double()))
    offset, neighbour = _longs(offsets), _longs(target)
    heap = [(-value, i) for i, value in enumerate(scores)]
    heapq.heapify(heap)
    taken = bytearray(len(scores))
    picks: list[int] = []
    while len(picks) < budget:
        negative, i = heapq.heappop(heap)
        if taken[i] or -negative != scores[i]:
            continue  # taken already, or a stale entry of a score changed since
        taken[i] = 1
        picks.append(i)
        message = scores[i]
        for edge in range(offset[i], offset[i + 1]):
            j = neighbour[edge]
            if not taken[j]:
                scores[j] -= weight[edge] * message
                heapq.heappush(heap, (-scores[j], j))
    return picks


def _doubles(values: torch.Tensor) -> array:
    return array("d", values.double().contiguous().numpy().tobytes())


def _longs(values: torch.Tensor) -> array:
    return array("q", values.long().cpu().contiguous().numpy().tobytes())


def d2_select(
    features: torch.Tensor,
    importance: torch.Tensor,
    budget: int,
    *,
    neighbours: int,
    forward_gamma: float,
    reverse_gamma: float,
) -> torch.Tensor:
    """D2 pruning of one group: positions (int64, pick order) of `budget` rows of
    `features`, given each row's importance (larger = more important)."""
    if budget >= len(features):
        return torch.arange(len(features))
    graph = undirected_graph(*knn_graph(features, neighbours))
    score = d2_forward(importance, graph, forward_gamma)
    return torch.tensor(d2_greedy(score, graph, reverse_gamma, budget), dtype=torch.long)


def kcenter_greedy(features: torch.Tensor, budget: int, generator: torch.Generator) -> torch.Tensor:
    """k-center greedy of one group: positions (int64, pick order) of `budget` rows, the
    first drawn at random from `generator`, each next one the row farthest (Euclidean) from
    all rows picked so far (ties: the lower position). See _kcenter."""
    with _one_cpu_thread():
        return _kcenter(features, budget, generator)


@contextlib.contextmanager
def _one_cpu_thread():
    """The picks are many small operations: on several CPU threads each one waits for the
    others, which on a busy machine costs milliseconds a call (a 3000 x 8 matrix-vector
    product measured 65x slower on 2 threads than on 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _kcenter(features: torch.Tensor, budget: int, generator: torch.Generator) -> torch.Tensor:
    """k-center greedy. One min-distance vector m, updated per pick c. Lower bounds on
    d(c, x) skip most rows, each a proof that c is not nearer to x than m(x): d(c, a) - m(x),
    a the pick nearest to x (triangle inequality); | |x| - |c| |; and, over many picks, the distance within
    the features' leading principal directions (a projection only shortens distances)
    combined with the difference of the lengths left outside them. Only the remaining rows
    get their distance to c computed. Groups of at most PLAIN_MAX_ROWS rows skip the bounds.
    """
    x = _centred(features)
    n = len(x)
    if budget >= n:
        return torch.arange(n)
    squared = (x * x).sum(1)
    first = int(torch.randint(n, (1,), generator=generator))
    farthest = _farthest_rule(features, x, squared, budget, first)
    if n <= PLAIN_MAX_ROWS:
        return _kcenter_plain(x, squared, budget, first, farthest)
    norm = squared.sqrt()
    # |x|^2 + |c|^2 - 2 x.c loses about sqrt(eps * max |x|^2) to cancellation: widen the tests
    tolerance = 8 * (torch.finfo(x.dtype).eps * float(squared.max())) ** 0.5
    sketch = _sketch(x, squared) if budget > SKETCH_MIN_PICKS and x.shape[1] > SKETCH_DIM else None
    low, low_squared = sketch[:2] if sketch else (x, squared)  # d(c, a) bounded from below
    centers = low.new_empty(budget, low.shape[1])  # the picks' rows, contiguous
    centers_squared = low.new_empty(budget)
    nearest = torch.zeros(n, dtype=torch.long, device=x.device)  # which pick is nearest
    picks = [first]
    centers[0], centers_squared[0] = low[first], low_squared[first]
    gap = _distances(x, squared, x[first], squared[first])
    gap[first] = -1.0  # picked: never the farthest, never a candidate
    reach = _reach(gap, tolerance)  # m(x) widened by the rounding slack
    for t in range(1, budget):
        pick = farthest(gap, nearest, t)
        between = _distances(centers[:t], centers_squared[:t], low[pick], low_squared[pick])
        # index_select rather than [] indexing throughout: several times faster per call
        maybe = (between.index_select(0, nearest) < gap + reach).nonzero().squeeze(1)
        reach_maybe = reach.index_select(0, maybe)
        keep = (norm.index_select(0, maybe) - norm[pick]).abs() < reach_maybe
        if sketch is not None:
            keep &= _sketch_distances(sketch, maybe, pick) < reach_maybe
        maybe = maybe.masked_select(keep)
        distance = _distances_to(x, squared, maybe, pick)
        closer = distance < gap.index_select(0, maybe)
        moved = torch.cat([maybe.masked_select(closer), torch.tensor([pick], device=x.device)])
        gap[moved] = torch.cat([distance.masked_select(closer), gap.new_full((1,), -1.0)])
        reach[moved] = _reach(gap.index_select(0, moved), tolerance)
        nearest[moved] = t
        centers[t], centers_squared[t] = low[pick], low_squared[pick]
        picks.append(pick)
    return torch.tensor(picks, dtype=torch.long)


def _kcenter_plain(x, squared, budget: int, first: int, farthest) -> torch.Tensor:
    """k-center greedy computing every row's distance to each pick: for a few thousand
    rows, a few operations per pick cost less than the bounds' bookkeeping."""
    picks = [first]
    gap = _distances(x, squared, x[first], squared[first])
    gap[first] = -1.0
    nearest = torch.zeros(len(x), dtype=torch.long, device=x.device)  # which pick is nearest
    for t in range(1, budget):
        pick = farthest(gap, nearest, t)
        distance = _distances(x, squared, x[pick], squared[pick])
        closer = distance < gap  # never a picked row (-1)
        gap = torch.where(closer, distance, gap)
        nearest.masked_fill_(closer, t)
        gap[pick] = -1.0  # picked: never the farthest (earlier picks stay at -1)
        picks.append(pick)
    return torch.tensor(picks, dtype=torch.long)


def _farthest_rule(features, x, squared, budget: int, first: int):
    """farthest(gap, nearest, t): the next pick, the row of largest `gap` (a row's distance
    to the nearest of the t picks so far, nearest[row] the index of that pick in pick order;
    -1 for a picked row).

    The distances come from |x|^2 + |c|^2 - 2 x.c in float32, which can round two rows to
    one value, or swap them, where the reference's float64 distances tell them apart. So
    the float32 argmax decides only when no other row lies within the rounding error of
    the largest gap; otherwise those rows' distances to their nearest pick are recomputed
    in float64 from `features`, by differences, and the largest wins (ties: the lower
    row). Costs a pass over the gaps per pick and, the bound being loose, a few rows' D
    subtractions at most picks (a few seconds' noise in the bench). Exact unless a row's
    two nearest picks are also within rounding of each other (then float32 chose which).
    """
    eps = torch.finfo(x.dtype).eps
    # error bound of a squared distance of the fast form (as knn_graph's keys)
    slack = 16 * (x.shape[1] + 2) ** 0.5 * eps * float(squared.max())
    pick_rows = torch.full((budget,), first, dtype=torch.long, device=x.device)  # in order

    def farthest(gap, nearest, t) -> int:
        top_row = int(torch.argmax(gap))
        top = float(gap[top_row])
        # two rows near `top` err by at most slack / top each, plus the square root's eps
        margin = 2 * slack / top + 4 * eps * top if top > 0 else float("inf")
        near = (gap >= max(top - margin, 0.0)).nonzero().squeeze(1)
        if len(near) > 1:
            centers = pick_rows.index_select(0, nearest.index_select(0, near))
            top_row = int(near[torch.argmax(_exact_distances(features, near, centers))])
        pick_rows[t] = top_row
        return top_row

    return farthest


def _exact_distances(features, rows, centers) -> torch.Tensor:
    """|features[rows[i]] - features[centers[i]]| in float64, by differences, in blocks."""
    out = torch.empty(len(rows), dtype=torch.float64, device=features.device)
    for part in _row_chunks(len(rows), features.shape[1]):
        a = features.index_select(0, rows[part]).double()
        out[part] = (a - features.index_select(0, centers[part]).double()).norm(dim=1)
    return out


def _reach(gap: torch.Tensor, tolerance: float) -> torch.Tensor:
    """m(x) plus the slack that keeps rounding from ruling out a row that ties; -inf for a
    picked row (m = -1), so no bound ever makes it a candidate."""
    return torch.where(gap < 0, -torch.inf, gap * (1 + PRUNE_SLACK) + tolerance)


def _sketch(x, squared):
    """(x in its SKETCH_DIM leading principal directions, their squared lengths, the
    lengths left outside them). Any orthonormal basis gives valid lower bounds, a good one
    tight bounds, so the directions come from at most ~8,000 evenly spaced rows."""
    sample = x[:: max(1, len(x) // 8192)]
    covariance = (sample.T @ sample).double()
    basis = torch.linalg.eigh(covariance).eigenvectors[:, -SKETCH_DIM:].to(x.dtype)
    inside = x @ basis
    inside_squared = (inside * inside).sum(1)
    return inside, inside_squared, (squared - inside_squared).clamp_min(0).sqrt()


def _sketch_distances(sketch, rows, center: int) -> torch.Tensor:
    """Lower bounds on d(x[rows], x[center]): sqrt(|P(x - c)|^2 + (|x - Px| - |c - Pc|)^2)."""
    inside, inside_squared, outside = sketch
    within = _distances(
        inside.index_select(0, rows),
        inside_squared.index_select(0, rows),
        inside[center],
        inside_squared[center],
    )
    return torch.hypot(within, outside.index_select(0, rows) - outside[center])


def _centred(features: torch.Tensor) -> torch.Tensor:
    """float64 kept, anything else in float32; centred, which leaves distances unchanged
    and shrinks the norms whose cancellation limits the |x|^2 - 2 x.c + |c|^2 form."""
    x = features if features.dtype == torch.float64 else features.float()
    mean = x.mean(0)
    return x - mean if x is features else x.sub_(mean)  # never changes the caller's tensor


def _distances_to(x, squared, rows, center: int) -> torch.Tensor:
    """Euclidean distances from x[rows] to x[center]."""
    if len(rows) * 4 > len(x):  # most rows: one pass over all beats gathering them
        return _distances(x, squared, x[center], squared[center]).index_select(0, rows)
    return _distances(
        x.index_select(0, rows), squared.index_select(0, rows), x[center], squared[center]
    )


def _distances(rows, rows_squared, point, point_squared) -> torch.Tensor:
    """Euclidean distances from each row to `point`, as sqrt(|r|^2 + |p|^2 - 2 r.p)."""
    return torch.addmv(rows_squared + point_squared, rows, point, alpha=-2).clamp_min(0).sqrt()


__all__ = [
    "d2_forward",
    "d2_greedy",
    "d2_select",
    "kcenter_greedy",
    "knn_graph",
    "undirected_graph",
]
