"""Nothing lost when a run ends badly (issue 20), at the file and OS level.

Three rules, checked here kind by kind: a file that loads but has the wrong structure is one
line naming it; an OS error on read or write (disk full, read-only, permissions, a folder, a
name too long) is one line naming the file and the errno's meaning, exit 2; nothing overwrites
a file it did not create for that purpose. And signals: SIGTERM is Ctrl-C outside the
Trainer, start-up included; no temporary file or stale lock stays behind.
"""

import errno
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, script_env, train_argv

from core.errors import FileAccessError, Terminated, UserError
from core.file_kinds import check_output_path, kind_by_content, kind_by_name
from core.fileio import (
    atomic_json_dump,
    atomic_pickle_dump,
    atomic_torch_save,
    atomic_write,
    check_writable_names,
)
from core.run_folder import LOCK_NAME, RunFolder, claim_run_folder
from core.score_io import load_data_score, save_data_score
from core.training.checkpoint import load_checkpoint, resume_state, save_checkpoint
from core.training.distributed import run_entry_point


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def ends_with(main, capsys, code=2) -> str:
    """Run ``main`` as a script's entry point; its one stderr line (exit ``code``)."""
    with pytest.raises(SystemExit) as stop:
        run_entry_point(main, None)
    assert stop.value.code == code
    return one_error_line(capsys)


class FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are written (what a full disk
    does); everything else goes to the real file."""

    def __init__(self, fh, room):
        self.fh, self.room = fh, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


@pytest.fixture
def full_disk(monkeypatch):
    """atomic_write's temporary files take 100 bytes, then the disk is full."""
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r": FullDisk(real(fd, mode), 100))


