"""A run folder belongs to one process at a time; Ctrl-C outside training is one line."""

import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, script_env

from core.errors import UserError
from core.run_folder import LOCK_NAME, RunFolder, claim_run_folder
from core.training.distributed import run_entry_point

HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from core.run_folder import RunFolder, claim_run_folder
claim_run_folder(RunFolder({base!r}, "t"))
print("claimed", flush=True)
time.sleep({sleep})
"""


def hold_lock(base, sleep=60):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(root=ROOT, base=str(base), sleep=sleep)],
        stdout=subprocess.PIPE,
        text=True,
        env=script_env(),
    )
    assert proc.stdout.readline().strip() == "claimed"
    return proc


def test_a_second_claim_names_the_first_owner(tmp_path):
    holder = hold_lock(tmp_path)
    try:
        with pytest.raises(UserError, match=f"in use by process {holder.pid}"):
            claim_run_folder(RunFolder(str(tmp_path), "t"))
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    holder = hold_lock(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = tmp_path / "t" / LOCK_NAME
    assert lock.exists()  # SIGKILL left it behind
    claim_run_folder(RunFolder(str(tmp_path), "t"))
    assert lock.read_text().split()[0] == str(os.getpid())


def test_a_finished_owner_releases_and_an_empty_folder_goes(tmp_path):
    holder = hold_lock(tmp_path / "new" / "base", sleep=0)
    assert holder.wait() == 0  # a normal exit: atexit releases
    assert not (tmp_path / "new").exists()  # it created these folders and wrote nothing


def test_ctrl_c_outside_training_is_one_line(capsys):
    def main(_args):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stop:
        run_entry_point(main, None)
    assert stop.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: interrupted")
