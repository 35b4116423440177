"""TDDS, Dyn-Unc, DUAL and RS2 through the real scripts: recorded by train.py, written by the
scoring script (also from the first K epochs), selected by train.py's coreset modes."""

import json
import pickle

import pytest
import torch
from conftest import coreset_flags, run_script, score_argv, train_argv

from core.data import DeviceLoader
from core.dynamic_selection import RS2Schedule, dual_sample, rs2_epoch_indices

pytestmark = pytest.mark.slow  # runs the real scripts in subprocesses


@pytest.fixture(scope="module")
def scored(tiny_cifar10, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("recent"))
    windows = dict(dynamics_window=3, dynamics_epochs=4, snapshot_epochs=2)
    run_script(*train_argv(tiny_cifar10, base, "all", epochs=4, **windows))
    run_script(*score_argv(base, "all"))
    early = f"{base}/early.pickle"
    run_script(*score_argv(base, "all", score_epochs=2, data_score_path=early))
    with open(f"{base}/all/data-score-all.pickle", "rb") as fh:
        scores = pickle.load(fh)
    return base, scores, early


def coreset(data_dir, base, task, mode, **flags):
    score = f"{base}/all/data-score-all.pickle"
    flags = coreset_flags(mode, 0.25, data_score_path=score, **flags)
    run_script(*train_argv(data_dir, f"{base}/cs", task, iterations=7, **flags))
    metrics = json.load(open(f"{base}/cs/{task}/metrics.json"))
    return metrics, torch.load(f"{base}/cs/{task}/coreset-indices.pt")


def test_the_score_file_holds_the_new_scores_and_their_early_snapshots(scored):
    _, scores, early = scored
    for key in ("tdds", "dyn_unc", "dual", "dual_mean_prob", "accumulated_margin_logits"):
        assert scores[key].dtype == torch.float32 and len(scores[key]) == 400
        assert torch.isfinite(scores[key]).all() and scores[key].abs().sum() > 0, key
    with open(early, "rb") as fh:
        first_two = pickle.load(fh)
    assert torch.equal(first_two["forgetting"], scores["forgetting@2"])
    assert int(first_two["visits"].max()) == 2 and int(scores["visits"].max()) == 4
    assert not any("@" in key for key in first_two)


def test_tdds_and_dyn_unc_keep_their_highest_scores(tiny_cifar10, scored):
    base, scores, _ = scored
    for key in ("tdds", "dyn_unc"):
        metrics, chosen = coreset(
            tiny_cifar10, base, key, "coreset", coreset_key=key, data_score_descending=1
        )
        top = torch.sort(scores[key], descending=True, stable=True).indices[:100]
        assert metrics["method"] == key and torch.equal(chosen, top.sort().values)


def test_dual_samples_with_its_beta(tiny_cifar10, scored):
    base, scores, _ = scored
    metrics, chosen = coreset(tiny_cifar10, base, "dual", "dual", seed=3)
    expected = dual_sample(scores["dual"], 0.25, 3, mean_prob=scores["dual_mean_prob"])
    assert metrics["method"] == "dual" and metrics["coreset"]["dual_c_d"] == 4.0
    assert torch.equal(chosen, expected)


def test_rs2_trains_on_a_fresh_subset_each_epoch(tiny_cifar10, scored):
    base, _, _ = scored
    metrics, chosen = coreset(tiny_cifar10, base, "rs2", "rs2")
    assert metrics["method"] == "rs2" and metrics["coreset_size"] == 100
    assert torch.equal(chosen, rs2_epoch_indices(400, 0.25, 0, seed=0))
    assert metrics["iterations_trained"] == 8  # whole epochs of 100 examples: 4 x 2 batches


def test_the_loader_follows_the_epoch_subsets():
    images = torch.randint(0, 255, (40, 3, 8, 8), dtype=torch.uint8)
    schedule = RS2Schedule(40, 0.25, seed=1)
    loader = DeviceLoader(images, torch.arange(40) % 4, batch_size=4, mean=(0.5,) * 3,
                          std=(0.2,) * 3, augment=True, shuffle=True, seed=0, device="cpu",
                          epoch_subsets=schedule)  # fmt: skip
    seen = []
    for epoch in range(4):  # one pass over the data: every example once
        index = torch.cat([i for i, _, _ in loader.epoch(epoch)])
        assert torch.equal(index.sort().values, schedule.indices(epoch))
        seen.append(index)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(40))
    resumed = torch.cat([i for i, _, _ in loader.epoch(2, start_batch=1)])
    assert torch.equal(resumed, seen[2][4:])
