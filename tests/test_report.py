"""Known answers for the core.report package on fabricated run folders."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import report

REPO = Path(__file__).resolve().parents[1]
N = 40  # training-set size; example i has the feature vector (i, 0)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def hand_aucpr(indices):
    """Mean over examples 0..N-1 of the distance to the nearest index, on the number line."""
    return sum(min(abs(i - j) for j in indices) for i in range(N)) / N


def write_run(base, name, method, rate, best, seed=0, indices=None, coreset=None, **extra):
    folder = base / name
    folder.mkdir(parents=True)
    metrics = {
        "method": method,
        "pruning_rate": rate,
        "best_acc": best,
        "last_acc": best - 0.01,
        "coreset_size": N if indices is None else len(indices),
        "train_size": N,
        "seed": seed,
        "dataset": "cifar10",
        "network": "resnet18",
        "coreset": coreset,
        "args": {},
        **extra,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if indices is not None:
        torch.save(torch.tensor(indices, dtype=torch.long), folder / "coreset-indices.pt")
    return folder


def ccs_info(ratio, beta, score_path, strata=5):
    """A CCS run's metrics.json "coreset" entry; train.py records the score path as given."""
    return {
        "mode": "stratified",
        "key": "accumulated_margin",
        "ratio": ratio,
        "mis_ratio": beta,
        "mis_key": "accumulated_margin",
        "mis_descending": False,
        "descending": False,
        "class_balanced": False,
        "strata": strata,
        "data_score_path": str(score_path),
    }


def score_file(root):
    """Where the scoring step of the full-data run "full" writes its score file."""
    return root / "full" / "data-score-full.pickle"


CCS_90 = [12, 20, 28, 36]  # all above the hard cut (examples 0..9 have the lowest AUM)
RANDOM_50 = {0: list(range(20)), 1: list(range(0, N, 2))}
FORGETTING_90 = [0, 1, 2, 3]


@pytest.fixture
def base(tmp_path):
    """A base folder with full-data, random (2 seeds), CCS and forgetting runs."""
    root = tmp_path / "runs"
    full = write_run(root, "full", "full", 0.0, 0.95)
    features = torch.stack([torch.arange(N, dtype=torch.float32), torch.zeros(N)], dim=1)
    torch.save(
        {"features": features.half(), "targets": torch.zeros(N, dtype=torch.long)},
        full / "features-full.pt",
    )
    data_score = {
        "accumulated_margin": torch.linspace(-1, 1, N),
        "targets": torch.zeros(N, dtype=torch.int32),
    }
    with open(score_file(root), "wb") as fh:
        pickle.dump(data_score, fh)
    for seed, best in ((0, 0.90), (1, 0.92)):
        write_run(root, f"random-50-s{seed}", "random", 0.5, best, seed, RANDOM_50[seed])
    write_run(root, "ccs-90", "ccs", 0.9, 0.80, 0, CCS_90, ccs_info(0.1, 0.25, score_file(root)))
    write_run(root, "forgetting-90", "forgetting", 0.9, 0.40, 0, FORGETTING_90)
    return root


def table_row(table, label):
    """The cells of the first table row whose method is ``label``."""
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in\n{table}")


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


def test_collect_runs_sorts_by_method_rate_seed(base):
    runs = report.collect_runs(str(base))
    order = [(run["method"], run["pruning_rate"], run["seed"]) for run in runs]
    assert order == [
        ("full", 0.0, 0),
        ("random", 0.5, 0),
        ("random", 0.5, 1),
        ("ccs", 0.9, 0),
        ("forgetting", 0.9, 0),
    ]
    assert runs[3]["run_dir"] == "ccs-90" and runs[3]["mis_ratio"] == 0.25


