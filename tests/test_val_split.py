"""--val-size: the honest protocol. The split is exact, stratified and the same for every
--seed; held-out examples are never trained on, scored or selected; ckpt-best.pt and the
reported number follow validation; a score file of another split is refused; the report
chooses β on validation and says how far the test-chosen numbers sit above."""

import dataclasses
import json
import os
import pickle
import subprocess

import pytest
import torch
from conftest import ROOT, coreset_flags, imagenet_argv, run_script, score_argv, train_argv
from test_report import table_row, write_run

from core.data.datasets import ArrayDataset, DatasetBundle, load_dataset
from core.data.subset import take_train_subset
from core.data.valsplit import (
    SCORE_KEY,
    check_score_file_split,
    class_quotas,
    holdout_positions,
    split_validation,
)
from core.errors import UserError
from core.settings import RunSettings

# ----------------------------------------------------------------------------- the split


def test_quotas_are_proportional_with_an_exact_total():
    counts = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    # exact quotas 2.5, 1.5, 1: floors 2, 1, 1, the one left to the lower of the equal .5s
    assert class_quotas(counts, 5).tolist() == [3, 1, 1]
    targets = torch.arange(1000) % 7
    for size in (1, 6, 7, 100, 999):
        quotas = class_quotas(targets, size)
        assert int(quotas.sum()) == size
        exact = torch.bincount(targets).double() * size / 1000
        assert bool(((quotas - exact).abs() < 1).all())  # each within one of its share


def test_the_split_is_exact_stratified_and_stable():
    generator = torch.Generator().manual_seed(5)
    targets = torch.randint(0, 10, (997,), generator=generator)
    val = holdout_positions(targets, 100)
    assert val.numel() == 100 and val.unique().numel() == 100
    assert torch.equal(val, val.sort().values) and val.dtype == torch.long
    assert torch.equal(torch.bincount(targets[val], minlength=10), class_quotas(targets, 100))
    torch.manual_seed(123)  # the global generator (what --seed sets) plays no part
    assert torch.equal(holdout_positions(targets, 100), val)
    # not the first positions of the permutations other draws seeded 0 make
    assert not torch.equal(val, torch.randperm(997, generator=torch.Generator().manual_seed(0))[:100].sort().values)  # fmt: skip


def test_split_validation_partitions_the_training_set():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 3, 2, 2).contiguous()
    targets = torch.arange(50) % 5
    bundle = DatasetBundle(
        "toy", ArrayDataset(images, targets), ArrayDataset(images[:5], targets[:5]), 5,
        (0.5,) * 3, (0.5,) * 3, False, list("abcde"),
    )  # fmt: skip
    rest, val = split_validation(bundle, 10)
    assert val.size == 10 and len(rest.train) == 40 and val.total == 50
    assert sorted(val.positions.tolist() + val.rest.tolist()) == list(range(50))
    assert torch.equal(val.split.images[:, 0, 0, 0].long(), val.positions)  # the same examples
    assert torch.equal(rest.train.images[:, 0, 0, 0].long(), val.rest)  # in the original order
    assert torch.bincount(val.split.targets).tolist() == [2] * 5
    assert rest.test is bundle.test
    assert split_validation(bundle, 0) == (bundle, None)
    with pytest.raises(UserError, match="--val-size 50 leaves nothing to train on"):
        split_validation(bundle, 50)
    with pytest.raises(UserError, match="--val-size must be 0"):
        split_validation(bundle, -1)


def test_settings_record_the_split_only_when_there_is_one():
    common = dict(script="train.py", dataset="cifar10", network="resnet20", base_dir="b",
                  task_name="t", data_dir="d", epochs=1)  # fmt: skip
    plain, held = RunSettings(**common), RunSettings(**common, val_size=40)
    assert "val_size" not in plain.fingerprint() and "val_size" not in plain.record()
    assert "val_size" not in plain.metrics_record()
    assert held.fingerprint()["val_size"] == held.record()["val_size"] == 40
    assert held.metrics_record()["val_size"] == 40
    assert RunSettings.from_record(held.record()).val_size == 40
    assert RunSettings.from_record(plain.record()).val_size == 0  # folders made before
    with pytest.raises(UserError, match="--val-size"):
        RunSettings(**common, val_size=-3)