@pytest.fixture
def tmpfs(tmp_path):
    """A real 256 kB filesystem (a tmpfs), or skip where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def no_temporaries(folder) -> bool:
    return not [name for name in os.listdir(folder) if name.endswith(".tmp")]


# ---- rule 2: OS errors are one line naming the file ----------------------------------------
@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/x/ckpt-last.pt"),
        OSError(errno.EROFS, os.strerror(errno.EROFS), "/x/ckpt-last.pt"),
        PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/x/ckpt-last.pt"),
        IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), "/x/ckpt-last.pt"),
        OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), "/x/ckpt-last.pt"),
    ],
    ids=["ENOSPC", "EROFS", "EACCES", "EISDIR", "ENAMETOOLONG"],
)
def test_any_os_error_is_one_line_naming_the_file(capsys, error):
    def main(_args):
        raise error

    assert ends_with(main, capsys) == f"error: /x/ckpt-last.pt: {error.strerror}"


@pytest.mark.parametrize("save", [atomic_torch_save, atomic_pickle_dump, atomic_json_dump])
def test_disk_full_while_writing_is_one_line_and_leaves_the_old_file(
    tmp_path, full_disk, capsys, save
):
    path = tmp_path / "ckpt-last.pt"
    path.write_bytes(b"the previous checkpoint")

    def main(_args):
        save({"weights": list(range(10_000))}, str(path))

    line = ends_with(main, capsys)
    assert line == f"error: {path}: cannot write: No space left on device"
    assert path.read_bytes() == b"the previous checkpoint"
    assert os.listdir(tmp_path) == ["ckpt-last.pt"]  # no temporary left


def test_torch_saves_swallowed_disk_full_is_named(tmp_path, full_disk):
    # torch's zip writer turns the OSError into "unexpected pos ..." unless it is recorded
    with pytest.raises(FileAccessError) as failed:
        atomic_torch_save({"x": torch.zeros(10_000)}, str(tmp_path / "td-t.pt"))
    assert failed.value.errno == errno.ENOSPC and isinstance(failed.value, OSError)
    assert str(failed.value) == f"{tmp_path}/td-t.pt: cannot write: No space left on device"


def test_a_real_full_filesystem(tmpfs):
    atomic_torch_save({"x": torch.zeros(10)}, str(tmpfs / "ckpt-last.pt"))
    before = (tmpfs / "ckpt-last.pt").read_bytes()
    for save in (atomic_torch_save, atomic_pickle_dump):
        with pytest.raises(FileAccessError, match="ckpt-last.pt: cannot write: No space left"):
            save({"x": torch.zeros(200_000)}, str(tmpfs / "ckpt-last.pt"))
        assert (tmpfs / "ckpt-last.pt").read_bytes() == before
        assert os.listdir(tmpfs) == ["ckpt-last.pt"]


def test_a_real_read_only_filesystem(tmpfs):
    os.makedirs(tmpfs / "runs")
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(FileAccessError, match="metrics.json: cannot write: Read-only file system"):
        atomic_json_dump({}, str(tmpfs / "runs" / "metrics.json"))
    with pytest.raises(UserError, match="cannot write: Read-only file system"):
        claim_run_folder(RunFolder(str(tmpfs / "runs"), "t"))
    with pytest.raises(UserError, match="Read-only file system"):
        claim_run_folder(RunFolder(str(tmpfs), "runs"))  # an existing folder, read-only


def test_write_errors_name_the_file(tmp_path, monkeypatch):
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(FileAccessError, match="a-folder: cannot write: Is a directory"):
        atomic_json_dump({}, str(tmp_path / "a-folder"))
    long_name = tmp_path / ("x" * 300)
    with pytest.raises(FileAccessError, match="cannot write: File name too long"):
        atomic_json_dump({}, str(long_name))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(FileAccessError, match="a-file/m.json: cannot write: "):
        atomic_json_dump({}, str(tmp_path / "a-file" / "m.json"))

    def denied(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    with monkeypatch.context() as patched:
        patched.setattr(os, "open", denied)
        with pytest.raises(FileAccessError, match="m.json: cannot write: Permission denied"):
            atomic_json_dump({}, str(tmp_path / "m.json"))
    assert no_temporaries(tmp_path)


def test_a_write_error_is_still_an_os_error(tmp_path, full_disk):
    # e.g. the CINIC-10 cache: skipped in a read-only data folder
    try:
        atomic_write(str(tmp_path / "cache.npy"), lambda fh: np.save(fh, np.zeros(1000)))
    except OSError as error:
        assert error.errno == errno.ENOSPC and error.filename == str(tmp_path / "cache.npy")
    else:
        raise AssertionError("no error")


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit, Terminated])
def test_an_interrupted_write_removes_its_temporary(tmp_path, stop):
    path = tmp_path / "f.json"
    path.write_text("old")

    def interrupted(fh):
        fh.write("partial")
        raise stop()

    with pytest.raises(stop):
        atomic_write(str(path), interrupted, "w")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.json"]


# ---- names checked up front ----------------------------------------------------------------
def test_a_task_name_too_long_for_the_run_files_is_refused_before_anything_is_made(tmp_path):
    base = tmp_path / "runs"
    run = RunFolder(str(base), "t" * 240)  # the folder fits NAME_MAX (255); its files do not
    with pytest.raises(UserError, match="file name too long") as refused:
        claim_run_folder(run)
    assert "\n" not in str(refused.value) and "--task-name" in str(refused.value)
    assert not base.exists()  # nothing made
    with pytest.raises(UserError, match="cannot create the folder: its name is 300 bytes"):
        check_writable_names(str(base / ("t" * 300)), ["ckpt-last.pt"])


def test_names_that_fit_pass(tmp_path):
    run = RunFolder(str(tmp_path / "runs"), "t" * 200)
    check_writable_names(run.dir, run.file_names())
    assert {"ckpt-last.pt", "metrics.json", f"data-score-{run.task}.pickle", LOCK_NAME} <= set(
        run.file_names()
    )
    # the temporary name counts: 242 + 14 > 255
    with pytest.raises(UserError, match="256 bytes while it is written"):
        check_writable_names(str(tmp_path), ["x" * 242])
    check_writable_names(str(tmp_path), ["x" * 242], temporary=False)


def test_names_in_a_file_or_unwritable_folder(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UserError, match="a-file is a file, not a folder"):
        check_writable_names(str(tmp_path / "a-file" / "runs" / "t"), ["ckpt-last.pt"])
    monkeypatch.setattr(os, "access", lambda *_args: False)  # as for a user without rights
    with pytest.raises(UserError, match="cannot write: Permission denied"):
        check_writable_names(str(tmp_path / "runs" / "t"), ["ckpt-last.pt"])


# ---- the run folder's lock -----------------------------------------------------------------
def test_a_read_only_or_denied_run_folder_is_one_line(tmp_path, monkeypatch):
    import core.run_folder as run_folder

    real_open = os.open

    def refusing(path, flags, *args):
        if str(path).endswith(LOCK_NAME):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(run_folder.os, "open", refusing)
    with pytest.raises(UserError) as refused:
        claim_run_folder(RunFolder(str(tmp_path), "t"))
    assert str(refused.value) == (
        f"{tmp_path}/t/{LOCK_NAME}: cannot create the lock: Read-only file system"
    )


HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from core.run_folder import RunFolder, claim_run_folder
claim_run_folder(RunFolder({base!r}, "t"))
print("claimed", flush=True)
time.sleep(60)
"""


