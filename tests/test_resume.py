"""Runs survive being killed: rerunning the same command resumes, and the resumed run sees
every example exactly as often as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, run_script, script_env, train_argv

pytestmark = pytest.mark.slow  # runs the real scripts in subprocesses

EPOCHS = 8


def command(data_dir, base, task, epochs=EPOCHS, **flags):
    return train_argv(data_dir, base, task, epochs=epochs, checkpoint_interval=0, **flags)


def start_and_stop(argv, ckpt, sig):
    """Start a run, wait until its first checkpoint exists, then send it ``sig``."""
    proc = subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
    )
    deadline = time.time() + 120
    while not os.path.exists(ckpt) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    time.sleep(0.2)  # land mid-epoch
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + err


def scores(base, task):
    return torch.load(f"{base}/{task}/td-{task}.pt", weights_only=True)["scores"]


def test_sigkill_then_rerun_resumes(tiny_cifar10, tmp_path):
    base = str(tmp_path)
    argv = command(tiny_cifar10, base, "killed")
    code, _ = start_and_stop(argv, f"{base}/killed/ckpt-last.pt", signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not os.path.exists(f"{base}/killed/metrics.json")
    out = run_script(*argv)
    assert "resuming" in out.stdout
    visits = scores(base, "killed")["visits"]
    assert torch.equal(visits, torch.full_like(visits, EPOCHS))


def test_sigterm_saves_mid_epoch_and_resumes_like_an_uninterrupted_run(tiny_cifar10, tmp_path):
    base = str(tmp_path)
    argv = command(tiny_cifar10, base, "stopped")
    code, output = start_and_stop(argv, f"{base}/stopped/ckpt-last.pt", signal.SIGTERM)
    assert code == 130, output
    assert "run the same command again to resume" in output
    state = torch.load(f"{base}/stopped/ckpt-last.pt", weights_only=True)
    assert not state["finished"]
    out = run_script(*argv)
    assert f"resuming {base}/stopped at iteration {state['position']['iteration']}" in out.stdout
    resumed = scores(base, "stopped")
    assert torch.equal(resumed["visits"], torch.full_like(resumed["visits"], EPOCHS))
    metrics = json.load(open(f"{base}/stopped/metrics.json"))
    assert metrics["wall_time_s"] >= metrics["train_time_s"] > 0  # both sessions counted

    run_script(*command(tiny_cifar10, base, "straight"))
    straight = scores(base, "straight")
    for key in ("visits", "correctness", "forgetting", "last_correctness"):
        assert torch.equal(resumed[key], straight[key]), key
    for key in ("accumulated_margin", "el2n"):
        assert torch.allclose(resumed[key], straight[key], atol=1e-4), key


def test_no_resume_starts_afresh(tiny_cifar10, tmp_path):
    base = str(tmp_path)
    argv = command(tiny_cifar10, base, "again", epochs=1)
    run_script(*argv)
    out = run_script(*command(tiny_cifar10, base, "again", epochs=1, no_resume=True))
    assert "already finished" not in out.stdout and "resuming" not in out.stdout


def test_resuming_with_other_settings_is_refused(tiny_cifar10, tmp_path):
    base = str(tmp_path)
    run_script(*command(tiny_cifar10, base, "other", epochs=1))
    proc = run_script(*command(tiny_cifar10, base, "other", epochs=2), check=False)
    assert proc.returncode == 2 and "--no-resume" in proc.stderr


def test_sigkill_under_the_fast_recipe_resumes_bit_identically(tiny_cifar10, tmp_path):
    """The EMA of the weights and the whitening are in the checkpoint: a killed and resumed
    fast-recipe run ends with the same weights and dynamics as one never interrupted."""
    base = str(tmp_path)
    fast = dict(network="airbench94", recipe="fast", batch_size=64)

    def argv(task):
        return train_argv(tiny_cifar10, base, task, epochs=6, checkpoint_interval=0, **fast)

    run_script(*argv("clean"))
    code, _ = start_and_stop(argv("killed"), f"{base}/killed/ckpt-last.pt", signal.SIGKILL)
    assert code == -signal.SIGKILL
    resumed = run_script(*argv("killed"))
    assert "resuming" in resumed.stdout, resumed.stdout + resumed.stderr
    clean = torch.load(f"{base}/clean/ckpt-last.pt", weights_only=True)
    killed = torch.load(f"{base}/killed/ckpt-last.pt", weights_only=True)
    assert all(torch.equal(clean["model"][k], killed["model"][k]) for k in clean["model"])
    assert "whiten.weight" in clean["model"] and clean["recipe"]["ema"]
    assert all(torch.equal(clean["recipe"]["ema"][k], killed["recipe"]["ema"][k])
               for k in clean["recipe"]["ema"])  # fmt: skip
    a, b = scores(base, "clean"), scores(base, "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    metrics = [json.load(open(f"{base}/{t}/metrics.json")) for t in ("clean", "killed")]
    assert metrics[0]["best_acc"] == metrics[1]["best_acc"]