def test_a_score_file_of_another_split_is_refused():
    targets = torch.arange(100) % 4
    bundle = DatasetBundle(
        "toy", ArrayDataset(torch.zeros(100, 3, 1, 1, dtype=torch.uint8), targets),
        ArrayDataset(torch.zeros(4, 3, 1, 1, dtype=torch.uint8), targets[:4]), 4,
        (0.5,) * 3, (0.5,) * 3, False, list("abcd"),
    )  # fmt: skip
    _, val20 = split_validation(bundle, 20)
    _, val10 = split_validation(bundle, 10)
    scores20 = {"accumulated_margin": torch.zeros(80), **val20.score_keys()}
    check_score_file_split(scores20, val20, 100, "s.pickle")  # the same split: fine
    check_score_file_split({"el2n": torch.zeros(100)}, None, 100, "s.pickle")  # neither
    check_score_file_split(None, val20, 100, "s.pickle")  # no score file read
    cases = [
        (scores20, val10, "s.pickle was scored with --val-size 20, this run has --val-size 10"),
        (scores20, None, "s.pickle was scored with --val-size 20, this run has no validation"),
        ({"el2n": torch.zeros(100)}, val20, "scored with no validation split, this run has "
         "--val-size 20"),
        ({SCORE_KEY: val20.rest.flip(0)}, val20, "--val-size 20 but other held-out examples"),
    ]  # fmt: skip
    for scores, val, says in cases:
        with pytest.raises(UserError, match=says) as caught:
            check_score_file_split(scores, val, 100, "s.pickle")
        assert "\n" not in str(caught.value)


# ----------------------------------------------------------------------------- the Trainer


def _scripted_trainer(tmp_path, monkeypatch, test_accs, val_accs):
    """A Trainer whose tests and validations read the scripted accuracies in turn; returns
    (trainer, the model's weights at each test point)."""
    from test_trainer import ListLoader
    from torch import nn

    from core.run_folder import RunFolder
    from core.training import trainer as trainer_module
    from core.training.optim import build_scheduler, build_sgd

    model = nn.Linear(2, 2)
    test_loader, val_loader = ListLoader(1), ListLoader(1) if val_accs else None
    scripted = {id(test_loader): iter(test_accs), id(val_loader): iter(val_accs or [])}
    weights = []

    def evaluate(model, loader, device, precision="fp32", topk=(1,), predict=None):
        if loader is test_loader:
            weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return [next(scripted[id(loader)])]

    monkeypatch.setattr(trainer_module, "evaluate", evaluate)
    optimizer = build_sgd(model, 0.1)
    trainer = trainer_module.Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, "cosine", len(test_accs), 1),
        train_loader=ListLoader(1),
        test_loader=test_loader,
        val_loader=val_loader,
        device=torch.device("cpu"),
        run=RunFolder(str(tmp_path), "run"),
        progress=False,
    )
    return trainer, weights


def test_the_reported_checkpoint_is_the_best_validation_one(tmp_path, monkeypatch):
    test_accs, val_accs = [0.5, 0.9, 0.6, 0.7, 0.65], [0.4, 0.6, 0.8, 0.8, 0.7]
    trainer, weights = _scripted_trainer(tmp_path, monkeypatch, test_accs, val_accs)
    result = trainer.fit(5, 1)  # one iteration per epoch, a test after each
    assert result["best_acc"] == 0.9  # the paper's number: the best test point
    # the honest one: the test accuracy where validation was best (the first of equals)
    assert result["test_acc_at_best_val"] == 0.6 and result["best_val_acc"] == 0.8
    assert [e["val_acc"] for e in result["history"]] == [[v] for v in val_accs]
    best = torch.load(trainer.run.best, weights_only=True)
    assert best["iteration"] == 3 and best["acc"] == 0.6 and best["val_acc"] == 0.8
    for name, value in best["model"].items():
        assert torch.equal(value, weights[2][name])  # the model of the third test point


