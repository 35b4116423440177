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

from core.errors import UserError
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
    def data_score(self) -> str:
        """Default score file written by generate_importance_score*.py."""
        return self._file(f"data-score-{self.task}.pickle")

    @property
    def features(self) -> str:
        """Penultimate-layer features of the final model (coverage, moderate, D2, k-center)."""
        return self._file(f"features-{self.task}.pt")


def claim_run_folder(run: RunFolder) -> None:
    """Make the run folder and own it for this process's lifetime: a second run of the same
    task stops with one line naming the first one's PID. A lock left by a process that no
    longer exists (killed, machine rebooted) is stale and taken over.

    The lock is ``<run>/.lock`` holding "pid host"; it is removed when this process exits,
    and so is the folder if nothing else was written to it. Under torchrun rank 0 holds it.
    """
    if launched_rank() != 0:
        return
    created = _missing_folders(run.dir)
    try:
        os.makedirs(run.dir, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the run folder {run.dir}: {error.strerror}") from None
    path = os.path.join(run.dir, LOCK_NAME)
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(2):  # the second try follows the removal of a stale lock
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(path)
            if owner is not None:
                pid, host = owner
                raise UserError(
                    f"{run.dir} is in use by process {pid} on {host} (another run of the same "
                    "task); wait for it to finish, stop it, or pick another --task-name"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        atexit.register(_release, path, me, created)
        return
    raise UserError(f"cannot take the lock {path}; remove it if no run is using {run.dir}")


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
