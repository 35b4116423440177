"""make_report: summary.json, table.md and accuracy.png from the runs, then each optional
figure whose inputs exist; a figure that cannot be drawn is skipped with a one-line note
naming what it needed."""

import math
import os
import sys

from core.errors import UserError
from core.fileio import atomic_json_dump, atomic_write
from core.report.figures import plot_accuracy, plot_coverage, plot_mislabeled, plot_strata
from core.report.inputs import check_given, read_indices, recorded_score_path
from core.report.measures import coverage_distances, strata_counts
from core.report.runs import choose_variants, collect_runs, group, note, rate, summarise
from core.report.tables import markdown_table
from core.score_io import load_data_score

REPORT_FILES = (
    "summary.json",
    "table.md",
    "accuracy.png",
    "mislabeled.png",
    "strata.png",
    "coverage.png",
)


class Skipped(Exception):
    """An optional figure cannot be drawn; the message says which file or run it needed."""


# ----------------------------------------------------------------------------- strata.png


def _widest_ccs_run(runs: list[dict]) -> dict:
    """The CCS run at the highest pruning rate, with the β the table keeps (of a sweep), the
    first seed."""
    kept, _ = choose_variants(runs)
    ccs = [run for run in kept if run["method"] == "ccs" and (run["coreset"] or {}).get("key")]
    if not ccs:
        raise Skipped("no CCS run records a stratification key")
    top = max(run["pruning_rate"] for run in ccs)
    return next(run for run in ccs if run["pruning_rate"] == top)


def _strata_inputs(run: dict, score_flag: str | None) -> tuple[str, object]:
    """(score file, coreset indices) of the run, or Skipped naming the missing one."""
    score = score_flag or recorded_score_path(run)
    if score is None:
        raise Skipped(f"{run['run_dir']} records no coreset.data_score_path; pass --data-score")
    if not os.path.isfile(score):
        raise Skipped(f"the score file {score} that {run['run_dir']} records is missing")
    try:
        return score, read_indices(run, int(run["train_size"] or 0) or sys.maxsize)
    except UserError as exc:
        raise Skipped(str(exc)) from None


def _strata_figure(runs: list[dict], score_flag: str | None, path: str) -> None:
    run = _widest_ccs_run(runs)
    score, indices = _strata_inputs(run, score_flag)
    try:
        counts = strata_counts(load_data_score(score), run["coreset"], indices)
    except UserError as exc:
        if score_flag is not None:  # the user's own file does not fit: an error, not a note
            raise
        raise Skipped(str(exc)) from None
    plot_strata(run, counts, path)
    if counts["picked_in_cut"]:
        note(
            f"{counts['picked_in_cut']} coreset examples of {run['run_dir']} fall in the hard cut "
            f"as recomputed here: {score} may not be the score file the run used"
        )


# ----------------------------------------------------------------------------- coverage.png


def _coverage_rate(runs: list[dict], distances: dict, requested: float | None) -> float:
    rates = sorted({rate(run) for run in runs if run["run_dir"] in distances})
    if requested is None:
        return rates[-1]
    match = [at for at in rates if math.isclose(at, requested, abs_tol=1e-6)]
    if not match:
        present = ", ".join(f"{at:g}" for at in rates) or "none"
        raise UserError(
            f"--coverage-rate {requested:g}: no coreset run with indices at that "
            f"rate (rates with indices: {present})"
        )
    return match[0]


def _coverage_curves(runs: list[dict], distances: dict, at: float) -> list:
    """(label, distances) of the first seed of each method at rate ``at``, best beta only."""
    kept, _ = choose_variants([run for run in runs if run["run_dir"] in distances])
    curves, seen = [], set()
    for run in kept:  # sorted by method then seed
        if rate(run) == at and (group(run), run["label"]) not in seen:
            seen.add((group(run), run["label"]))
            beta = f" β={run['mis_ratio']:g}" if run["mis_ratio"] else ""
            curves.append((run["label"] + beta, distances[run["run_dir"]]))
    return curves


def _coverage_figure(runs, distances: dict, requested: float | None, path: str) -> None:
    if not distances:
        if requested is not None:
            raise UserError("--coverage-rate given but no coreset run has features and indices")
        raise Skipped("no coreset run has both a features file and its indices (notes above)")
    at = _coverage_rate(runs, distances, requested)
    plot_coverage(_coverage_curves(runs, distances, at), at, path)


# ----------------------------------------------------------------------------- the report


def _check_flags(features_path, data_score_path, coverage_rate) -> None:
    check_given("--features", features_path)
    check_given("--data-score", data_score_path)
    if coverage_rate is not None and not 0 <= coverage_rate < 1:
        raise UserError(f"--coverage-rate must be a fraction in [0, 1), got {coverage_rate:g}")


def _make_out_dir(folder: str) -> None:
    """Before any work: the report's folder can be made (or exists) and written to."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out {folder}: cannot create it ({error.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"--out {folder}: not writable")


def _optional_figures(runs, distances: dict, flags: dict, path: dict) -> list[str]:
    """Draw strata.png and coverage.png where their inputs exist; return the paths written."""
    draw = {
        "strata.png": lambda out: _strata_figure(runs, flags["data_score_path"], out),
        "coverage.png": lambda out: _coverage_figure(runs, distances, flags["coverage_rate"], out),
    }
    written = []
    for name, figure in draw.items():
        try:
            figure(path[name])
            written.append(path[name])
        except Skipped as skipped:
            note(f"no {name}: {skipped}")
    return written


def make_report(
    base_dir: str,
    out_dir: str | None = None,
    features_path: str | None = None,
    data_score_path: str | None = None,
    coverage_rate: float | None = None,
    device=None,
) -> tuple[str, list[str]]:
    """Write summary.json, table.md and the figures; return (the markdown table, written paths).

    summary.json's ``generated_by.features`` is the features file used (a list when several
    datasets each had their own; null when none).
    """
    _check_flags(features_path, data_score_path, coverage_rate)
    _make_out_dir(out_dir or base_dir)
    left_out = []
    runs = collect_runs(base_dir, left_out)
    distances, used = coverage_distances(runs, features_path, data_score_path, device)
    path = {name: os.path.join(out_dir or base_dir, name) for name in REPORT_FILES}
    table = markdown_table(runs, left_out)
    features = used[0] if len(used) == 1 else used or None
    extra = {"base_dir": os.path.abspath(base_dir), "features": features, "left_out": left_out}
    atomic_json_dump(summarise(runs, extra), path["summary.json"])
    atomic_write(path["table.md"], lambda fh: fh.write(table), "w")
    plot_accuracy(runs, path["accuracy.png"])
    flags = {"data_score_path": data_score_path, "coverage_rate": coverage_rate}
    written = [path[name] for name in ("summary.json", "table.md", "accuracy.png")]
    if any(run.get("mislabeled_share") is not None for run in runs):  # label-noise runs
        plot_mislabeled(runs, path["mislabeled.png"])
        written.append(path["mislabeled.png"])
    return table, written + _optional_figures(runs, distances, flags, path)
