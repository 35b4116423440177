"""How well a coreset covers the data: the paper's AUCpr (CCS, section 3.1).

Embed every example with the full-data model's penultimate layer. For a target set T and a
coreset S, r(x, S) = min over s in S of ||x - s||_2 is the radius at which x becomes covered.
The coverage curve is the fraction of T within radius r of S; AUCpr, the area above that curve,
equals the mean of r(x, S) over T. Lower AUCpr means better coverage.
"""

from collections.abc import Sequence

import torch

from core.errors import UserError

TensorLike = torch.Tensor | Sequence[float]


def _pick_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _as_matrix(name: str, points: torch.Tensor) -> torch.Tensor:
    points = torch.as_tensor(points)
    if points.dim() == 1:  # 1-D data: one feature per example
        points = points[:, None]
    if points.dim() != 2:
        raise UserError(f"{name} must be a [N, D] feature matrix, got shape {tuple(points.shape)}")
    return points


def _chunk_nearest(target: torch.Tensor, coreset: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Nearest distance from each row of one target chunk to all of the coreset, chunk by chunk."""
    best = torch.full((len(target),), float("inf"), device=target.device)
    for start in range(0, len(coreset), chunk_size):
        block = coreset[start : start + chunk_size]
        # cdist's matrix-multiply path loses precision for close points (a point's distance to
        # itself comes out ~1e-3, not 0), so it only picks the nearest; the distance to that
        # point is then computed exactly from the difference.
        nearest = torch.cdist(target, block).argmin(dim=1)
        exact = (target - block[nearest]).norm(dim=1)
        best = torch.minimum(best, exact)
    return best


def nearest_distances(
    target: torch.Tensor,
    coreset: torch.Tensor,
    chunk_size: int = 4096,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Distance from each target point to its nearest coreset point: float32 CPU tensor [len(T)].

    Computed on ``device`` (default: CUDA when available) in blocks of ``chunk_size`` target rows
    by ``chunk_size`` coreset rows, so memory stays O(chunk_size**2) whatever |T| and |S| are.
    """
    target = _as_matrix("target", target)
    coreset = _as_matrix("coreset", coreset)
    if len(coreset) == 0:
        raise UserError("the coreset is empty: no distance to its nearest point")
    if target.shape[1] != coreset.shape[1]:
        raise UserError(
            f"target has {target.shape[1]} features per example but the coreset has "
            f"{coreset.shape[1]}"
        )
    if chunk_size < 1:
        raise UserError(f"chunk_size must be at least 1, got {chunk_size}")
    device = _pick_device(device)
    coreset = coreset.to(device=device, dtype=torch.float32)
    out = torch.empty(len(target), dtype=torch.float32)
    for start in range(0, len(target), chunk_size):
        rows = target[start : start + chunk_size].to(device=device, dtype=torch.float32)
        out[start : start + len(rows)] = _chunk_nearest(rows, coreset, chunk_size).cpu()
    return out


def coverage_curve(distances: TensorLike, radii: TensorLike) -> torch.Tensor:
    """Fraction of the target set within distance r of the coreset, for each r in ``radii``.

    Returns float64 [len(radii)], non-decreasing in r, from 0 to 1.
    """
    distances = torch.as_tensor(distances, dtype=torch.float64).flatten()
    radii = torch.as_tensor(radii, dtype=torch.float64).flatten()
    if len(distances) == 0:
        raise UserError("no distances: the target set is empty")
    covered = torch.searchsorted(distances.sort().values, radii, right=True)
    return covered.double() / len(distances)


def default_radii(distances: TensorLike, num: int = 200) -> torch.Tensor:
    """Evenly spaced radii from 0 to the largest distance: the x-axis of a coverage curve."""
    distances = torch.as_tensor(distances, dtype=torch.float64)
    top = float(distances.max()) if len(distances) else 0.0
    return torch.linspace(0.0, top if top > 0 else 1.0, num, dtype=torch.float64)


def aucpr(distances: TensorLike) -> float:
    """AUCpr: the mean nearest distance, i.e. the area above the coverage curve (lower = better)."""
    distances = torch.as_tensor(distances, dtype=torch.float64)
    if len(distances) == 0:
        raise UserError("no distances: the target set is empty")
    return float(distances.mean())
