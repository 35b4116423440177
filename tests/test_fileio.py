import os
import stat

import pytest

from core.fileio import atomic_json_dump, atomic_write


def test_atomic_write_gives_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_json_dump({"a": 1}, str(tmp_path / "m.json"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.json").st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("old")

    def explode(fh):
        fh.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(str(path), explode)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.json"]


@pytest.mark.parametrize("stage", ["write", "open", "fsync", "replace"])
def test_an_interrupted_write_leaves_no_temporary_and_no_open_file(tmp_path, monkeypatch, stage):
    """Ctrl-C (or SIGTERM, which the report turns into it) at any stage: the old file stays,
    the temporary goes, and its descriptor is closed (it once leaked when interrupted early)."""
    path = tmp_path / "f.json"
    path.write_text("old")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if stage != "write":
        monkeypatch.setattr(os, stage, interrupt)
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(path), interrupt if stage == "write" else lambda fh: fh.write(b"new"))
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.json"]
    assert len(os.listdir("/proc/self/fd")) == open_before
