"""Multi-process training on the CPU (gloo): torchrun with two processes runs both trainers,
sees every example once per epoch, writes from rank 0 only, resumes, and fails cleanly."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import (
    ROOT,
    coreset_flags,
    imagenet_argv,
    run_script,
    score_argv,
    script_env,
    train_argv,
)

from core.score_io import load_data_score

pytestmark = pytest.mark.slow  # runs the real scripts in subprocesses

TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
# Runs a script as if CUDA showed two GPUs, so `--gpuid 0,1` takes the relaunch path; the
# relaunched processes are fresh interpreters that find no CUDA and train on the CPU.
FAKE_TWO_GPUS = (
    "import runpy, sys, torch; torch.cuda.is_available = lambda: True; "
    "torch.cuda.device_count = lambda: 2; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)
RUN_FILES = {"ckpt-last.pt", "ckpt-best.pt", "metrics.json"}


def train_cifar(data_dir, base, task, **flags):
    """train.py's tiny run, at the default batch of 256 unless told, without downloading."""
    return train_argv(data_dir, base, task, **{"batch_size": None, "no_download": True, **flags})


def train_imagenet(data_dir, base, task, **flags):
    return imagenet_argv(data_dir, base, task, network="resnet18", batch_size=16, **flags)


def visits(run_dir, task):
    return torch.load(f"{run_dir}/td-{task}.pt", weights_only=True)["scores"]["visits"]


def assert_rank0_only(proc, run_dir, task):
    """One process printed the run's lines and wrote its files."""
    assert proc.stdout.count("training ") == 1 and "2 process(es)" in proc.stdout, proc.stdout
    assert proc.stdout.count("done: best acc") == 1, proc.stdout
    log = open(f"{run_dir}/log-train-{task}.log").read()
    assert log.count("done: best acc") == 1
    names = set(os.listdir(run_dir))
    assert RUN_FILES <= names and not any(name.startswith(".") for name in names), names


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory):
    from tinydata import write_tiny_imagefolder

    return write_tiny_imagefolder(
        str(tmp_path_factory.mktemp("imagenet")),
        num_classes=6,
        n_train_per_class=10,
        n_val_per_class=4,
    )


def test_train_py_under_torchrun(tiny_cifar10, tmp_path):
    base = str(tmp_path)
    proc = run_script(*TORCHRUN, *train_cifar(tiny_cifar10, base, "ddp", epochs=2, batch_size=64))
    assert_rank0_only(proc, f"{base}/ddp", "ddp")
    assert torch.equal(visits(f"{base}/ddp", "ddp"), torch.full((400,), 2, dtype=torch.int32))
    metrics = json.load(open(f"{base}/ddp/metrics.json"))
    assert metrics["iterations"] == 2 * 7 and metrics["epochs"] == 2  # global batches of 64


