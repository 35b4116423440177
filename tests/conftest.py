import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)


def script_env(**extra):
    """The environment the tests run scripts in.

    One OpenMP thread per process: on a small shared machine, oversubscribed threads make
    CPU training 5-20x slower, and tiny test models gain nothing from a second thread.
    """
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **extra)


def script_argv(script, **flags):
    """``[script, --flag, value, ...]``: each keyword is a flag, underscores turned to dashes
    (``batch_size=64`` -> ``--batch-size 64``); True is a bare flag (``coreset=True`` ->
    ``--coreset``), None leaves the flag out, any other value is written with str()."""
    argv = [script]
    for name, value in flags.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def train_argv(data_dir, base, task, script="train.py", **flags):
    """train.py (or a script with its flags) on the tiny CIFAR-10 with a small network: the
    tests' usual run. `flags` add to these or replace them (None drops one)."""
    usual = dict(dataset="cifar10", data_dir=data_dir, network="resnet20", batch_size=64)
    return script_argv(script, **{**usual, "base_dir": base, "task_name": task, **flags})


def imagenet_argv(data_dir, base, task, **flags):
    """train_imagenet.py on a tiny ImageFolder: 32-pixel crops decoded in the process."""
    usual = dict(data_dir=data_dir, image_size=32, workers=0)
    return script_argv(
        "train_imagenet.py", **{**usual, "base_dir": base, "task_name": task, **flags}
    )


def score_argv(base, task, imagenet=False, **flags):
    """generate_importance_score.py (or _imagenet.py) on the run <base>/<task>."""
    script = "generate_importance_score_imagenet.py" if imagenet else "generate_importance_score.py"
    return script_argv(script, base_dir=base, task_name=task, **flags)


def coreset_flags(mode, ratio, **flags):
    """The flags of a coreset run (`train_argv(..., **coreset_flags("random", 0.1))`)."""
    return dict(coreset=True, coreset_mode=mode, coreset_ratio=ratio, **flags)


def run_script(*argv, check=True, timeout=600, env=None):
    """Run one of the project's scripts as a user would; returns the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=script_env(**(env or {})),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_cifar10(tmp_path_factory):
    """A data dir holding a small learnable CIFAR-10 in the official python layout."""
    from tinydata import write_tiny

    data_dir = tmp_path_factory.mktemp("data")
    write_tiny("cifar10", str(data_dir), n_train=400, n_test=200, seed=0)
    return str(data_dir)
