"""The README's main command, in its smoke profile, on a tiny CIFAR-10 written by the test."""

import json
import os
import subprocess

import pytest
from conftest import ROOT, script_env

pytestmark = pytest.mark.slow  # runs the real scripts in subprocesses

SMOKE_METHODS = {"random", "ccs", "accumulated_margin"}  # the smoke profile's three


def test_quickstart_smoke_writes_table_and_figures(tmp_path):
    from tinydata import write_tiny

    data_dir = tmp_path / "data"
    write_tiny("cifar10", str(data_dir), n_train=1000, n_test=100, seed=0)
    base, out = tmp_path / "runs", tmp_path / "report"
    argv = [
        "bash",
        "scripts/quickstart.sh",
        "--profile",
        "smoke",
        "--data-dir",
        str(data_dir),
        "--base-dir",
        str(base),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    proc = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=600, env=script_env()
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    summary = json.load(open(out / "summary.json"))
    runs = summary["runs"]
    assert {r["method"] for r in runs} == SMOKE_METHODS | {"full"}
    for run in runs:
        if run["method"] != "full":
            assert abs(run["pruning_rate"] - 0.9) < 1e-9 and run["coreset_size"] == 100
            assert 0 <= run["best_acc"] <= 1
    table = open(out / "table.md").read()
    assert "| ccs |" in table and "90%" in table
    for name in ("accuracy.png", "strata.png", "coverage.png"):
        with open(out / name, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n", name
        assert os.path.getsize(out / name) > 10_000
    # the last lines printed are the table and the figure paths
    tail = proc.stdout.strip().splitlines()[-6:]
    assert any(line.endswith("coverage.png") for line in tail), tail

    # rerunning skips every finished run; --methods and a --beta list add only what is new
    more = ["--methods", "random,ccs,accumulated_margin,kcenter", "--beta", "0.3,0.5"]
    again = subprocess.run(
        argv + more, cwd=ROOT, capture_output=True, text=True, timeout=600, env=script_env()
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("already finished") == 4
    runs = json.load(open(out / "summary.json"))["runs"]
    assert {r["method"] for r in runs} == SMOKE_METHODS | {"full", "kcenter"}
    assert sorted(r["mis_ratio"] for r in runs if r["method"] == "ccs") == [0.3, 0.5]
