"""A run that ends badly loses nothing: diverged training stops with one line, outputs missing
after finished training are written on rerun, --no-resume clears what the old run made, and
scoring refuses data other than those the run trained on (issue 20)."""

import json
import os
import shutil

import pytest
import torch
from conftest import run_script, score_argv, train_argv

pytestmark = pytest.mark.slow  # runs the real scripts in subprocesses


def one_error_line(proc):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    return lines[0]


def test_a_diverging_run_stops_at_once_naming_the_step_and_the_flag(tiny_cifar10, tmp_path):
    argv = train_argv(tiny_cifar10, str(tmp_path), "t", epochs=3, lr=1e6)
    line = one_error_line(run_script(*argv, check=False))
    assert "NaN or infinite at iteration" in line and "--lr" in line and "epoch 1" in line
    assert not os.path.exists(tmp_path / "t" / "metrics.json")


@pytest.fixture(scope="module")
def finished(tiny_cifar10, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("finished"))
    argv = train_argv(tiny_cifar10, base, "all", epochs=2)
    run_script(*argv)
    run_script(*score_argv(base, "all"))
    return base, argv


def test_outputs_missing_after_training_are_written_without_training(finished, tmp_path):
    base, argv = finished
    copy = str(tmp_path / "copy")
    shutil.copytree(base, copy)
    run = f"{copy}/all"
    metrics = json.load(open(f"{run}/metrics.json"))
    td = torch.load(f"{run}/td-all.pt", weights_only=True)
    for name in ("metrics.json", "td-all.pt"):
        os.remove(f"{run}/{name}")
    log_lines = len(open(f"{run}/log-train-all.log").read().splitlines())
    argv = [copy if a == base else a for a in argv]
    out = run_script(*argv).stdout
    assert "training finished earlier but its outputs are missing; writing them" in out
    again = torch.load(f"{run}/td-all.pt", weights_only=True)
    assert all(torch.equal(td["scores"][k], again["scores"][k]) for k in td["scores"])
    rewritten = json.load(open(f"{run}/metrics.json"))
    assert (
        rewritten["best_acc"] == metrics["best_acc"] and rewritten["history"] == metrics["history"]
    )
    new_lines = open(f"{run}/log-train-all.log").read().splitlines()[log_lines:]
    assert not any(line.split("] ", 1)[-1].startswith("epoch ") for line in new_lines)
    assert "already finished" in run_script(*argv).stdout  # and now it is finished


def test_no_resume_clears_the_old_runs_outputs_and_their_scores(finished, tmp_path):
    base, argv = finished
    copy = str(tmp_path / "copy")
    shutil.copytree(base, copy)
    run = f"{copy}/all"
    assert os.path.isfile(f"{run}/data-score-all.pickle")
    argv = [copy if a == base else a for a in argv]
    run_script(*argv, "--no-resume", "--lr", "0.05")
    log = open(f"{run}/log-train-all.log").read()
    assert "--no-resume: removed the earlier run's ckpt-last.pt" in log
    assert "data-score-all.pickle" in log and "features-all.pt" in log
    assert not os.path.exists(f"{run}/data-score-all.pickle")  # scores of the old run
    assert json.load(open(f"{run}/metrics.json"))["args"]["lr"] == 0.05


def test_scoring_refuses_other_data_than_the_run_trained_on(finished, tmp_path):
    base, _ = finished
    from tinydata import write_tiny

    other = str(tmp_path / "other")  # same format and size, other images and labels
    write_tiny("cifar10", other, n_train=400, n_test=200, seed=1)
    argv = score_argv(base, "all", data_dir=other, data_score_path=str(tmp_path / "s.pickle"))
    proc = run_script(*argv, check=False)
    line = one_error_line(proc)
    assert "images and targets differ from those the run" in line and other in line
    assert not os.path.exists(tmp_path / "s.pickle")