def test_without_a_split_nothing_changes(tmp_path, monkeypatch):
    trainer, weights = _scripted_trainer(tmp_path, monkeypatch, [0.5, 0.9, 0.6], None)
    result = trainer.fit(3, 1)
    assert "test_acc_at_best_val" not in result and "best_val_acc" not in result
    assert all("val_acc" not in entry for entry in result["history"])
    best = torch.load(trainer.run.best, weights_only=True)
    assert best["iteration"] == 2 and best["acc"] == 0.9 and "val_acc" not in best


def test_a_resumed_run_remembers_its_best_validation_point(tmp_path, monkeypatch):
    trainer, _ = _scripted_trainer(tmp_path, monkeypatch, [0.5, 0.6], [0.7, 0.2])
    trainer.fit(2, 1)
    state = torch.load(trainer.run.last, weights_only=False)
    again, _ = _scripted_trainer(tmp_path, monkeypatch, [0.9], [0.5])
    again.load_state_dict(dict(state, finished=False))
    again.position = {"iteration": 2, "epoch": 2, "batch": 0}
    result = again.fit(3, 1)  # one more epoch and test: val 0.5 is below the first's 0.7
    assert result["test_acc_at_best_val"] == 0.5 and result["best_val_acc"] == 0.7


# ----------------------------------------------------------------------------- runs


def _settings(data_dir, base, task, **extra):
    values = dict(script="train.py", dataset="cifar10", network="resnet20", base_dir=base,
                  task_name=task, data_dir=data_dir, batch_size=64, device="cpu",
                  checkpoint_interval=1e9, download=False)  # fmt: skip
    values.update(extra)
    return RunSettings(**values)


def _spy_family():
    """train.py's data family, noting the training images its loader may draw from."""
    import train

    seen = {}

    def loaders(data, settings, indices, device, epoch_subsets=None, augment=True):
        seen["images"] = data.train.images if indices is None else data.train.images[indices]
        return train.loaders(data, settings, indices, device, epoch_subsets, augment)

    return dataclasses.replace(train.CIFAR_FAMILY, loaders=loaders), seen


def _as_set(images):
    return {bytes(image.numpy().tobytes()) for image in images}


@pytest.fixture(scope="module")
def held_out_chain(tiny_cifar10, tmp_path_factory):
    """In this process: a full-data run of 300 of the 400 tiny examples with 30 held out and
    20% label noise, its scores, and a CCS coreset run (another --seed) from them."""
    from core.experiment import train_run
    from core.scoring import score_finished_run

    base = str(tmp_path_factory.mktemp("held-out"))
    common = dict(train_subset=300, val_size=30, label_noise=0.2)
    family, seen = _spy_family()
    assert train_run(_settings(tiny_cifar10, base, "all", epochs=2, **common), family) == 0
    full_images = seen["images"]
    score_finished_run(base_dir=base, task_name="all", device=torch.device("cpu"),
                       download=False)  # fmt: skip
    from core.settings import Selection

    ccs = Selection(mode="stratified", ratio=0.5, mis_ratio=0.1,
                    data_score_path=f"{base}/all/data-score-all.pickle")  # fmt: skip
    settings = _settings(tiny_cifar10, f"{base}/c", "ccs", iterations=2, seed=1, selection=ccs,
                         **common)  # fmt: skip
    assert train_run(settings, family) == 0
    data = take_train_subset(load_dataset("cifar10", tiny_cifar10, download=False), 300)
    return {"base": base, "data": data, "full": full_images, "ccs": seen["images"],
            "settings": settings}  # fmt: skip