def test_a_removed_run_folder_is_taken_again_or_given_up(tmp_path, capsys):
    run = RunFolder(str(tmp_path), "t")
    claim_run_folder(run)
    assert run.still_held()
    save_checkpoint({"model": {}, "acc": 0.1}, run.best)

    shutil.rmtree(run.dir)  # rm -rf while the run goes on, nobody else there: take it again
    assert not run.still_held()
    save_checkpoint({"model": {}, "acc": 0.2}, run.best)
    assert run.still_held() and load_checkpoint(run.best)["acc"] == 0.2
    assert "was removed while this run was using it" in capsys.readouterr().err

    shutil.rmtree(run.dir)  # ... and this time another run starts in it meanwhile
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(root=ROOT, base=str(tmp_path))],
        stdout=subprocess.PIPE,
        text=True,
        env=script_env(),
    )
    try:
        assert other.stdout.readline().strip() == "claimed"
        assert not run.still_held()
        with pytest.raises(UserError, match=f"now belongs to process {other.pid} on "):
            save_checkpoint({"x": 3}, run.last)
        assert not os.path.exists(run.last)  # nothing written into the other run's folder
    finally:
        other.kill()
        other.wait()


def test_a_folder_removed_in_the_middle_of_a_checkpoint_is_written_again(tmp_path, monkeypatch):
    import core.fileio

    run = RunFolder(str(tmp_path), "t")
    claim_run_folder(run)
    real_save, calls = torch.save, []

    def save_while_removed(obj, fh):
        calls.append(1)
        if len(calls) == 1:
            shutil.rmtree(run.dir)  # rm -rf lands while the temporary is being written
        real_save(obj, fh)

    monkeypatch.setattr(core.fileio.torch, "save", save_while_removed)
    save_checkpoint({"model": {}, "acc": 0.3}, run.best)
    monkeypatch.undo()
    assert len(calls) == 2 and run.still_held()
    assert load_checkpoint(run.best)["acc"] == 0.3


def test_a_claim_removes_the_temporaries_a_killed_owner_left(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / ".ckpt-last.pt.0123abcd.tmp").write_bytes(b"half a checkpoint")
    (folder / ".notes.txt.0123abcd.tmp").write_bytes(b"not ours")
    claim_run_folder(RunFolder(str(tmp_path), "t"))
    assert sorted(os.listdir(folder)) == [LOCK_NAME, ".notes.txt.0123abcd.tmp"]


# ---- signals outside the Trainer -----------------------------------------------------------
def test_sigterm_outside_training_is_one_line_and_removes_the_temporary(tmp_path, capsys):
    path = tmp_path / "data-score-t.pickle"
    path.write_bytes(b"old scores")

    def main(_args):
        def write(fh):
            fh.write(b"partial")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises Terminated here

        atomic_write(str(path), write)

    line = ends_with(main, capsys, code=130)
    assert line.startswith("error: interrupted (SIGTERM)")
    assert path.read_bytes() == b"old scores" and os.listdir(tmp_path) == [path.name]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back afterwards


RELEASE_ON_SIGTERM = """
import sys, time
sys.path.insert(0, {root!r})
from core.run_folder import RunFolder, claim_run_folder
from core.training.distributed import run_entry_point

def main(_args):
    claim_run_folder(RunFolder({base!r}, "t"))
    print("claimed", flush=True)
    time.sleep(60)  # scoring, loading data: anything outside the Trainer

sys.exit(run_entry_point(main, None))
"""


def test_sigterm_outside_training_releases_the_lock(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", RELEASE_ON_SIGTERM.format(root=ROOT, base=str(tmp_path / "b"))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
    )
    assert proc.stdout.readline().strip() == "claimed"
    assert (tmp_path / "b" / "t" / LOCK_NAME).exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        "error: interrupted (SIGTERM); files are only ever written whole"
    ]
    assert not (tmp_path / "b").exists()  # lock released, and the empty folders it made


