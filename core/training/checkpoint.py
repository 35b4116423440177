"""Checkpoints and resuming: atomic writes, safe loads (weights_only), RNG states, and the
rule that a run folder is only ever resumed with the settings it was started with."""

import errno
import os

import torch

from core.errors import FileAccessError, UserError, os_reason
from core.file_kinds import check_structure
from core.fileio import atomic_torch_save
from core.run_folder import RunFolder, check_still_held_for, claimed_folder_of
from core.safe_pickle import RefusedGlobal, torch_load
from core.training import distributed as dist_utils


def rng_state() -> dict:
    """The CPU generator's state, and the CUDA generator's of this process's own GPU (the
    current device, which start_process sets) when the run uses CUDA. Only that one: a
    checkpoint must resume on a machine that shows fewer GPUs."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():  # a CPU run never initialises CUDA, even where it exists
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is None or not torch.cuda.is_initialized():
        return
    if isinstance(cuda, (list, tuple)):  # older checkpoints: every visible GPU's state
        current = torch.cuda.current_device()
        cuda = cuda[current] if current < len(cuda) else None
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)


def save_checkpoint(state: dict, path: str) -> None:
    """Write a checkpoint atomically. In a run folder this process claimed, first make sure
    the folder is still its own (``RunFolder.check_still_held``): removed meanwhile, the lock
    is taken again; taken by another run, UserError and nothing is written. A folder removed
    in the middle of the write is taken again and the checkpoint written once more."""
    for attempt in range(2):
        check_still_held_for(path)
        try:
            atomic_torch_save(state, path)
            return
        except FileAccessError as error:
            if attempt or error.errno != errno.ENOENT or not claimed_folder_of(path):
                raise


def load_checkpoint(path: str, kind: str | None = None) -> dict:
    """Load a checkpoint onto the CPU without executing code from it (weights_only=True), and
    check that it holds what its kind needs (``core.file_kinds.check_structure``; the kind is
    told by the file's name unless given: ckpt-last.pt / ckpt-best.pt, td-<task>.pt,
    label-noise.pt, coreset-indices.pt). One-line UserError for a missing, unreadable,
    hostile or incomplete file."""
    if os.path.isdir(path):
        raise UserError(f"checkpoint {path} is a folder, not a file")
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch_load(path)
    except RefusedGlobal as refused:
        raise UserError(
            f"refusing to read checkpoint {path}: it names {refused.name}, which no checkpoint "
            "of this project holds (a file from elsewhere, or tampered with)"
        ) from None
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise UserError(f"cannot read checkpoint {path}: {os_reason(exc)}") from None
    return check_structure(path, state, kind)


def resume_state(run: RunFolder, fingerprint: dict, no_resume: bool) -> dict | None:
    """The checkpoint to resume from, or None to start afresh.

    ``fingerprint`` holds the settings the folder must keep (the number of processes, which
    changes the data order, is added here). Refuses (UserError) a folder that holds a run
    with other settings. Every rank reads the checkpoint itself; all must find the same one.
    """
    fingerprint["world_size"] = dist_utils.world_size()
    state = None
    if not no_resume and os.path.isfile(run.last):
        state = load_checkpoint(run.last)
        old = state.get("fingerprint", {})
        diff = [k for k in sorted(set(old) | set(fingerprint)) if old.get(k) != fingerprint.get(k)]
        if diff:
            k = diff[0]
            raise UserError(
                f"{run.dir} holds a run with other settings ({k}: {old.get(k)!r} "
                f"there, {fingerprint.get(k)!r} now); use --no-resume to overwrite it or "
                "another --task-name"
            )
    position = -1 if state is None else state["position"]["iteration"]
    dist_utils.check_same_on_all_ranks(position, "the checkpoint to resume from")
    return state


def already_finished(run: RunFolder, state: dict | None, outputs_written: bool = True) -> bool:
    """Whether the checkpoint is of a finished run whose outputs are written (and says so):
    nothing is left to do. Finished training without its outputs is not finished: the caller
    resumes it, which trains no step and writes them."""
    if state is None or not state.get("finished"):
        return False
    if not outputs_written:
        if dist_utils.is_main():
            print(f"{run.dir}: training finished earlier but its outputs are missing; writing them")
        return False
    if dist_utils.is_main():
        print(
            f"{run.dir} is already finished (best acc {state['best_acc']:.4f}); "
            "use --no-resume to train it again"
        )
    return True
