"""The one place that names the files of a run folder, ``<base-dir>/<task-name>/``.

Every script and module that reads or writes a run's files asks this class for the path,
so the layout (which follows the reference scripts' names, see docs/FAITHFULNESS.md) is
spelled once.
"""

import atexit
import contextlib
import dataclasses
import os
import socket
import sys

from core.errors import UserError, file_error, signals_deferred
from core.fileio import check_writable_names, is_temp_name
from core.training.distributed import launched_rank

LOCK_NAME = ".lock"


@dataclasses.dataclass(frozen=True)
class RunFolder:
    base_dir: str
    task: str

    @property
    def dir(self) -> str:
        return os.path.join(self.base_dir, self.task)

    def _file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    @property
    def last(self) -> str:
        """Checkpoint to resume from (and the final model once finished)."""
        return self._file("ckpt-last.pt")

    @property
    def best(self) -> str:
        return self._file("ckpt-best.pt")

    @property
    def log(self) -> str:
        return self._file(f"log-train-{self.task}.log")

    @property
    def td(self) -> str:
        """Training-dynamics summary (O(N) per-example totals)."""
        return self._file(f"td-{self.task}.pt")

    @property
    def authors_td(self) -> str:
        """The authors' train.py dynamics log: every batch's fp16 log-softmax (core.authors_td)."""
        return self._file(f"td-{self.task}.pickle")

    @property
    def authors_td_dir(self) -> str:
        """The authors' train_imagenet.py logs, td-<task>-epoch-<i>.pickle for i = 1, 2, ..."""
        return self._file("training-dynamics")

    @property
    def metrics(self) -> str:
        return self._file("metrics.json")

    @property
    def indices(self) -> str:
        """The coreset a coreset run trained on (indices into the training set)."""
        return self._file("coreset-indices.pt")

    @property
    def label_noise(self) -> str:
        """Which training labels a --label-noise run flipped, and their true labels."""
        return self._file("label-noise.pt")

    @property
    def val_indices(self) -> str:
        """The training-set positions a --val-size run held out for validation."""
        return self._file("val-indices.pt")

    @property
    def data_score(self) -> str:
        """Default score file written by generate_importance_score*.py."""
        return self._file(f"data-score-{self.task}.pickle")

    @property
    def features(self) -> str:
        """Penultimate-layer features of the final model (coverage, moderate, D2, k-center)."""
        return self._file(f"features-{self.task}.pt")

    def file_names(self) -> list[str]:
        """The names of every file the project writes into this folder (training, scoring,
        the lock), for ``core.fileio.check_writable_names``."""
        paths = (self.last, self.best, self.log, self.td, self.metrics, self.indices,
                 self.label_noise, self.val_indices, self.data_score, self.features)  # fmt: skip
        return [os.path.basename(p) for p in paths] + [LOCK_NAME]

    def still_held(self) -> bool:
        """Whether this process claimed the folder (``claim_run_folder``) and its lock is
        still its own: False after the folder was removed, or taken by another run."""
        return _still_held(self.dir)

    def check_still_held(self) -> None:
        """Before writing into a claimed folder: if its lock is gone (the folder removed while
        the run went on), take it again and say so; if another process has taken it meanwhile,
        UserError: this run must stop without writing. Nothing to do in a process that did
        not claim the folder. ``save_checkpoint`` and ``RunLog`` call it."""
        _check_still_held(self.dir)


def claim_run_folder(run: RunFolder) -> None:
    """Make the run folder and own it for this process's lifetime: a second run of the same
    task stops with one line naming the first one's PID. A lock left by a process that no
    longer exists (killed, machine rebooted) is stale and taken over, and so are the
    temporary files such a process left half-written.

    First, before anything is made: every file the run will write must fit the filesystem
    (``check_writable_names``: a too long --task-name, a read-only or foreign --base-dir
    stop here with one line, not at the first checkpoint).

    The lock is ``<run>/.lock`` holding "pid host"; it is removed when this process exits,
    and so is the folder if nothing else was written to it. Under torchrun rank 0 holds it.
    If the folder is removed while the run goes on, ``RunFolder.check_still_held`` (called
    before every checkpoint and log line) takes the lock again, or stops the run when
    another process has taken it meanwhile.
    """
    if launched_rank() != 0:
        return
    check_writable_names(run.dir, run.file_names())
    created = _missing_folders(run.dir)
    try:
        os.makedirs(run.dir, exist_ok=True)
    except OSError as error:
        raise file_error(run.dir, "create the run folder", error) from None
    path = os.path.join(run.dir, LOCK_NAME)
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(2):  # the second try follows the removal of a stale lock
        with signals_deferred():  # a lock without its release registered would outlive us
            try:
                _create_lock(path, me)
            except FileExistsError:
                pass
            else:
                _HELD[os.path.abspath(run.dir)] = _Held(path, me)
                atexit.register(_release, path, me, created)
                _remove_stale_temporaries(run)
                return
        owner = _lock_owner(path)
        if owner is not None:
            pid, host = owner
            raise UserError(
                f"{run.dir} is in use by process {pid} on {host} (another run of the same "
                "task); wait for it to finish, stop it, or pick another --task-name"
            )
        try:
            os.unlink(path)  # stale: its process is gone
        except FileNotFoundError:
            pass
        except OSError as error:
            raise file_error(path, "remove the stale lock", error) from None
    raise UserError(f"cannot take the lock {path}; remove it if no run is using {run.dir}")