def test_one_and_two_processes_pick_the_same_coreset(tiny_cifar10, tmp_path):
    from core.data import load_dataset

    targets = load_dataset("cifar10", tiny_cifar10, download=False).train.targets
    score_path = str(tmp_path / "scores.pickle")
    generator = torch.Generator().manual_seed(1)
    with open(score_path, "wb") as fh:
        pickle.dump(
            {"targets": targets.int(), "accumulated_margin": torch.randn(400, generator=generator)},
            fh,
        )
    flags = dict(
        iterations=2,
        batch_size=32,
        **coreset_flags(
            "stratified",
            0.2,
            coreset_key="accumulated_margin",
            data_score_path=score_path,
            mis_ratio=0.3,
        ),
    )
    run_script(*train_cifar(tiny_cifar10, str(tmp_path), "one", **flags))
    run_script(*TORCHRUN, *train_cifar(tiny_cifar10, str(tmp_path), "two", **flags))
    one = torch.load(tmp_path / "one" / "coreset-indices.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "coreset-indices.pt", weights_only=True)
    assert one.numel() == 80 and torch.equal(one, two)
    # the two ranks trained on that coreset only, each example once: --iterations 2 finishes
    # its epoch of 3 batches (32 + 32 + 16), as the reference does
    seen = visits(tmp_path / "two", "two")
    assert seen.sum() == 80 and set(seen.nonzero().flatten().tolist()) == set(two.tolist())


def test_train_imagenet_under_torchrun_and_scores_on_two_processes(imagefolder, tmp_path):
    base = str(tmp_path)
    proc = run_script(
        *TORCHRUN,
        *train_imagenet(
            imagefolder, base, "full", epochs=2, scheduler="cosine", iterations_per_testing=1
        ),
    )
    run = f"{base}/full"
    assert_rank0_only(proc, run, "full")
    assert torch.equal(visits(run, "full"), torch.full((60,), 2, dtype=torch.int32))
    history = json.load(open(f"{run}/metrics.json"))["history"]
    assert len(history) == 2 and all(len(entry["acc"]) == 2 for entry in history)  # top-1, top-5

    def score(out, **flags):
        return score_argv(
            base,
            "full",
            imagenet=True,
            data_dir=imagefolder,
            workers=0,
            data_score_path=f"{base}/{out}",
            **flags,
        )

    run_script(*score("one.pt"))
    proc = run_script("-c", FAKE_TWO_GPUS, *score("two.pt", gpuid="0,1"))
    assert "starting 2 processes" in proc.stdout and proc.stdout.count("wrote ") == 1
    one, two = load_data_score(f"{base}/one.pt"), load_data_score(f"{base}/two.pt")
    assert set(one) == set(two) and torch.equal(two["visits"], one["visits"])
    for key in ("entropy", "loss", "moderate_distance"):
        assert torch.allclose(one[key], two[key], rtol=1e-4, atol=1e-5), key
    assert (two["moderate_distance"] > 0).all()  # every example's features came from a rank


def test_sigterm_then_rerun_resumes_under_torchrun(tiny_cifar10, tmp_path):
    base, epochs = str(tmp_path), 6
    argv = [
        *TORCHRUN,
        *train_cifar(
            tiny_cifar10, base, "stop", epochs=epochs, batch_size=32, checkpoint_interval=0
        ),
    ]
    job = subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=script_env(),
    )
    deadline = time.time() + 120
    while not os.path.exists(f"{base}/stop/ckpt-last.pt") and time.time() < deadline:
        assert job.poll() is None, job.communicate()[0]
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)  # torchrun passes it on to both workers
    output = job.communicate(timeout=120)[0]
    assert job.returncode != 0 and "run the same command again to resume" in output, output
    state = torch.load(f"{base}/stop/ckpt-last.pt", weights_only=True)
    assert not state["finished"] and state["position"]["iteration"] % 25 == 0

    proc = run_script(*argv)
    assert f"resuming {base}/stop at iteration {state['position']['iteration']}" in proc.stdout
    assert torch.equal(
        visits(f"{base}/stop", "stop"), torch.full((400,), epochs, dtype=torch.int32)
    )


@pytest.mark.parametrize("case", ["rank 0 fails, rank 1 waits", "every rank fails"])
def test_a_failing_rank_ends_the_job(tiny_cifar10, imagefolder, tmp_path, case):
    base = str(tmp_path / "runs")
    if case == "rank 0 fails, rank 1 waits":  # rank 0 reads (or downloads) the data first
        argv, message = (
            train_cifar(str(tmp_path / "nodata"), base, "t", epochs=1),
            ("error: [rank 0] cifar10: expected"),
        )
    else:
        argv, message = (
            train_imagenet(str(tmp_path / "nodata"), base, "t", epochs=1),
            ("error: [rank 1] --data-dir"),
        )
    proc = run_script(*TORCHRUN, *argv, check=False, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert not os.path.exists(base)  # nothing written


# ---- --gpuid 0,1: the relaunch command, without starting it --------------------------------
@pytest.fixture
def fake_gpus(monkeypatch):
    """Four visible GPUs; os.execve records what it would have run instead of running it."""
    from core.training import distributed

    calls = []
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(distributed.torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(distributed.os, "execve", lambda path, argv, env: calls.append((argv, env)))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(sys, "argv", ["train_imagenet.py", "--gpuid", "1,3", "--epochs", "1"])
    return distributed, calls


def test_relaunch_runs_the_same_command_under_torchrun_on_the_listed_gpus(fake_gpus, monkeypatch):
    distributed, calls = fake_gpus
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    distributed.relaunch_per_gpu("1,3", "auto")
    ((argv, env),) = calls
    assert argv[1:] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "train_imagenet.py",
        "--gpuid",
        "1,3",
        "--epochs",
        "1",
    ]
    assert env["CUDA_VISIBLE_DEVICES"] == "5,7"  # --gpuid counts among the visible GPUs


@pytest.mark.parametrize(
    "gpuid,device,launched", [("0", "auto", False), ("0,1", "cpu", False), ("0,1", "cuda", True)]
)
def test_relaunch_only_for_several_gpus_on_cuda(fake_gpus, gpuid, device, launched):
    distributed, calls = fake_gpus
    distributed.relaunch_per_gpu(gpuid, device)
    assert bool(calls) == launched


def test_relaunch_refuses_missing_or_malformed_gpu_ids(fake_gpus):
    from core.errors import UserError

    distributed, calls = fake_gpus
    for gpuid, message in (("0,4", "shows 4 GPU"), ("0,0", "distinct"), ("a", "numbers")):
        with pytest.raises(UserError, match=message):
            distributed.relaunch_per_gpu(gpuid, "auto")
    assert not calls