@pytest.mark.slow  # trains (in this process, ~20 s for the chain)
def test_no_held_out_example_is_trained_on_scored_or_selected(held_out_chain):
    base, data = held_out_chain["base"], held_out_chain["data"]
    val = torch.load(f"{base}/all/val-indices.pt", weights_only=True)
    assert torch.equal(val, holdout_positions(data.train.targets, 30))  # exact, stratified
    held_out = _as_set(data.train.images[val])
    trained = _as_set(held_out_chain["full"])
    assert len(trained) == 270 and not trained & held_out  # the rest, all of it, nothing else
    td = torch.load(f"{base}/all/td-all.pt", weights_only=True)
    assert td["scores"]["visits"].numel() == 270 and bool((td["scores"]["visits"] == 2).all())
    with open(f"{base}/all/data-score-all.pickle", "rb") as fh:
        scores = pickle.load(fh)
    assert all(len(value) == 270 for value in scores.values())  # N_train - N_val entries
    rest = sorted(set(range(300)) - set(val.tolist()))
    assert scores[SCORE_KEY].tolist() == rest
    kept = torch.load(f"{base}/c/ccs/coreset-indices.pt", weights_only=True)
    assert kept.numel() == 135 and int(kept.max()) < 270  # half of the rest
    selected = _as_set(held_out_chain["ccs"])
    assert len(selected) == 135 and not selected & held_out
    assert selected == _as_set(data.train.images[torch.tensor(rest)[kept]])


@pytest.mark.slow  # trains (in this process, ~20 s for the chain)
def test_label_noise_is_drawn_on_the_training_part_only(held_out_chain):
    base, data = held_out_chain["base"], held_out_chain["data"]
    val = torch.load(f"{base}/all/val-indices.pt", weights_only=True)
    flips = torch.load(f"{base}/all/label-noise.pt", weights_only=True)
    assert flips["noisy"].numel() == 270 and int(flips["noisy"].sum()) == 54  # 20% of 270
    keep = torch.ones(300, dtype=torch.bool)
    keep[val] = False
    assert torch.equal(flips["true_targets"], data.train.targets[keep])
    metrics = json.load(open(f"{base}/all/metrics.json"))
    assert metrics["train_size"] == 270 and metrics["val_size"] == 30
    assert metrics["mislabeled_share"] == pytest.approx(0.2)
    # the coreset run follows its score file's labels and holds the same 30 out (--seed 1)
    assert torch.equal(torch.load(f"{base}/c/ccs/val-indices.pt", weights_only=True), val)


@pytest.mark.slow  # trains (in this process, ~20 s for the chain)
def test_the_runs_record_both_protocols(held_out_chain):
    base = held_out_chain["base"]
    for folder in ("all", "c/ccs"):
        metrics = json.load(open(f"{base}/{folder}/metrics.json"))
        history = metrics["history"]
        assert all(len(entry["val_acc"]) == 1 for entry in history)
        best = max(history, key=lambda entry: entry["val_acc"][0])
        assert metrics["best_val_acc"] == best["val_acc"][0]
        assert metrics["test_acc_at_best_val"] == best["acc"][0]
        assert metrics["best_acc"] == max(entry["acc"][0] for entry in history)
        assert metrics["args"]["val_size"] == 30
        checkpoint = torch.load(f"{base}/{folder}/ckpt-best.pt", weights_only=True)
        assert checkpoint["iteration"] == best["iteration"]
        assert checkpoint["val_acc"] == best["val_acc"][0]


@pytest.mark.slow  # trains (in this process, ~20 s for the chain)
def test_a_coreset_run_of_another_split_is_refused_before_training(held_out_chain, tiny_cifar10):
    from core.experiment import train_run

    settings = held_out_chain["settings"]
    for val_size, says in (
        (20, "this run has --val-size 20"),
        (0, "this run has no validation split"),
    ):
        other = dataclasses.replace(settings, val_size=val_size, task_name=f"other-{val_size}")
        with pytest.raises(UserError, match=f"was scored with --val-size 30, {says}"):
            train_run(other, _spy_family()[0])
        assert not os.path.exists(f"{settings.base_dir}/other-{val_size}/ckpt-last.pt")


# ----------------------------------------------------------------------------- the scripts