def caught_signals(pid) -> int:
    with open(f"/proc/{pid}/status") as fh:
        line = next(line for line in fh if line.startswith("SigCgt:"))
    return int(line.split()[1], 16)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_start_up_is_one_line(tmp_path, sig):
    argv = train_argv(str(tmp_path / "data"), str(tmp_path / "runs"), "t", epochs=1)
    proc = subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
    )
    # `import core` (train.py's first import, before PyTorch's seconds) catches SIGTERM: wait
    # for that, then interrupt the imports
    deadline = time.time() + 30
    while not caught_signals(proc.pid) & (1 << (signal.SIGTERM - 1)) and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    name = "SIGTERM" if sig == signal.SIGTERM else "Ctrl-C"
    assert proc.returncode == 130, out + err
    assert err.strip().splitlines() == [
        f"error: interrupted ({name}) during start-up; nothing was written"
    ]
    assert not (tmp_path / "runs").exists()


def test_other_programs_importing_core_keep_their_signals():
    code = (
        "import signal, core; print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "
        "signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "True True"


# ---- rule 1: files that load with the wrong structure --------------------------------------
DROP = object()


def our_checkpoint(**changes):
    state = {
        "model": {"w": torch.ones(2)},
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {},
        "dynamics": None,
        "position": {"iteration": 3, "epoch": 1, "batch": 0},
        "best_acc": 0.5,
        "last_acc": 0.5,
        "history": [],
        "train_time_s": 1.0,
        "images_seen": 64,
        "rng": {"torch": torch.get_rng_state()},
        "finished": True,
        "fingerprint": {"world_size": 1},
        "args": {"network": "resnet20", "dataset": "cifar10"},
    }
    state.update(changes)
    return {k: v for k, v in state.items() if v is not DROP}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("td-t.pt", {"foo": 1}, "it lacks 'scores'"),
        ("td-t.pt", torch.ones(3), "it holds a torch.float32 tensor of shape [3]"),
        ("td-t.pt", {"scores": {"visits": torch.ones(3)}, "epochs": 2}, "lacks 'correctness'"),
        ("ckpt-last.pt", our_checkpoint(model=DROP), "it lacks 'model'"),
        ("ckpt-last.pt", our_checkpoint(args=DROP), "holds no run settings"),
        ("ckpt-last.pt", our_checkpoint(position={"epoch": 1}), "'position' lacks"),
        ("ckpt-last.pt", our_checkpoint(args={"lr": 0.1}), "holds no run settings"),
        ("ckpt-last.pt", our_checkpoint(best_acc="high"), "is not a number"),
        ("ckpt-last.pt", [1, 2], "it holds a list"),
        ("ckpt-last.pt", {"model_state_dict": [1]}, "'model_state_dict' is not a dict of tensors"),
        ("ckpt-best.pt", {"acc": 0.5}, "it lacks 'model'"),
        ("label-noise.pt", {"targets": torch.ones(2)}, "lacks 'true_targets'"),
        ("coreset-indices.pt", torch.rand(3), "not the coreset's indices"),
    ],
)
def test_a_file_of_the_wrong_structure_is_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    torch.save(content, path)
    with pytest.raises(UserError, match=re.escape(message)) as refused:
        load_checkpoint(str(path))
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)


def test_well_formed_files_load(tmp_path):
    for name, content in [
        ("ckpt-last.pt", our_checkpoint()),
        ("ckpt-last.pt", {"model_state_dict": {"linear.weight": torch.ones(1)}, "epoch": 3}),
        ("ckpt-best.pt", {"model": {"w": torch.ones(1)}, "acc": 0.5, "iteration": 3}),
        ("label-noise.pt", {k: torch.ones(3) for k in ("targets", "true_targets", "noisy")}),
        ("coreset-indices.pt", torch.arange(3)),
    ]:
        torch.save(content, tmp_path / name)
        load_checkpoint(str(tmp_path / name))
    from core.scores import TrainingDynamics

    dynamics = TrainingDynamics(5, 3)
    torch.save({"scores": dynamics.scores(), "epochs": 1, "el2n_epochs": 10}, tmp_path / "td-t.pt")
    load_checkpoint(str(tmp_path / "td-t.pt"))