@dataclasses.dataclass(frozen=True)
class _Held:
    path: str  # the lock file
    me: str  # its content: "pid host"


# the run folders this process claimed: absolute folder -> its lock
_HELD: dict[str, _Held] = {}


def _create_lock(path: str, me: str) -> None:
    """Create the lock file holding ``me``; FileExistsError if it exists, FileAccessError
    (one line naming it) for any other OS error, e.g. a read-only or foreign folder."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise
    except OSError as error:
        raise file_error(path, "create the lock", error) from None
    try:
        os.write(fd, me.encode())
    except OSError as error:
        os.close(fd)
        _unlink_quietly(path)
        raise file_error(path, "write the lock", error) from None
    os.close(fd)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _read_lock(path: str) -> str | None:
    """The lock's content, None when it does not exist (any more)."""
    try:
        with open(path) as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as error:
        raise file_error(path, "read the lock", error) from None


def _remove_stale_temporaries(run: RunFolder) -> None:
    """The temporary files of a killed owner's unfinished atomic writes (SIGKILL leaves
    them): ours now, since this process owns the folder. Only the temporaries of the files
    training writes; anything else in the folder is left alone."""
    ours = {os.path.basename(p) for p in (run.last, run.best, run.td, run.metrics, run.indices,
                                          run.label_noise)}  # fmt: skip
    try:
        names = os.listdir(run.dir)
    except OSError:
        return
    for name in names:
        if is_temp_name(name) and name[1:].rsplit(".", 2)[0] in ours:
            _unlink_quietly(os.path.join(run.dir, name))


def _still_held(run_dir: str) -> bool:
    held = _HELD.get(os.path.abspath(run_dir))
    return held is not None and _read_lock(held.path) == held.me


def _check_still_held(run_dir: str) -> None:
    held = _HELD.get(os.path.abspath(run_dir))
    if held is None:
        return  # not claimed by this process (another rank's, or library use): nothing to keep
    content = _read_lock(held.path)
    if content == held.me:
        return
    if content is None:  # removed with its folder (rm -rf) or alone: nobody owns it now
        try:
            os.makedirs(os.path.dirname(held.path), exist_ok=True)
        except OSError as error:
            raise file_error(os.path.dirname(held.path), "create the run folder", error) from None
        with signals_deferred():
            try:
                _create_lock(held.path, held.me)
            except FileExistsError:
                content = _read_lock(held.path)  # another run was quicker: below
            else:
                print(
                    f"warning: {run_dir} (or its lock) was removed while this run was using "
                    "it; the lock is taken again and the run goes on writing its files there",
                    file=sys.stderr,
                    flush=True,
                )
                return
    owner = " on ".join((content or "?").split(maxsplit=1))
    raise UserError(
        f"{run_dir} now belongs to process {owner} (the folder was removed and another run "
        "started in it?); this run stops without writing, so that two runs never share a "
        "folder"
    )


def _lock_owner(path: str) -> tuple[int, str] | None:
    """(pid, host) of a live owner of the lock, None if the lock is stale or unreadable."""
    try:
        with open(path) as fh:
            pid_text, host = fh.read().split(maxsplit=1)
        pid = int(pid_text)
    except (OSError, ValueError):
        return None  # torn or foreign content: a crash mid-write, treat as stale
    if host != socket.gethostname():
        return pid, host  # cannot check another machine's processes: assume it is alive
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # exists, owned by another user
    return pid, host


def _missing_folders(folder: str) -> list[str]:
    """The folders that making ``folder`` creates, deepest first."""
    missing = []
    folder = os.path.abspath(folder)
    while not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def _release(path: str, me: str, created: list[str]) -> None:
    with contextlib.suppress(OSError):
        with open(path) as fh:
            if fh.read() != me:
                return  # someone took over a lock they judged stale: not ours to remove
        os.unlink(path)
        for folder in created:  # a run that wrote nothing (e.g. its data was missing) leaves
            os.rmdir(folder)  # no folder behind; rmdir refuses a folder that holds anything


def features_beside(score_path: str) -> str:
    """The features file that generate_importance_score*.py writes with a score file: the
    score file's folder is the scored run's folder <base-dir>/<task>, which holds
    features-<task>.pt (RunFolder.features). The rule holds for the default score path
    (data-score-<task>.pickle in the run folder); a score file written elsewhere with
    --data-score-path has no features beside it, so pass the features path explicitly."""
    run_dir = os.path.normpath(os.path.dirname(score_path) or os.curdir)
    task = os.path.basename(os.path.abspath(run_dir))
    if os.path.basename(run_dir) != task:  # "." or "..": the folder's name needs its path
        run_dir = os.path.abspath(run_dir)
    return RunFolder(os.path.dirname(run_dir), task).features  # relative stays relative


def claimed_folder_of(path: str) -> bool:
    """Whether the file ``path`` lies in a run folder this process claimed."""
    return os.path.dirname(os.path.abspath(path)) in _HELD


def check_still_held_for(path: str) -> None:
    """``RunFolder.check_still_held`` for the folder that holds the file ``path``, if this
    process claimed it; nothing otherwise."""
    _check_still_held(os.path.dirname(os.path.abspath(path)))
