"""Symmetric label noise: exact flips, carried by the score file, judged in every coreset."""

import json
import pickle

import pytest
import torch
from conftest import coreset_flags, run_script, score_argv, train_argv

from core.data.noise import corrupt_labels, resolve_label_noise
from core.errors import UserError
from core.score_io import load_data_score


def test_the_flip_is_exact():
    targets = torch.arange(1000) % 10
    noise = corrupt_labels(targets, 10, 0.2, seed=3)
    assert int(noise.noisy.sum()) == 200  # exactly round(rate * N)
    assert torch.equal(noise.noisy, noise.targets != targets)
    assert torch.equal(noise.true_targets, targets)
    assert not bool((noise.targets[noise.noisy] == targets[noise.noisy]).any())  # never the true
    assert int(noise.targets.min()) >= 0 and int(noise.targets.max()) <= 9
    again = corrupt_labels(targets, 10, 0.2, seed=3)
    assert torch.equal(again.targets, noise.targets)  # same seed, same flips
    assert not torch.equal(corrupt_labels(targets, 10, 0.2, seed=4).targets, noise.targets)
    assert noise.rate == pytest.approx(0.2)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_flips_are_independent_of_the_coreset_draws(seed):
    """A random coreset and a CCS coreset drawn with the run's --seed keep about the
    dataset's share of mislabeled examples, whatever the two seeds (they once shared one
    random stream: --seed 0 random coresets were all mislabeled under --label-noise-seed 0)."""
    from core.coreset import select_coreset

    n = 10000
    noise = corrupt_labels(torch.arange(n) % 10, 10, 0.2, seed=seed)
    scores = {"accumulated_margin": torch.linspace(0, 1, n), "targets": noise.targets}
    for mode in ("random", "stratified"):
        for coreset_seed in (0, 1, 7):
            kept = select_coreset(
                scores, mode, 0.1, key="accumulated_margin", seed=coreset_seed, num_examples=n
            )
            assert 0.15 < noise.share_in(kept) < 0.25, (mode, coreset_seed)


def test_new_classes_are_spread_over_the_other_classes():
    targets = torch.zeros(20000, dtype=torch.long)
    noise = corrupt_labels(targets, 5, 0.5, seed=0)
    counts = torch.bincount(noise.targets[noise.noisy], minlength=5)
    assert counts[0] == 0 and counts[1:].min() > 0.2 * 10000  # ~2,500 each of classes 1-4


def test_share_in_a_coreset_is_a_hand_count():
    noise = corrupt_labels(torch.arange(10) % 2, 2, 0.3, seed=0)
    chosen = torch.tensor([0, 1, 2, 3])
    assert noise.share_in(chosen) == int(noise.noisy[:4].sum()) / 4


def test_bad_rates_are_refused():
    with pytest.raises(UserError, match="--label-noise"):
        corrupt_labels(torch.zeros(4, dtype=torch.long), 2, 1.0, 0)


def _score_file(tmp_path, noise, n):
    path = tmp_path / "scores.pickle"
    score = {"targets": noise.targets.int(), "accumulated_margin": torch.zeros(n)}
    score.update(noise.score_keys())
    with open(path, "wb") as fh:
        pickle.dump(score, fh)
    return str(path)


def test_a_coreset_run_follows_its_score_file(tmp_path):
    targets = torch.arange(100) % 10
    noise = corrupt_labels(targets, 10, 0.2, seed=0)
    path = _score_file(tmp_path, noise, 100)
    scores = load_data_score(path)
    followed = resolve_label_noise(None, 0, targets, 10, scores, path)
    assert torch.equal(followed.targets, noise.targets)
    assert torch.equal(
        resolve_label_noise(0.2, 5, targets, 10, scores, path).targets, noise.targets
    )
    with pytest.raises(UserError, match="--label-noise 0.4 contradicts"):
        resolve_label_noise(0.4, 0, targets, 10, scores, path)
    with pytest.raises(UserError, match="true labels differ"):
        resolve_label_noise(None, 0, (targets + 1) % 10, 10, scores, path)


@pytest.mark.slow  # runs the real scripts in subprocesses
def test_noisy_chain_end_to_end(tiny_cifar10, tmp_path):
    base = str(tmp_path / "runs")
    run_script(*train_argv(tiny_cifar10, base, "all", epochs=2, label_noise=0.25))
    run_script(*score_argv(base, "all"))
    flips = torch.load(f"{base}/all/label-noise.pt", weights_only=True)
    assert int(flips["noisy"].sum()) == 100  # 25% of 400
    with open(f"{base}/all/data-score-all.pickle", "rb") as fh:
        score = pickle.load(fh)
    assert torch.equal(score["noisy_label"].bool(), flips["noisy"])
    assert torch.equal(score["targets"].long(), flips["targets"])  # the labels trained on
    full = json.load(open(f"{base}/all/metrics.json"))
    assert full["label_noise"] == full["mislabeled_share"] == 0.25

    score_path = f"{base}/all/data-score-all.pickle"

    def coreset_run(task, mode, **flags):
        return train_argv(
            tiny_cifar10,
            f"{base}/c",
            task,
            iterations=3,
            **coreset_flags(mode, 0.5, data_score_path=score_path, **flags),
        )

    run_script(*coreset_run("ccs", "stratified", coreset_key="accumulated_margin", mis_ratio=0.3))
    metrics = json.load(open(f"{base}/c/ccs/metrics.json"))
    indices = torch.load(f"{base}/c/ccs/coreset-indices.pt", weights_only=True)
    assert metrics["mislabeled_share"] == pytest.approx(
        float(flips["noisy"][indices].float().mean())
    )
    assert metrics["label_noise"] == 0.25  # taken from the score file, no flag given

    refused = run_script(*coreset_run("r", "random", label_noise=0.1), check=False)
    assert refused.returncode == 2 and "contradicts" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
