"""The runs under a base folder: one dict per metrics.json, their order, groups and statistics,
and summary.json."""

import datetime
import json
import math
import os
from collections import defaultdict

from core import methods
from core.errors import UserError
from core.provenance import git_commit
from core.run_folder import RunFolder

METHOD_ORDER = methods.result_order()
HARD_CUT = tuple(m.result_name for m in methods.METHODS.values() if m.hard_cut and m.result_name)
RANKED = ("forgetting", "accumulated_margin", "el2n", "entropy", "loss")  # score-ranked modes
REQUIRED_KEYS = ("method", "pruning_rate", "best_acc")
SUMMARY_KEYS = (
    "method",
    "label",
    "pruning_rate",
    "best_acc",
    "last_acc",
    "coreset_size",
    "train_size",
    "seed",
    "dataset",
    "network",
    "mis_ratio",
    "iterations",
    "epochs",
    "wall_time_s",
    "train_time_s",
    "images_per_s",
    "run_dir",
    "aucpr",
    "label_noise",
    "mislabeled_share",
    "precision",
    "coreset",
)


def note(message: str) -> None:
    """A report goes on without what is missing, but says so on one line."""
    print(f"note: {message}", flush=True)


def run_folder(path: str) -> RunFolder:
    """The RunFolder of a run directory: its parent is the base dir, its name the task."""
    path = os.path.normpath(path)
    return RunFolder(os.path.dirname(path), os.path.basename(path))


# ----------------------------------------------------------------------------- reading runs


def collect_runs(base_dir: str, left_out: list | None = None) -> list[dict]:
    """One dict per ``metrics.json`` below ``base_dir``, sorted by method, rate, beta and seed.

    Runs that cannot be in the table (unfinished: a checkpoint but no metrics.json; unreadable
    or incomplete metrics.json) get a note and, when ``left_out`` is a list, an entry
    ``{"run_dir", "why"}`` there. None usable at all is a UserError.
    """
    if not os.path.isdir(base_dir):
        raise UserError(f"BASE_DIR {base_dir!r} is not a folder")
    left_out = [] if left_out is None else left_out
    runs = []
    for folder, subfolders, _ in os.walk(base_dir):
        subfolders.sort()
        files = run_folder(folder)
        if os.path.isfile(files.metrics):
            run, why = _read_run(folder, base_dir)
        elif os.path.isfile(files.last):
            run, why = None, "unfinished (a checkpoint, no metrics.json): rerun its command"
        else:
            continue
        if run is not None:
            runs.append(run)
        else:
            left_out.append({"run_dir": os.path.relpath(folder, base_dir), "why": why})
            note(f"skipping {os.path.relpath(folder, base_dir)} (not in the table): {why}")
    if not runs:
        raise UserError(
            f"no usable metrics.json under {base_dir!r}: is it the --base-dir of the runs?"
        )
    return sorted(runs, key=sort_key)


def _read_run(folder: str, base_dir: str) -> tuple[dict | None, str]:
    """(the run's entry, "") or (None, why it cannot be read)."""
    path = run_folder(folder).metrics
    try:
        with open(path) as fh:
            metrics = json.load(fh)
    except (OSError, ValueError) as exc:
        return None, f"unreadable metrics.json ({exc})"
    missing = [key for key in REQUIRED_KEYS if not isinstance(metrics, dict) or key not in metrics]
    if missing:
        return None, f"metrics.json has no {', '.join(missing)}"
    try:
        return _run_entry(metrics, folder, base_dir), ""
    except (TypeError, ValueError, AttributeError) as exc:
        return None, f"malformed entry in metrics.json ({exc})"


def _run_entry(metrics: dict, folder: str, base_dir: str) -> dict:
    info = metrics.get("coreset") or {}
    method = str(metrics["method"])
    run = {key: metrics.get(key) for key in SUMMARY_KEYS}
    run.update(
        method=method,
        pruning_rate=float(metrics["pruning_rate"]),
        best_acc=float(metrics["best_acc"]),
        coreset=dict(info) or None,
        # CCS, D2 and k-center cut the hardest first; other modes ignore --mis-ratio (C12)
        mis_ratio=float(info.get("mis_ratio") or 0.0) if method in HARD_CUT else 0.0,
        # d2 and kcenter are per class in the scripts (their authors' setting): no suffix
        label=method
        + (" class-balanced" if info.get("class_balanced") and method in RANKED else ""),
        run_dir=os.path.relpath(folder, base_dir),
        aucpr=None,
        abs_dir=folder,
    )
    return run


# ----------------------------------------------------------------------------- order, groups


def method_rank(label: str) -> tuple:
    method = label.split(" ")[0]
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return rank, label


def sort_key(run: dict) -> tuple:
    seed = run["seed"] if isinstance(run["seed"], int) else -1
    return (*method_rank(run["label"]), run["pruning_rate"], run["mis_ratio"], seed)


def group(run: dict) -> str:
    """Runs of different datasets, networks or precisions never share a table row or a plot
    (a bf16 run averaged with fp32 ones as if it were another seed would hide a gap)."""
    name = " / ".join(str(run.get(key) or "?") for key in ("dataset", "network"))
    return name + (f" / {run['precision']}" if run.get("precision") else "")


def by_group(runs: list[dict]) -> dict[str, list[dict]]:
    """{dataset / network: its runs}, groups in name order, runs sorted within each."""
    groups = defaultdict(list)
    for run in sorted(runs, key=sort_key):
        groups[group(run)].append(run)
    return dict(sorted(groups.items()))


def rate(run: dict) -> float:
    return round(run["pruning_rate"], 6)


def percent(value: float) -> str:
    return f"{value * 100:g}%"


# ----------------------------------------------------------------------------- aggregation


def stats(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std, n


def cells(runs: list[dict], field: str) -> dict:
    """{(group, label, rate): [values over seeds]} for the runs where ``field`` is known."""
    out = defaultdict(list)
    for run in runs:
        if run.get(field) is not None:
            out[(group(run), run["label"], rate(run))].append(float(run[field]))
    return out


def _variants(runs: list[dict]) -> dict:
    """{(group, label, rate): {beta: [runs]}}."""
    variants = defaultdict(lambda: defaultdict(list))
    for run in runs:
        variants[(group(run), run["label"], rate(run))][run["mis_ratio"]].append(run)
    return variants


def choose_variants(runs: list[dict]) -> tuple[list[dict], set]:
    """Keep, for each method and rate, the beta with the best mean accuracy.

    A beta sweep (several hard-cut ratios at one rate) would otherwise be averaged as if it
    were seeds. The paper picks beta per setting; so does this, on the test accuracy the runs
    report (docs/FAITHFULNESS.md, R2). Returns the kept runs and the (group, label, rate) cells
    that had a choice.
    """
    kept, swept = [], set()
    for cell, by_beta in _variants(runs).items():
        if len(by_beta) > 1:
            swept.add(cell)
        best = max(by_beta.values(), key=lambda runs: stats([r["best_acc"] for r in runs])[0])
        kept.extend(best)
    return sorted(kept, key=sort_key), swept


# ----------------------------------------------------------------------------- summary.json


def summarise(runs: list[dict], extra: dict | None = None) -> dict:
    """The content of summary.json: every run's numbers plus where they came from."""
    generated_by = {
        "script": "python -m core.report",
        "git_commit": git_commit(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    public = [{key: run.get(key) for key in SUMMARY_KEYS} for run in sorted(runs, key=sort_key)]
    return {"runs": public, "generated_by": generated_by}