def test_report_writes_summary_table_and_figures(base, tmp_path, capsys):
    out = tmp_path / "report"
    report.main([str(base), "--out", str(out), "--device", "cpu"])
    printed = capsys.readouterr().out
    for name in ("summary.json", "table.md", "accuracy.png", "strata.png", "coverage.png"):
        assert f"wrote {out / name}" in printed
    for name in ("accuracy.png", "strata.png", "coverage.png"):
        assert_png(out / name)

    summary = json.loads((out / "summary.json").read_text())
    runs = {run["run_dir"]: run for run in summary["runs"]}
    assert [run["method"] for run in summary["runs"]] == [
        "full",
        "random",
        "random",
        "ccs",
        "forgetting",
    ]
    assert runs["full"]["aucpr"] is None
    assert runs["random-50-s0"]["aucpr"] == pytest.approx(hand_aucpr(RANDOM_50[0]))  # 5.25
    assert runs["random-50-s1"]["aucpr"] == pytest.approx(hand_aucpr(RANDOM_50[1]))  # 0.5
    assert runs["ccs-90"]["aucpr"] == pytest.approx(hand_aucpr(CCS_90))  # 3.3
    assert runs["forgetting-90"]["aucpr"] == pytest.approx(16.65)
    assert runs["random-50-s1"]["train_size"] == N and runs["ccs-90"]["coreset_size"] == 4
    assert "git_commit" in summary["generated_by"]
    assert summary["generated_by"]["features"].endswith("features-full.pt")

    table = (out / "table.md").read_text()
    assert table in printed
    header = next(line for line in table.splitlines() if line.startswith("| method"))
    assert header == "| method | 0% | 50% | 90% |"
    assert table_row(table, "full") == ["95.0", "—", "—"]
    # seeds 90% and 92%: mean 91.0, sample std 2 / sqrt(2) = 1.41
    assert table_row(table, "random") == ["—", "91.0 ± 1.4 (n=2)", "—"]
    assert table_row(table, "ccs") == ["—", "—", "80.0"]
    assert table_row(table, "forgetting")[2] == "40.0"
    aucpr_table = table.split("AUCpr")[1]
    assert table_row(aucpr_table, "random")[0] == "2.875 ± 3.359 (n=2)"
    assert table_row(aucpr_table, "ccs")[1] == "3.300"
    assert "β of ccs per pruning rate: 90%: 0.25" in table


def test_strata_counts_follow_the_hard_cut():
    data_score = {"accumulated_margin": torch.linspace(-1, 1, N)}
    info = ccs_info(0.1, 0.25, "unused")
    counts = report.strata_counts(data_score, info, torch.tensor(CCS_90))
    assert len(counts["edges"]) == 6 and int(counts["sizes"].sum()) == N - 10
    assert int(counts["taken"].sum()) == 4 and counts["picked_in_cut"] == 0
    assert sorted(counts["cut_scores"].tolist()) == pytest.approx(
        torch.linspace(-1, 1, N)[:10].double().tolist()
    )
    assert float(counts["edges"][0]) == pytest.approx(float(torch.linspace(-1, 1, N)[10]))


def test_coverage_rate_flag_and_beta_sweep(base, tmp_path, capsys):
    info = ccs_info(0.1, 0.0, score_file(base))
    write_run(base, "ccs-90-b0", "ccs", 0.9, 0.70, 0, [2, 12, 22, 32], info)
    out = tmp_path / "report"
    report.main([str(base), "--out", str(out), "--coverage-rate", "0.5", "--device", "cpu"])
    table = (out / "table.md").read_text()
    assert table_row(table, "ccs") == ["—", "—", "80.0 †"]  # beta 0.25 beats beta 0 (70.0)
    assert table_row(table, "ccs β=0") == ["70.0"]
    assert table_row(table, "ccs β=0.25") == ["80.0"]
    assert_png(out / "coverage.png")
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(base), "--out", str(out), "--coverage-rate", "0.3"])
    assert exit_info.value.code == 2
    assert "--coverage-rate 0.3" in capsys.readouterr().err


def test_missing_pieces_skip_figures_with_a_note(tmp_path, capsys):
    root = tmp_path / "runs"
    write_run(root, "full", "full", 0.0, 0.95)
    write_run(root, "ccs-90", "ccs", 0.9, 0.80, 0, None, ccs_info(0.1, 0.25, score_file(root)))
    (root / "broken").mkdir()
    (root / "broken" / "metrics.json").write_text("{not json")
    (root / "null-rate").mkdir()
    (root / "null-rate" / "metrics.json").write_text(
        json.dumps({"method": "random", "pruning_rate": None, "best_acc": 0.5})
    )
    report.main([str(root)])
    printed = capsys.readouterr().out
    assert "note: skipping" in printed and "malformed entry" in printed
    assert "no coverage.png" in printed
    assert "no strata.png" in printed
    assert_png(root / "accuracy.png")
    assert not (root / "coverage.png").exists() and not (root / "strata.png").exists()
    summary = json.loads((root / "summary.json").read_text())
    assert [run["aucpr"] for run in summary["runs"]] == [None, None]


def test_no_metrics_is_a_user_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no usable metrics.json")


