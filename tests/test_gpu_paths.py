"""The CUDA paths, checked on the CPU with a mocked CUDA: which GPU a process takes, the errors
for GPUs the machine does not show, the RNG state a checkpoint keeps, the stop vote, static
compiled shapes, the /dev/shm warning, and bench/gpu_check.sh's commands."""

import os
import stat
import subprocess
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from conftest import ROOT

from core.errors import UserError
from core.training import checkpoint
from core.training import distributed as dist_utils


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(n)``: CUDA present with n visible GPUs, outside torchrun; returns the devices
    torch.cuda.set_device was called with."""
    calls = []
    for name in ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE", "RANK", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.setattr(torch.cuda, "set_device", calls.append)

    def show(count):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        return calls

    return show


def torchrun_env(monkeypatch, local_rank, processes, visible=None):
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    if visible is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)


# ---- which GPU -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "device_flag,gpuid,expected",
    [("auto", "0", 0), ("auto", "1", 1), ("cuda", "1", 0), ("cuda:1", "0", 1)],
)
def test_single_process_takes_the_gpu_asked_for(gpus, device_flag, gpuid, expected):
    gpus(2)
    assert dist_utils.select_device(device_flag, gpuid) == torch.device("cuda", expected)


@pytest.mark.parametrize(
    "device_flag,gpuid,message",
    [
        ("auto", "1", r"--gpuid 1: this machine shows 1 GPU\(s\) \(0\.\.0\)"),
        ("cuda:1", "0", r"--device cuda:1: this machine shows 1 GPU\(s\) \(0\.\.0\)"),
    ],
)
def test_a_gpu_the_machine_does_not_show_is_a_user_error(gpus, device_flag, gpuid, message):
    gpus(1)
    with pytest.raises(UserError, match=message):
        dist_utils.select_device(device_flag, gpuid)


def test_start_process_makes_the_gpu_current_before_anything_else(gpus):
    calls = gpus(2)
    device = dist_utils.start_process("auto", "1")
    assert device == torch.device("cuda", 1) and calls == [device]
    assert torch.backends.cudnn.benchmark


def test_start_process_leaves_cuda_alone_on_the_cpu(gpus):
    calls = gpus(2)
    assert dist_utils.start_process("cpu", "1") == torch.device("cpu") and not calls


@pytest.mark.parametrize(
    "local_rank,processes,count,visible,expected",
    [
        (3, 4, 4, None, 3),  # every process sees the node's GPUs
        (3, 4, 1, "3", 0),  # each process sees its own GPU only
        (1, 2, 8, None, 1),  # fewer processes than GPUs
    ],
)
def test_torchrun_process_takes_local_rank_modulo_the_visible_gpus(
    gpus, monkeypatch, local_rank, processes, count, visible, expected
):
    gpus(count)
    torchrun_env(monkeypatch, local_rank, processes, visible)
    for device_flag, gpuid in (("auto", "0"), ("cuda:5", "0"), ("cuda", "7")):
        assert dist_utils.select_device(device_flag, gpuid) == torch.device("cuda", expected)


@pytest.mark.parametrize("count,visible", [(2, None), (2, "0,1"), (1, None)])
def test_torchrun_with_more_processes_than_gpus_is_a_user_error(gpus, monkeypatch, count, visible):
    gpus(count)
    torchrun_env(monkeypatch, 0, 4, visible)
    with pytest.raises(UserError, match=f"torchrun started 4 processes .* shows {count} GPU"):
        dist_utils.select_device("auto", "0")
    assert dist_utils.select_device("cpu", "0") == torch.device("cpu")


# ---- RNG state in checkpoints --------------------------------------------------------------
@pytest.fixture
def cuda_rng(monkeypatch):
    """A CUDA in use on ``current[0]``, with per-device generator states and a record of
    the states restored."""
    current, restored = [0], []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current[0])
    monkeypatch.setattr(
        torch.cuda, "get_rng_state", lambda: torch.full((4,), 10 + current[0], dtype=torch.uint8)
    )
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    return current, restored


def test_checkpoint_keeps_the_run_gpus_rng_state_only(cuda_rng, tmp_path):
    current, restored = cuda_rng
    current[0] = 1
    checkpoint.save_checkpoint({"rng": checkpoint.rng_state()}, str(tmp_path / "ckpt.pt"))
    state = checkpoint.load_checkpoint(str(tmp_path / "ckpt.pt"))["rng"]
    assert torch.equal(state["cuda"], torch.full((4,), 11, dtype=torch.uint8))
    current[0] = 0  # resumed where the machine shows one GPU
    checkpoint.set_rng_state(state)
    assert len(restored) == 1 and torch.equal(restored[0], state["cuda"])


def test_older_checkpoints_with_every_gpus_state_still_resume(cuda_rng):
    current, restored = cuda_rng
    states = [torch.full((4,), i, dtype=torch.uint8) for i in range(2)]
    old = {"torch": torch.get_rng_state(), "cuda": states}
    checkpoint.set_rng_state(old)  # on GPU 0: its own state
    current[0] = 3  # a GPU the old checkpoint has no state for: nothing to restore
    checkpoint.set_rng_state(old)
    assert len(restored) == 1 and torch.equal(restored[0], states[0])


def test_cpu_run_keeps_no_cuda_state(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert set(checkpoint.rng_state()) == {"torch"}
    checkpoint.set_rng_state({"torch": torch.get_rng_state(), "cuda": [torch.zeros(4)]})


# ---- the stop vote -------------------------------------------------------------------------
def test_stop_vote_returns_the_previous_votes_outcome(tmp_path):
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        vote = dist_utils.StopVote(torch.device("cpu"))
        assert [vote.vote(stop) for stop in (True, False, False, True, True)] == [
            False,
            True,
            False,
            False,
            True,
        ]
    finally:
        dist.destroy_process_group()


# ---- --compile -----------------------------------------------------------------------------
def test_compiled_model_compiles_each_batch_shape_once_statically():
    """Full and partial batches in both modes: four static graphs, none recompiled later."""
    from core.training.run import COMPILE_OPTIONS

    graphs = []

    def backend(graph, example_inputs):
        static = all(isinstance(t, torch.Tensor) for t in example_inputs)  # no SymInt sizes
        batch = [t.shape[0] for t in example_inputs if static and t.shape[1:] == (3, 8, 8)]
        graphs.append((static, batch))
        return graph.forward

    torch._dynamo.reset()
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(144, 2),
    )
    compiled = torch.compile(model, backend=backend, **COMPILE_OPTIONS)
    for training, batch in [(1, 8), (1, 8), (1, 3), (0, 5), (0, 2), (1, 8), (1, 3), (0, 5)]:
        compiled.train(bool(training))
        compiled(torch.randn(batch, 3, 8, 8))
    torch._dynamo.reset()
    assert graphs == [(True, [8]), (True, [3]), (True, [5]), (True, [2])]


# ---- /dev/shm ------------------------------------------------------------------------------
def test_loader_warns_once_when_dev_shm_is_short(monkeypatch, capsys):
    from core.data import imagenet

    free = 64 * 2**20  # a container's default
    monkeypatch.setattr(imagenet.shutil, "disk_usage", lambda path: SimpleNamespace(free=free))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    imagenet.warn_if_shared_memory_short.cache_clear()
    try:
        need = 16 * imagenet.PREFETCH * 256 * 3 * 224**2
        imagenet.warn_if_shared_memory_short(need)
        imagenet.warn_if_shared_memory_short(need)
        imagenet.warn_if_shared_memory_short(free // 2)
    finally:
        imagenet.warn_if_shared_memory_short.cache_clear()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: DataLoader workers may need 1.1 GiB")


# ---- bench/gpu_check.sh --------------------------------------------------------------------
def test_gpu_check_runs_every_python_command_with_its_python(tmp_path):
    """All stages, on a machine like the lent ones: ``python3`` (here a stub that records its
    commands) and no ``python`` (here one that fails), $PYTHON unset."""
    log, work, out, bin_dir = (
        tmp_path / "log",
        tmp_path / "work",
        tmp_path / "out",
        tmp_path / "bin",
    )
    bin_dir.mkdir()
    write_executable(bin_dir / "python", f'echo "bare python $*" >>"{log}"; exit 1')
    write_executable(
        bin_dir / "python3",
        f'echo "$*" >>"{log}"\n'
        'case "$*" in *core.report*) for f in summary.json table.md accuracy.png; do '
        f'touch "{work}/cifar10-short/$f"; done ;; esac',
    )
    cifar = work / "data" / "cifar10" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    (cifar / "test_batch").touch()  # prepared already
    (work / "cifar10-short").mkdir()
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", GPU_CHECK_WORK=str(work))
    env.pop("PYTHON", None)
    env["OUT"] = str(out)
    proc = subprocess.run(
        ["bash", "bench/gpu_check.sh", "train", "imagenet", "fast", "reproduce"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    commands = log.read_text().splitlines()
    assert not [c for c in commands if c.startswith("bare ")], commands
    scripts = [c.split()[0] for c in commands]
    assert (
        scripts.count("train_imagenet.py") == 2 and scripts.count("train.py") == 2 + 27
    )  # fast: full + one coreset; reproduce: full + 13 methods x 2 rates (recent four too)
    fast = [c for c in commands if "--recipe fast" in c]
    assert len(fast) == 2 and all("--network airbench94" in c for c in fast)
    assert "bench/bench_train.py" in scripts and "-m core.report" in "\n".join(commands)
    assert {name.split("-", 3)[-1] for name in os.listdir(out)} >= {
        "train.log",
        "cifar10-short-summary.json",
        "cifar10-short-table.md",
        "cifar10-short.png",
    }


def write_executable(path, body):
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