@pytest.mark.slow  # the real scripts in subprocesses
def test_val_size_through_the_scripts_and_the_report(tiny_cifar10, tmp_path):
    base = str(tmp_path / "runs")
    full = train_argv(tiny_cifar10, base, "all", epochs=2, val_size=40, iterations_per_testing=1)
    run_script(*full)
    run_script(*score_argv(base, "all"))
    score = f"{base}/all/data-score-all.pickle"
    coreset = dict(iterations=2, **coreset_flags("stratified", 0.5, data_score_path=score))
    for seed, beta in ((0, 0.1), (0, 0.2)):
        task = f"ccs-b{beta}"
        argv = train_argv(tiny_cifar10, f"{base}/c", task, mis_ratio=beta, val_size=40,
                          seed=seed, **coreset)  # fmt: skip
        run_script(*argv)
    refused = run_script(*train_argv(tiny_cifar10, f"{base}/c", "x", **coreset), check=False)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert "scored with --val-size 40, this run has no validation split" in lines[0]
    report = run_script("-m", "core.report", base)
    assert "Test accuracy at the best validation point" in report.stdout
    assert "How far the paper's protocol" in report.stdout


@pytest.mark.slow  # the real scripts in subprocesses
def test_imagenet_holds_out_of_train_and_tests_on_val(tmp_path):
    """train_imagenet.py's --val-size comes out of train/ (ImageNet's val/ stays the test)."""
    from tinydata import write_tiny_imagefolder

    data = write_tiny_imagefolder(str(tmp_path / "inet"), num_classes=4, n_train_per_class=6,
                                  n_val_per_class=2)  # fmt: skip
    base, score = str(tmp_path / "runs"), str(tmp_path / "runs" / "s.pt")
    fast = dict(network="resnet18", batch_size=8, val_size=8)
    run_script(*imagenet_argv(data, base, "full", epochs=1, **fast))
    run_script(*score_argv(base, "full", imagenet=True, data_dir=data, data_score_path=score,
                           workers=0))  # fmt: skip
    val = torch.load(f"{base}/full/val-indices.pt", weights_only=True)
    assert val.numel() == 8
    with open(score, "rb") as fh:
        scores = pickle.load(fh)
    assert all(len(value) == 16 for value in scores.values())
    assert torch.bincount(scores["targets"].long()).tolist() == [4] * 4  # 2 per class held out
    assert not set(scores[SCORE_KEY].tolist()) & set(val.tolist())
    coreset = coreset_flags("stratified", 0.5, data_score_path=score)
    run_script(*imagenet_argv(data, f"{base}/c", "ccs", iterations=2, **fast, **coreset))
    metrics = json.load(open(f"{base}/c/ccs/metrics.json"))
    assert metrics["coreset_size"] == 8 and metrics["train_size"] == 16
    assert len(metrics["history"][0]["val_acc"]) == 2  # top-1 and top-5, as the test's