def test_explicit_missing_features_is_a_user_error(base, capsys):
    with pytest.raises(SystemExit):
        report.main([str(base), "--features", str(base / "nope.pt")])
    assert capsys.readouterr().err.startswith("error: --features")


@pytest.mark.slow  # runs python -m core.report in a subprocess
def test_command_line_entry_point(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "full", "full", 0.0, 0.95)
    done = subprocess.run(
        [sys.executable, "-m", "core.report", str(root)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(f"wrote {root / 'accuracy.png'}")
    assert "| full | 95.0 |" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "core.report", str(tmp_path / "none")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")


def test_datasets_get_their_own_sections(base, tmp_path):
    write_run(base, "c100-full", "full", 0.0, 0.78, dataset="cifar100")
    info = ccs_info(0.1, 0.3, base / "c100-full" / "data-score-c100-full.pickle")
    write_run(base, "c100-ccs-90", "ccs", 0.9, 0.55, 0, None, info, dataset="cifar100")
    runs = report.collect_runs(str(base))
    table = report.markdown_table(runs)
    c10, c100 = table.split("### cifar100 / resnet18")
    assert "### cifar10 / resnet18" in c10
    assert table_row(c100, "ccs") == ["—", "55.0"] and table_row(c10, "ccs") == ["—", "—", "80.0"]
    report.plot_accuracy(runs, str(tmp_path / "accuracy.png"))
    assert_png(tmp_path / "accuracy.png")


def test_missing_recorded_files_are_named_in_notes(base, tmp_path, capsys):
    score_file(base).unlink()
    out = tmp_path / "report"
    report.main([str(base), "--out", str(out), "--device", "cpu"])
    printed = capsys.readouterr().out
    note = next(line for line in printed.splitlines() if "no strata.png" in line)
    assert note.startswith("note: ") and str(score_file(base)) in note
    assert_png(out / "coverage.png")  # the features beside it are still there
    (base / "full" / "features-full.pt").unlink()
    report.main([str(base), "--out", str(out), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert f"features file {base / 'full' / 'features-full.pt'} is missing" in printed
    assert "note: no coverage.png" in printed


def test_features_are_found_only_beside_a_recorded_or_given_score_file(tmp_path, capsys):
    root = tmp_path / "runs"
    full = write_run(root, "full", "full", 0.0, 0.95)
    features = torch.stack([torch.arange(N, dtype=torch.float32), torch.zeros(N)], dim=1)
    torch.save({"features": features}, full / "features-full.pt")
    score_file(root).write_bytes(pickle.dumps({"accumulated_margin": torch.zeros(N)}))
    write_run(root, "random-50", "random", 0.5, 0.9, 0, RANDOM_50[0])  # records no score file
    out = tmp_path / "report"
    report.main([str(root), "--out", str(out), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "no run records the score file" in printed and "pass --features" in printed
    assert not (out / "coverage.png").exists()
    report.main([str(root), "--out", str(out), "--data-score", str(score_file(root))])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"][1]["aucpr"] == pytest.approx(hand_aucpr(RANDOM_50[0]))
    assert summary["generated_by"]["features"] == str(full / "features-full.pt")
    assert_png(out / "coverage.png")


def test_explicit_missing_score_file_is_a_user_error(base, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(base), "--data-score", str(base / "nope.pickle")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --data-score") and "nope.pickle" in err[0]


def test_unfinished_and_unreadable_runs_are_listed_not_dropped(base, tmp_path, capsys):
    unfinished = os.path.join(base, "coresets", "ccs-0.7-s5")
    os.makedirs(unfinished)
    with open(os.path.join(unfinished, "ckpt-last.pt"), "wb") as fh:
        fh.write(b"not read by the report")
    broken = os.path.join(base, "coresets", "broken")
    os.makedirs(broken)
    with open(os.path.join(broken, "metrics.json"), "w") as fh:
        fh.write("{")
    table, _ = report.make_report(base, str(tmp_path / "out"))
    assert "Not in the table:" in table
    assert "`coresets/ccs-0.7-s5`: unfinished" in table and "`coresets/broken`" in table
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    left = {r["run_dir"] for r in summary["generated_by"]["left_out"]}
    assert left == {"coresets/ccs-0.7-s5", "coresets/broken"}
    assert "skipping coresets/ccs-0.7-s5" in capsys.readouterr().out


def test_label_noise_runs_get_a_mislabeled_column_and_figure(tmp_path):
    root = tmp_path / "noisy"
    write_run(root, "full", "full", 0.0, 0.9, label_noise=0.2, mislabeled_share=0.2)
    for seed, share in ((0, 0.05), (1, 0.07)):
        write_run(root, f"ccs-s{seed}", "ccs", 0.9, 0.8, seed, None, None, mislabeled_share=share)
    write_run(root, "random", "random", 0.9, 0.7, 0, None, None, mislabeled_share=0.21)
    table, written = report.make_report(str(root), str(tmp_path / "out"))
    assert "Mislabeled share" in table
    assert "| ccs | — | 6.0 ± 1.4 (n=2) |" in table and "| random | — | 21.0 |" in table
    assert_png(tmp_path / "out" / "mislabeled.png")


def test_runs_of_different_precisions_are_never_averaged_together(tmp_path):
    root = tmp_path / "mixed"
    write_run(root, "random-fp32", "random", 0.9, 0.40, 0, precision="fp32")
    write_run(root, "random-bf16", "random", 0.9, 0.50, 0, precision="bf16")
    table, _ = report.make_report(str(root), str(tmp_path / "out"))
    bf16, fp32 = table.split("### cifar10 / resnet18 / fp32")  # sections in name order
    assert "### cifar10 / resnet18 / bf16" in bf16
    assert table_row(bf16, "random") == ["50.0"] and table_row(fp32, "random") == ["40.0"]


def test_beta_sweep_under_label_noise_lists_the_mislabeled_share_per_beta(tmp_path):
    root = tmp_path / "noisy"
    write_run(root, "full", "full", 0.0, 0.9, label_noise=0.2, mislabeled_share=0.2)
    for beta, best, share in ((0.0, 0.6, 0.19), (0.3, 0.7, 0.04)):
        info = ccs_info(0.1, beta, score_file(root))
        write_run(root, f"ccs-b{beta}", "ccs", 0.9, best, 0, None, info, mislabeled_share=share)
    table, _ = report.make_report(str(root), str(tmp_path / "out"))
    per_beta = table.split("Mislabeled share (%) for each hard-cut ratio β:")[1]
    assert table_row(per_beta, "ccs β=0") == ["19.0"]
    assert table_row(per_beta, "ccs β=0.3") == ["4.0"]
    assert table_row(table.split("Mislabeled share of")[1], "ccs") == ["—", "4.0 †"]


def test_an_out_folder_that_cannot_be_made_is_one_line(base, capsys):
    with pytest.raises(SystemExit) as stop:
        report.main([str(base), "--out", "/proc/no/such/report"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out /proc/no/such/report")


def test_strata_figure_shows_the_beta_the_table_keeps(tmp_path):
    from core.report.build import _widest_ccs_run

    root = tmp_path / "sweep"
    for beta, best in ((0.0, 0.6), (0.3, 0.7), (0.5, 0.65)):
        info = ccs_info(0.1, beta, score_file(root))
        write_run(root, f"ccs-b{beta}", "ccs", 0.9, best, 0, None, info)
    info = ccs_info(0.5, 0.0, score_file(root))
    write_run(root, "ccs-50", "ccs", 0.5, 0.9, 0, None, info)
    chosen = _widest_ccs_run(report.collect_runs(str(root)))
    assert chosen["run_dir"] == "ccs-b0.3"  # highest rate, best beta there (not the first)


def test_strata_counts_place_the_mislabeled_examples_on_the_score_axis(tmp_path):
    noisy = torch.zeros(N, dtype=torch.bool)
    noisy[[0, 3, 25]] = True
    data_score = {"accumulated_margin": torch.linspace(-1, 1, N), "noisy_label": noisy}
    info, indices = ccs_info(0.1, 0.25, "unused"), torch.tensor(CCS_90)
    counts = report.strata_counts(data_score, info, indices)
    expected = torch.linspace(-1, 1, N)[[0, 3, 25]].double()
    assert torch.equal(counts["mislabeled_scores"], expected)
    report.plot_strata({"mis_ratio": 0.25, "pruning_rate": 0.9}, counts, tmp_path / "s.png")
    assert_png(tmp_path / "s.png")
    del data_score["noisy_label"]
    assert report.strata_counts(data_score, info, indices)["mislabeled_scores"] is None


# ---- which runs share a row ---------------------------------------------------------------------


def test_runs_apart_in_a_setting_are_separate_rows_not_seeds(base, tmp_path):
    """Two CCS runs of seed 0 differing only in --strata were one row "± 0.0 (n=2)"."""
    info = ccs_info(0.1, 0.25, score_file(base), strata=50)
    write_run(base, "ccs-90-strata50", "ccs", 0.9, 0.70, 0, None, info)
    table, _ = report.make_report(str(base), str(tmp_path / "out"))
    assert table_row(table, "ccs strata=5") == ["—", "—", "80.0"]
    assert table_row(table, "ccs strata=50") == ["—", "—", "70.0"]
    assert table_row(table, "random") == ["—", "91.0 ± 1.4 (n=2)", "—"]  # seeds still average


def test_a_clean_and_a_noisy_full_run_are_separate_rows(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "full", "full", 0.0, 0.95)
    write_run(root, "full-noise99", "full", 0.0, 0.10, label_noise=0.99, mislabeled_share=0.99)
    table, _ = report.make_report(str(root), str(tmp_path / "out"))
    assert table_row(table, "full label_noise=0") == ["95.0"]
    assert table_row(table, "full label_noise=0.99") == ["10.0"]
    assert "n=2" not in table


def test_rows_split_by_training_flags_and_scoring_run_but_not_runtime_or_place(tmp_path):
    root = tmp_path / "runs"
    flags = {"epochs": None, "iterations": 300, "lr": 0.1, "batch_size": 128, "device": "cpu"}
    moved = "/elsewhere/old-runs/full/data-score-full.pickle"  # this study, recorded elsewhere
    for seed, device, path in ((0, "cpu", score_file(root)), (1, "cuda", moved)):
        info = ccs_info(0.1, 0.25, path)
        args = dict(flags, device=device, workers=seed, task_name=f"ccs-s{seed}")
        write_run(root, f"ccs-s{seed}", "ccs", 0.9, 0.80 + seed / 100, seed, None, info, args=args)
    info = ccs_info(0.1, 0.25, root / "other-full" / "data-score-other-full.pickle")
    write_run(root, "ccs-other", "ccs", 0.9, 0.5, 0, None, info, args=flags)
    for seed, lr in ((0, 0.1), (0, 0.05)):
        write_run(root, f"random-lr{lr}", "random", 0.9, 0.4 + lr, seed, args=dict(flags, lr=lr))
    table, _ = report.make_report(str(root), str(tmp_path / "out"))
    assert table_row(table, "ccs scores=full/data-score-full.pickle") == ["80.5 ± 0.7 (n=2)"]
    assert table_row(table, "ccs scores=other-full/data-score-other-full.pickle") == ["50.0"]
    assert table_row(table, "random lr=0.05") == ["45.0"]
    assert table_row(table, "random lr=0.1") == ["50.0"]


def test_two_runs_of_one_row_and_seed_stop_the_report_in_one_line(base, capsys):
    flags = {"iterations": 300, "device": "cuda"}
    write_run(base, "random-50-s0-again", "random", 0.5, 0.50, 0, RANDOM_50[0], args=flags)
    with pytest.raises(SystemExit) as stop:
        report.main([str(base)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: runs random-50-s0 and random-50-s0-again are one row")
    assert "same seed 0" in err[0] and "differ only in --device, --iterations" in err[0]
    assert not (base / "table.md").exists()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_report_exits_130_in_one_line_and_leaves_no_temporary(
    base, tmp_path, monkeypatch, capsys, how
):
    import signal

    from core.fileio import atomic_write
    from core.report import build

    def interrupted_figure(runs, path):
        def write(fh):
            fh.write(b"half a png")
            if how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises at the next bytecode
            for _ in range(1000):
                fh.write(b".")

        atomic_write(path, write)

    monkeypatch.setattr(build, "plot_accuracy", interrupted_figure)
    handler = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        report.main([str(base), "--out", str(out)])
    assert stop.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: interrupted (the report's files are only ever written whole)"]
    assert sorted(os.listdir(out)) == ["summary.json", "table.md"]  # no accuracy.png, no *.tmp
    assert signal.getsignal(signal.SIGTERM) is handler


@pytest.mark.slow  # runs python -m core.report in a subprocess
def test_sigterm_while_importing_or_reporting_is_one_line_and_exit_130(base, tmp_path):
    """A second after the start the command is still importing torch on most machines (the
    handler is set before that, in __main__.py) or already reporting: 130 either way."""
    import signal
    import time

    out = tmp_path / "out"
    command = [sys.executable, "-m", "core.report", str(base), "--out", str(out)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    if proc.poll() is not None:
        pytest.skip("the report finished before the signal")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.decode().strip().splitlines() == [f"error: {report.INTERRUPTED}"]
    assert not out.exists() or not [name for name in os.listdir(out) if name.endswith(".tmp")]