def test_resuming_from_an_incomplete_checkpoint_is_one_line(tmp_path):
    run = RunFolder(str(tmp_path), "t")
    os.makedirs(run.dir)
    torch.save(our_checkpoint(position=DROP), run.last)
    with pytest.raises(UserError, match="ckpt-last.pt is not a checkpoint .* lacks 'position'"):
        resume_state(run, {}, no_resume=False)


def test_scoring_a_run_whose_dynamics_file_is_foreign(tmp_path):
    from core.scoring import load_finished_run

    run = RunFolder(str(tmp_path), "t")
    os.makedirs(run.dir)
    torch.save(our_checkpoint(), run.last)
    torch.save({"foo": 1}, run.td)
    with pytest.raises(UserError, match=r"td-t.pt is not a run's training dynamics"):
        load_finished_run(run)


def test_unreadable_files_are_one_line(tmp_path):
    (tmp_path / "ckpt-last.pt").mkdir()
    with pytest.raises(UserError, match="ckpt-last.pt is a folder"):
        load_checkpoint(str(tmp_path / "ckpt-last.pt"))
    (tmp_path / "s.pickle").mkdir()
    with pytest.raises(UserError, match="s.pickle is a folder"):
        load_data_score(str(tmp_path / "s.pickle"))


# ---- scores: finite, and never over another kind of file -----------------------------------
def scores(n=5):
    return {"targets": torch.arange(n, dtype=torch.int32), "el2n": torch.rand(n)}


def test_scores_with_nan_or_inf_are_refused_and_nothing_is_written(tmp_path):
    path = tmp_path / "data-score-t.pickle"
    save_data_score(str(path), scores())
    before = path.read_bytes()
    bad = scores()
    bad["accumulated_margin"] = torch.tensor([0.0, float("nan"), float("inf"), 1.0, float("nan")])
    with pytest.raises(UserError) as refused:
        save_data_score(str(path), bad)
    assert str(refused.value) == (
        f"refusing to write {path}: score 'accumulated_margin' has 3 NaN or infinite value(s) "
        "of 5 (did the training diverge?)"
    )
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]


def write_pickle(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


@pytest.mark.parametrize(
    "name, make, message",
    [
        (
            "ckpt-last.pt",
            lambda p: torch.save(our_checkpoint(), p),
            "that name is the run checkpoint",
        ),  # fmt: skip
        ("ckpt-last.pt", None, "that name is the run checkpoint"),  # not there yet: still refused
        ("metrics.json", lambda p: open(p, "w").write("{}"), "that name is the run's metrics"),
        (
            "td-t.pt",
            lambda p: torch.save({"foo": 1}, p),
            "that name is the run's training dynamics",
        ),  # fmt: skip
        ("features-t.pt", None, "that name is the features file"),
        ("td-t.pickle", None, "authors' scripts"),
        ("data_batch_1", lambda p: write_pickle(p, {"data": 1, "labels": 2}), "dataset file"),
        (
            "mine.pickle",
            lambda p: write_pickle(p, {b"data": np.zeros(2), b"labels": [1]}),
            "it holds a dataset file",
        ),  # fmt: skip
        (
            "mine.pt",
            lambda p: torch.save({"features": torch.ones(2, 2)}, p),
            "it holds a features file",
        ),  # fmt: skip
        ("mine.pt", lambda p: torch.save(our_checkpoint(), p), "it holds a run checkpoint"),
        ("mine.pickle", lambda p: open(p, "w").write("my notes"), "file of unknown content"),
        ("mine.json", lambda p: open(p, "w").write('{"a": 1}'), "it holds a JSON file"),
        ("a-folder", lambda p: os.mkdir(p), "is a folder"),
    ],
)
def test_a_score_file_never_overwrites_another_kind_of_file(tmp_path, name, make, message):
    path = tmp_path / name
    if make is not None:
        make(str(path))
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(UserError, match=message) as refused:
        save_data_score(str(path), scores())
    assert str(path) in str(refused.value)
    assert (path.read_bytes() if path.is_file() else None) == before


def test_a_score_file_replaces_a_score_file(tmp_path):
    for name in ("data-score-t.pickle", "imagenet-data-score.pt", "empty.pickle"):
        path = tmp_path / name
        path.write_bytes(b"")
        save_data_score(str(path), scores())  # an empty file: nothing to lose
        save_data_score(str(path), scores(7))  # ours
        assert len(load_data_score(str(path))["el2n"]) == 7
    torch.save(scores(), tmp_path / "theirs.pt")  # a torch.save'd score dict is a score file
    save_data_score(str(tmp_path / "theirs.pt"), scores())
    check_output_path(str(tmp_path / "features-t.pt"), "features")


def test_kinds_by_name_and_content(tmp_path):
    assert kind_by_name("/r/t/ckpt-best.pt") == "checkpoint"
    assert kind_by_name("/d/cifar-100-python/train") == "dataset"
    assert kind_by_name("/d/elsewhere/train") is None
    assert kind_by_name("/r/t/td-t-epoch-3.pickle") == "authors' training dynamics"
    torch.save(torch.arange(4), tmp_path / "i.pt")
    assert kind_by_content(str(tmp_path / "i.pt")) == "coreset indices"
    torch.save({"scores": {}, "epochs": 1}, tmp_path / "d.pt", _use_new_zipfile_serialization=False)
    assert kind_by_content(str(tmp_path / "d.pt")) == "training dynamics"
    write_pickle(tmp_path / "a.pickle", {"training_dynamics": []})
    assert kind_by_content(str(tmp_path / "a.pickle")) == "authors' training dynamics"
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "x.jpg")
    assert kind_by_content(str(tmp_path / "x.jpg")) == "image"
    np.save(tmp_path / "c.npy", np.zeros(3))
    assert kind_by_content(str(tmp_path / "c.npy")) == "dataset"


