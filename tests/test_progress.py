"""Piped output gets plain progress lines, never carriage returns."""

from core.training.progress import Progress


def test_piped_progress_prints_plain_lines(capsys):
    progress = Progress(total=10, initial=2, interval_s=0.0)  # pytest's stderr is not a tty
    progress.set_rate("123 img/s")
    for _ in range(3):
        progress.update()
    progress.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 3
    assert lines[-1].startswith("progress: it 5/10 (50%)") and "123 img/s" in lines[-1]
    assert "eta" in lines[-1]


def test_piped_progress_waits_for_its_interval(capsys):
    progress = Progress(total=100, interval_s=3600)
    for _ in range(100):
        progress.update()
    assert capsys.readouterr().err == ""


def test_disabled_progress_is_silent(capsys):
    progress = Progress(total=5, enabled=False, interval_s=0.0)
    progress.update()
    assert capsys.readouterr().err == ""
