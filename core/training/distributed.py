"""One home for multi-process training: launch, process group, rank helpers, reductions.

Launch modes (docs/DISTRIBUTED.md):
- ``torchrun --nproc_per_node=N script.py ...``: torchrun sets RANK, LOCAL_RANK, WORLD_SIZE...;
  ``init_from_env`` joins that group (NCCL on CUDA, gloo on CPU).
- ``python script.py --gpuid 0,1 ...`` (the reference's form): ``relaunch_per_gpu`` replaces
  the process with ``torchrun --standalone`` (a rendezvous on this host at a free port) running
  the same command, one process per listed GPU.
- neither: one process; every helper below is a cheap no-op.
"""

import contextlib
import datetime
import os
import signal
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from core.errors import (
    UserError,
    describe_os_error,
    exit_with_error,
    interrupt_message,
    is_startup_handler,
    raise_terminated,
)

# A collective that waits longer than this raises instead of hanging, e.g. when another node
# died. Generous: nothing in training makes one rank wait for another for minutes.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=15)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 alone prints and writes files."""
    return rank() == 0


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class StopVote:
    """Whether any process asked to stop, agreed by all without making the host wait on the
    device. Each ``vote`` starts an asynchronous all-reduce of this process's flag and returns
    the outcome of the previous vote, whose reduction and copy to the host finished long ago:
    every process gets the same answer at the same vote, so all stop at the same iteration."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.flag = torch.zeros(1, device=device)
        self.host = torch.zeros(1, pin_memory=True) if self.cuda else self.flag
        self.done = torch.cuda.Event() if self.cuda else None
        self.work = None

    def vote(self, stop: bool) -> bool:
        previous = self._outcome()
        self.flag.fill_(float(stop))  # a kernel, not a blocking host-to-device copy
        self.work = dist.all_reduce(self.flag, op=dist.ReduceOp.SUM, async_op=True)
        if self.cuda:
            self.work.wait()  # orders the copy after the reduction on the stream; host goes on
            self.host.copy_(self.flag, non_blocking=True)
            self.done.record()
        return previous

    def _outcome(self) -> bool:
        if self.work is None:
            return False
        if self.cuda:
            self.done.synchronize()  # recorded a vote ago: finished unless the host ran far ahead
        else:
            self.work.wait()  # gloo reduced it in the background meanwhile
        return bool(self.host[0] > 0)


# ---- the launcher's environment ------------------------------------------------------------
def launched_world_size() -> int:
    """Processes in the job as torchrun announced them (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's rank as torchrun announced it; usable before (or without) the group."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int | None:
    """This process's index on its node under torchrun, None otherwise."""
    value = os.environ.get("LOCAL_RANK")
    return int(value) if value is not None else None


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ---- starting and ending -------------------------------------------------------------------
def parse_gpu_ids(gpuid: str) -> list[int]:
    """``"0,1"`` -> ``[0, 1]``; UserError for anything else."""
    try:
        ids = [int(part) for part in gpuid.split(",") if part.strip() != ""]
    except ValueError:
        raise UserError(
            f"--gpuid {gpuid!r} must be GPU numbers separated by commas, e.g. 0 or 0,1"
        ) from None
    if not ids or min(ids) < 0 or len(set(ids)) != len(ids):
        raise UserError(f"--gpuid {gpuid!r} must list distinct GPU numbers, e.g. 0 or 0,1")
    return ids


def relaunch_per_gpu(gpuid: str | None, device_flag: str) -> None:
    """``--gpuid 0,1``: restart this command under torchrun with one process per listed GPU.

    Does nothing under torchrun already, for a single id, for ``--device cpu``, or without CUDA
    (then it says so and the caller trains in one process). Otherwise it never returns: the
    process becomes torchrun, which forwards signals to the workers and ends them all when
    one fails.
    """
    if gpuid is None:  # not given: GPU 0 when there is one, silently the CPU otherwise
        return
    ids = parse_gpu_ids(gpuid)
    if local_rank() is not None or device_flag not in ("auto", "cuda"):
        return
    if len(ids) == 1:
        if not torch.cuda.is_available() and device_flag == "auto":
            print(f"--gpuid {gpuid}: CUDA is not available; training on the CPU", flush=True)
        return
    if not torch.cuda.is_available():
        print(
            f"--gpuid {gpuid}: CUDA is not available; training in one process on the CPU",
            flush=True,
        )
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    if max(ids) >= len(visible):
        raise UserError(
            f"--gpuid {gpuid}: this machine shows {len(visible)} GPU(s) (0..{len(visible) - 1})"
        )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(visible[i] for i in ids))
    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // len(ids))))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={len(ids)}",
        sys.argv[0],
        *sys.argv[1:],
    ]
    print(
        f"--gpuid {gpuid}: starting {len(ids)} processes (one per GPU) with torchrun", flush=True
    )  # exec discards unflushed output
    os.execve(sys.executable, command, env)