def test_the_scripts_pass_val_size_to_every_training_command(tmp_path):
    from test_scripts import dry_run

    commands = dry_run("scripts/reproduce_cifar10.sh", "--budget", "short", "--val-size", "500")
    training = [c for c in commands if c[1] == "train.py"]
    assert len(training) > 10
    assert all(c[c.index("--val-size") + 1] == "500" for c in training)
    assert all("cifar10-short-val500" in " ".join(c) for c in commands)  # its own study
    scoring = [c for c in commands if c[1] == "generate_importance_score.py"]
    assert scoring and all("--val-size" not in c for c in scoring)  # read from the run
    plain = dry_run("scripts/reproduce_cifar10.sh", "--budget", "short")
    assert not any("--val-size" in c for c in plain)
    proc = subprocess.run(["bash", "scripts/quickstart.sh", "--val-size", "1x"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --val-size: '1x' is not a whole number"


# ----------------------------------------------------------------------------- the report


@pytest.fixture
def honest_base(tmp_path):
    """A full run and CCS at 90% with β 0.1 and 0.3 over two seeds, all with a validation
    split: β 0.1 has the better best test accuracy, β 0.3 the better validation accuracy."""
    root = tmp_path / "runs"
    honest = dict(val_size=40, args={"val_size": 40})
    write_run(root, "full", "full", 0.0, 0.95, test_acc_at_best_val=0.93, best_val_acc=0.94,
              **honest)  # fmt: skip
    numbers = {  # beta: [(best_acc, test_acc_at_best_val, best_val_acc) per seed]
        0.1: [(0.80, 0.70, 0.60), (0.82, 0.72, 0.62)],
        0.3: [(0.78, 0.76, 0.70), (0.76, 0.74, 0.72)],
    }
    for beta, per_seed in numbers.items():
        for seed, (best, at_val, val) in enumerate(per_seed):
            info = {"mode": "stratified", "key": "accumulated_margin", "ratio": 0.1,
                    "mis_ratio": beta, "strata": 50, "data_score_path": None}  # fmt: skip
            write_run(root, f"ccs-b{beta}-s{seed}", "ccs", 0.9, best, seed, coreset=info,
                      test_acc_at_best_val=at_val, best_val_acc=val, **honest)  # fmt: skip
    return root


def test_the_report_chooses_beta_on_validation_and_shows_the_gap(honest_base):
    from core import report
    from core.report.tables import GAP_TITLE, HONEST_TITLE, markdown_table

    table = markdown_table(report.collect_runs(str(honest_base)))
    paper, rest = table.split(HONEST_TITLE)
    honest, gap = rest.split(GAP_TITLE)
    # the paper's protocol: β 0.1 (mean best test 81.0), chosen on test (†)
    assert table_row(paper, "ccs") == ["—", "81.0 ± 1.4 (n=2) †"]
    assert table_row(paper, "full") == ["95.0", "—"]
    assert "Hard-cut ratio β of ccs per pruning rate: 90%: 0.1." in paper
    # the honest one: β 0.3 (mean validation 71.0 over 61.0), its test at best val 75.0 (‡)
    assert table_row(honest, "ccs") == ["—", "75.0 ± 1.4 (n=2) ‡"]
    assert table_row(honest, "full") == ["93.0", "—"]
    assert "Hard-cut ratio β of ccs per pruning rate, chosen on validation accuracy: 90%: 0.3." in honest  # fmt: skip
    assert "‡ best of several β at that rate, chosen on the mean validation accuracy" in honest
    # how far the test-chosen numbers sit above: 81.0 - 75.0 and 95.0 - 93.0
    assert table_row(gap, "ccs") == ["—", "+6.0"] and table_row(gap, "full") == ["+2.0", "—"]
    assert "sit +4.0 points above the honest ones on average over 2 cells (largest: +6.0, ccs at 90%)" in gap  # fmt: skip
    # the β tables show what each choice read
    _, by_val = gap.split("Best validation accuracy (%) for each hard-cut ratio β:")
    assert table_row(by_val, "ccs β=0.1") == ["61.0 ± 1.4 (n=2)"]
    assert table_row(by_val, "ccs β=0.3") == ["71.0 ± 1.4 (n=2)"]


def test_the_report_without_validation_runs_is_unchanged(tmp_path):
    from core import report
    from core.report.tables import HONEST_TITLE, markdown_table

    plain = tmp_path / "plain"
    write_run(plain, "full", "full", 0.0, 0.95)
    table = markdown_table(report.collect_runs(str(plain)))
    assert HONEST_TITLE not in table and "‡" not in table and "validation" not in table


def test_runs_with_and_without_a_split_are_separate_rows(tmp_path):
    from core import report

    root = tmp_path / "mixed"
    write_run(root, "full", "full", 0.0, 0.95)
    write_run(root, "full-val", "full", 0.0, 0.94, test_acc_at_best_val=0.92,
              best_val_acc=0.93, args={"val_size": 40})  # fmt: skip
    labels = sorted(run["label"] for run in report.collect_runs(str(root)))
    assert labels == ["full val_size=0", "full val_size=40"]
    summary = report.summarise(report.collect_runs(str(root)))
    assert {run["test_acc_at_best_val"] for run in summary["runs"]} == {None, 0.92}
