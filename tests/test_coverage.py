"""Known answers for the coverage measure (AUCpr) of core/coverage.py."""

import math

import pytest
import torch

from core.coverage import aucpr, coverage_curve, default_radii, nearest_distances
from core.errors import UserError


def brute_force_distances(target, coreset):
    diff = target.double()[:, None, :] - coreset.double()[None, :, :]
    return diff.norm(dim=2).min(dim=1).values


def test_coreset_equal_to_target_has_zero_aucpr():
    points = torch.randn(300, 16, generator=torch.Generator().manual_seed(0)) * 10
    distances = nearest_distances(points, points, chunk_size=64, device="cpu")
    assert distances.dtype == torch.float32 and distances.device.type == "cpu"
    assert torch.equal(distances, torch.zeros(300))
    assert aucpr(distances) == 0.0


def test_one_dimensional_hand_computed():
    target = torch.tensor([0.0, 1.0, 2.0, 5.0, 10.0])
    coreset = torch.tensor([1.0, 6.0])
    # nearest distances: 1, 0, 1, 1, 4  -> mean 7 / 5
    distances = nearest_distances(target, coreset, chunk_size=2, device="cpu")
    assert distances.tolist() == [1.0, 0.0, 1.0, 1.0, 4.0]
    assert aucpr(distances) == pytest.approx(1.4)
    curve = coverage_curve(distances, [0.0, 0.5, 1.0, 3.9, 4.0, 100.0])
    assert curve.tolist() == pytest.approx([0.2, 0.2, 0.8, 0.8, 1.0, 1.0])


def test_two_dimensional_hand_computed():
    features = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0], [0.0, 1.0]])
    coreset = features[[0, 2]]
    # coreset = rows 0 and 2; distances: 0, 5, 0, 1 -> AUCpr 1.5
    assert aucpr(nearest_distances(features, coreset, device="cpu")) == pytest.approx(1.5)
    # target restricted to rows 1 and 3: (5 + 1) / 2
    value = aucpr(nearest_distances(features[[1, 3]], coreset, device="cpu"))
    assert value == pytest.approx(3.0)


def test_far_away_coreset_covers_worse():
    gen = torch.Generator().manual_seed(1)
    target = torch.randn(200, 8, generator=gen)
    near = target[::10] + 0.01 * torch.randn(20, 8, generator=gen)
    far = near + 50.0
    assert aucpr(nearest_distances(target, far, device="cpu")) > aucpr(
        nearest_distances(target, near, device="cpu")
    )


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000, 4096])
def test_chunking_matches_brute_force(chunk_size):
    gen = torch.Generator().manual_seed(2)
    target = torch.randn(150, 12, generator=gen) * 3 + 5
    coreset = torch.randn(70, 12, generator=gen) * 3 + 5
    expected = brute_force_distances(target, coreset).float()
    got = nearest_distances(target, coreset, chunk_size=chunk_size, device="cpu")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_half_precision_features_are_accepted():
    features = torch.randn(64, 4, generator=torch.Generator().manual_seed(3)).half()
    expected = brute_force_distances(features.float(), features[:8].float()).mean()
    distances = nearest_distances(features, features[:8], device="cpu")
    assert aucpr(distances) == pytest.approx(float(expected), rel=1e-5)


def test_coverage_curve_is_monotone_from_zero_to_one():
    gen = torch.Generator().manual_seed(4)
    target = torch.randn(500, 6, generator=gen)
    distances = nearest_distances(target, target[:25] + 0.5, device="cpu")
    radii = default_radii(distances)
    curve = coverage_curve(distances, radii)
    assert torch.all(curve[1:] >= curve[:-1])
    assert float(curve[0]) == 0.0 and float(curve[-1]) == 1.0
    assert torch.all((curve >= 0) & (curve <= 1))


def test_aucpr_is_the_area_above_the_coverage_curve():
    gen = torch.Generator().manual_seed(5)
    target, coreset = torch.randn(400, 3, generator=gen), torch.randn(30, 3, generator=gen)
    distances = nearest_distances(target, coreset, device="cpu")
    radii = torch.linspace(0, float(distances.max()), 20001, dtype=torch.float64)
    uncovered = 1.0 - coverage_curve(distances, radii)
    area = float(torch.trapezoid(uncovered, radii))
    assert area == pytest.approx(aucpr(distances), rel=1e-3)


def test_bad_inputs_raise_user_errors():
    with pytest.raises(UserError, match="empty"):
        nearest_distances(torch.zeros(3, 2), torch.zeros(0, 2), device="cpu")
    with pytest.raises(UserError, match="features per example"):
        nearest_distances(torch.zeros(3, 2), torch.zeros(3, 4), device="cpu")
    with pytest.raises(UserError, match="empty"):
        aucpr([])
    assert math.isfinite(aucpr([0.5]))