# ---- ImageNet: a broken image is skipped and named, not a PIL traceback mid-epoch ----------
@pytest.fixture(scope="module")
def broken_imagefolder(tmp_path_factory):
    """A tiny ImageFolder with one truncated JPEG and one that is not an image at all."""
    from tinydata import write_tiny_imagefolder

    root = write_tiny_imagefolder(
        str(tmp_path_factory.mktemp("imagenet")), num_classes=2, n_train_per_class=6,
        n_val_per_class=2,
    )  # fmt: skip
    from core.data.imagenet import load_imagefolder

    train = load_imagefolder(root).train
    truncated, garbage = train.path(1), train.path(8)
    content = open(truncated, "rb").read()
    open(truncated, "wb").write(content[: len(content) // 2])
    open(garbage, "wb").write(b"this is not a JPEG")
    return root, {1: truncated, 8: garbage}


def imagenet_loader(root, **options):
    from core.data.imagenet import ImageFolderLoader, load_imagefolder

    data = load_imagefolder(root)
    settings = dict(batch_size=4, image_size=16, mean=data.mean, std=data.std, augment=True,
                    shuffle=True, seed=1, device="cpu")  # fmt: skip
    settings.update(options)
    return ImageFolderLoader(data.train, **settings)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_image_is_skipped_and_named_once(broken_imagefolder, capsys, workers):
    import core.data.imagenet as imagenet

    root, broken = broken_imagefolder
    imagenet._REPORTED.clear()
    loader = imagenet_loader(root, workers=workers)
    for epoch in (0, 1):
        batches = list(loader.epoch(epoch))
        assert len(batches) == len(loader)  # the batch boundaries stay: resuming is exact
        seen = sorted(i for index, _, _ in batches for i in index.tolist())
        assert seen == sorted(set(range(12)) - set(broken))
        expected = [[p for p, _ in b if p not in broken] for b in loader.batches(epoch)]
        assert [index.tolist() for index, _, _ in batches] == expected
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 2  # once per file, not per epoch
    for path in broken.values():
        assert sum(path in line and line.startswith("warning: skipping") for line in warnings) == 1
    resumed = list(imagenet_loader(root, workers=workers).epoch(1, start_batch=1))
    assert [i.tolist() for i, _, _ in resumed] == [i.tolist() for i, _, _ in batches[1:]]


def test_a_batch_left_with_too_few_images_is_one_line(broken_imagefolder):
    root, broken = broken_imagefolder
    # two broken of three, and one left of two: BatchNorm needs two to train on
    for indices in ([1, 8, 3], [1, 2]):
        loader = imagenet_loader(root, batch_size=4, indices=torch.tensor(indices))
        with pytest.raises(UserError, match=r"images of a batch are unreadable, e\.g\. .*JPEG"):
            list(loader.epoch(0))


@pytest.mark.slow
def test_train_imagenet_trains_past_a_broken_image(broken_imagefolder, tmp_path):
    from conftest import imagenet_argv, run_script

    root, broken = broken_imagefolder
    argv = imagenet_argv(root, str(tmp_path), "t", image_size=16, batch_size=4, epochs=2)
    proc = run_script(*argv, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: skipping")]
    assert len(warnings) == 2 and all(any(p in w for w in warnings) for p in broken.values())
    td = torch.load(tmp_path / "t" / "td-t.pt", weights_only=True)
    assert td["scores"]["visits"][list(broken)].tolist() == [0, 0]  # never trained on
    assert (td["scores"]["visits"] > 0).sum() == 10


# ---- datasets: corrupt or unreadable files stay one line -----------------------------------
def test_an_empty_decoded_cache_is_rebuilt(tmp_path):
    from tinydata import write_tiny

    from core.data import load_dataset

    root = write_tiny("cinic10", str(tmp_path), n_train=10, n_test=10)
    first = load_dataset("cinic10", str(tmp_path), download=False)
    caches = [name for name in os.listdir(root) if name.endswith(".npy")]
    assert caches
    for name in caches:
        open(os.path.join(root, name), "wb").close()  # EOFError in np.load, once a traceback
    again = load_dataset("cinic10", str(tmp_path), download=False)
    assert torch.equal(first.train.images, again.train.images)
    assert all(os.path.getsize(os.path.join(root, name)) > 0 for name in caches)  # rewritten


def test_a_dataset_file_that_cannot_be_read_names_it(tmp_path):
    from tinydata import write_tiny

    from core.data import load_dataset

    root = write_tiny("cifar10", str(tmp_path), n_train=20, n_test=10)
    batch = os.path.join(root, "cifar-10-batches-py", "test_batch")
    os.remove(batch)
    os.mkdir(batch)
    with pytest.raises(UserError) as refused:
        load_dataset("cifar10", str(tmp_path), download=False)
    assert str(refused.value) == f"{batch}: cannot read: Is a directory"


# ---- the run folder removed under a training run -------------------------------------------
def start_training(argv):
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=script_env())  # fmt: skip


@pytest.mark.slow
def test_rm_rf_under_a_training_run_never_gives_two_runs_in_one_folder(tiny_cifar10, tmp_path):
    """rm -rf of the run folder, then the same command again: whichever claims the folder
    first trains on, the other stops with one line; never both."""
    base = str(tmp_path / "runs")
    argv = train_argv(tiny_cifar10, base, "t", epochs=300, checkpoint_interval=0)
    first = start_training(argv)
    second = None
    try:
        deadline = time.time() + 120
        while not os.path.exists(f"{base}/t/ckpt-last.pt") and time.time() < deadline:
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        shutil.rmtree(f"{base}/t", ignore_errors=True)  # a checkpoint may be being written
        second = start_training(argv)
        deadline = time.time() + 120
        while first.poll() is None and second.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        stopped, going = (first, second) if first.poll() is not None else (second, first)
        assert going.poll() is None  # the other one trains on
        going.send_signal(signal.SIGTERM)
        _, stopped_err = stopped.communicate(timeout=60)
        _, going_err = going.communicate(timeout=120)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert stopped.returncode == 2, stopped_err
    lines = stopped_err.strip().splitlines()
    assert len(lines) == 1 and (
        "now belongs to process" in lines[0] or "is in use by process" in lines[0]
    ), stopped_err
    assert going.returncode == 130, going_err
    assert os.path.exists(f"{base}/t/ckpt-last.pt")  # the one that trained on checkpointed


@pytest.mark.slow
def test_rm_rf_under_a_lone_training_run_loses_nothing(tiny_cifar10, tmp_path):
    base = str(tmp_path / "runs")
    argv = train_argv(tiny_cifar10, base, "t", epochs=4, checkpoint_interval=0)
    proc = start_training(argv)
    deadline = time.time() + 120
    while not os.path.exists(f"{base}/t/ckpt-last.pt") and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    shutil.rmtree(f"{base}/t", ignore_errors=True)  # a checkpoint may be being written
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "was removed while this run was using it" in err
    state = torch.load(f"{base}/t/ckpt-last.pt", weights_only=True)
    assert state["finished"] and os.path.exists(f"{base}/t/metrics.json")