def init_from_env(device: torch.device) -> None:
    """Join the process group torchrun describes in the environment (no-op without one).

    NCCL when this process trains on a GPU, gloo on the CPU. On the CPU the node's cores are
    shared out between its processes (torchrun's default is one thread each).
    """
    if dist.is_initialized() or launched_world_size() <= 1:
        return
    if device.type == "cuda":
        dist.init_process_group(backend="nccl", timeout=COLLECTIVE_TIMEOUT, device_id=device)
    else:
        torch.set_num_threads(max(1, usable_cores() // local_world_size()))
        dist.init_process_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)


def select_device(device_flag: str, gpuid: str | None) -> torch.device:
    """--device auto means cuda:<first --gpuid> when CUDA is there, else the CPU; under
    torchrun every process takes its own GPU. UserError for a GPU this machine does not show."""
    if device_flag == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        if local_rank() is not None:
            return torch.device("cuda", _torchrun_gpu())
        first = parse_gpu_ids(gpuid or "0")[0]  # --gpuid not given: GPU 0
        return torch.device("cuda", _visible_gpu(first, f"--gpuid {gpuid or 0}"))
    try:
        device = torch.device(device_flag)
    except RuntimeError:
        raise UserError(f"--device {device_flag!r} is not a device (cpu, cuda, cuda:N)") from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise UserError(f"--device {device_flag}: CUDA is not available on this machine")
    if local_rank() is not None:
        return torch.device("cuda", _torchrun_gpu())  # one GPU per process
    return torch.device("cuda", _visible_gpu(device.index or 0, f"--device {device_flag}"))


def _gpus_shown() -> str:
    count = torch.cuda.device_count()
    return f"this machine shows {count} GPU(s)" + (f" (0..{count - 1})" if count else "")


def _visible_gpu(index: int, flag: str) -> int:
    """``index`` if this process sees that GPU (else the driver's raw 'invalid device ordinal'
    would come at the first use)."""
    if index >= torch.cuda.device_count():
        raise UserError(f"{flag}: {_gpus_shown()}")
    return index


def _torchrun_gpu() -> int:
    """This torchrun process's GPU: LOCAL_RANK modulo the GPUs it sees, so that both layouts
    work: every process sees all the node's GPUs (the usual), or only its own (a launcher that
    sets CUDA_VISIBLE_DEVICES per process). More processes than GPUs would put two on one GPU,
    which NCCL refuses with a raw error; say so instead."""
    count, processes = torch.cuda.device_count(), local_world_size()
    own_gpu_only = count == 1 and os.environ.get("CUDA_VISIBLE_DEVICES")
    if count == 0 or (processes > count and not own_gpu_only):
        raise UserError(
            f"torchrun started {processes} processes here but {_gpus_shown()}; "
            f"use --nproc_per_node={max(count, 1)} or fewer (one process per GPU), or --device cpu"
        )
    return local_rank() % count


def start_process(device_flag: str, gpuid: str | None) -> torch.device:
    """This process's device, after relaunching per GPU (``--gpuid 0,1``) and joining the
    process group when there is one (torchrun)."""
    relaunch_per_gpu(gpuid, device_flag)
    device = select_device(device_flag, gpuid)
    if device.type == "cuda":
        # Make it the current device before anything touches CUDA: otherwise work that names
        # no device (pin-memory threads, RNG states) opens a context on GPU 0 as well.
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: pick the fastest kernels once
    init_from_env(device)
    return device


@contextlib.contextmanager
def local_main_first():
    """On each node local rank 0 runs the block first (e.g. a download into a shared folder),
    the node's other ranks after it. If local rank 0 fails, the others wait in the barrier
    until torchrun ends them."""
    first = not is_distributed() or (local_rank() or 0) == 0
    if not first:
        barrier()
    yield
    if first:
        barrier()


def check_same_on_all_ranks(value: int, what: str) -> None:
    """UserError unless every rank passes the same integer (e.g. the resume position)."""
    if not is_distributed():
        return
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if (dist.get_backend() == "nccl")
        else torch.device("cpu")
    )
    span = torch.tensor([value, -value], dtype=torch.int64, device=device)
    dist.all_reduce(span, op=dist.ReduceOp.MAX)
    high, low = span.tolist()  # host sync, once at start-up
    if high != -low:
        raise UserError(
            f"the processes disagree on {what} ({-low} vs {high}); every node must "
            "see the same --base-dir and data (a shared filesystem)"
        )


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not is_distributed():
        return model
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_entry_point(main, args) -> int:
    """Run a script's ``main(args)`` so that however it ends, the user reads one line and no
    traceback: a UserError becomes ``error: ...`` and exit code 2; so does any OSError, naming
    its file and the errno's meaning (``error: /x/ckpt-last.pt: cannot write: No space left on
    device``); Ctrl-C and SIGTERM (raised as ``Terminated``, so that temporary files are
    removed and the run folder's lock released) end with one line and exit code 130. The
    Trainer catches both signals itself during training, checkpoints and returns 130. The
    process group is always left cleanly (a gloo process exiting inside one aborts)."""
    where = f"[rank {launched_rank()}] " if launched_world_size() > 1 else ""
    previous = _take_over_signals()
    try:
        return main(args)
    except UserError as err:
        exit_with_error(where + str(err))
    except OSError as err:  # a file the code did not wrap: still one line naming it
        exit_with_error(where + describe_os_error(err))
    except KeyboardInterrupt as interrupt:  # outside training, which checkpoints and exits 130
        exit_with_error(where + interrupt_message(interrupt), code=130)
    finally:
        try:
            shutdown()
        finally:
            _restore_signals(previous)


def _take_over_signals() -> dict:
    """SIGINT raises KeyboardInterrupt and SIGTERM raises Terminated while ``main`` runs,
    replacing Python's defaults or the start-up handlers of core/__init__.py; a signal set to
    be ignored, or handled by an embedding program, is left as it is. Returns the handlers to
    restore."""
    usual = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    wanted = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: raise_terminated}
    previous = {}
    try:
        for signum, handler in wanted.items():
            current = signal.getsignal(signum)
            if current is usual[signum] or is_startup_handler(current):
                previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: signals are the main thread's business
        pass
    return previous


def _restore_signals(previous: dict) -> None:
    """The handlers from before ``main``; Python's usual ones in place of the start-up
    handlers, whose "nothing was written" no longer holds."""
    usual = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    for signum, handler in previous.items():
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signum, usual[signum] if is_startup_handler(handler) else handler)
