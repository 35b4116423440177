"""The README's shortened command chain runs as written (on tiny data, fewer iterations)."""

import os
import re
import subprocess

import pytest
from conftest import ROOT, script_env
from tinydata import write_tiny

pytestmark = pytest.mark.slow  # runs the real scripts in subprocesses


def shortened_block() -> str:
    readme = open(os.path.join(ROOT, "README.md")).read()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    return next(b for b in blocks if "cifar10-short" in b)


def test_readme_shortened_chain_runs(tmp_path):
    write_tiny("cifar10", str(tmp_path / "data"), n_train=300, n_test=50, seed=0)
    script = shortened_block()
    script = script.replace("--train-subset 2000", "--train-subset 200")
    script = script.replace("--epochs 5", "--epochs 2").replace(
        "--iterations 300", "--iterations 4"
    )
    script = script.replace("python ", f"python {ROOT}/").replace(f"python {ROOT}/-m", "python -m")
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,  # ./data and ./data-model are relative to where the user stands
        capture_output=True,
        text=True,
        timeout=600,
        env=script_env(PYTHONPATH=ROOT),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = open(tmp_path / "data-model" / "cifar10-short" / "table.md").read()
    for method in ("ccs", "random", "forgetting"):
        assert f"| {method} |" in table
