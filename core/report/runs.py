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
RANKED = tuple(p.name for p in methods.method("coreset").presets)  # score-ranked methods
REQUIRED_KEYS = ("method", "pruning_rate", "best_acc")
# train.py / train_imagenet.py flags that do not change a run's result (how it ran, where its
# folder lives), the seed (what the report averages over), and those whose value the report
# takes from elsewhere: the resolved precision (the section), the label-noise rate the run
# trained on (metrics.json's own label_noise) and the coreset flags (its "coreset" record)
NOT_SETTINGS = frozenset(
    ("gpuid", "device", "checkpoint_interval", "no_resume", "compile", "workers", "no_download",
     "ignore_td", "task_name", "base_dir", "data_dir", "seed", "precision", "label_noise",
     "coreset", "coreset_mode", "coreset_ratio", "coreset_key", "data_score_descending",
     "class_balanced", "mis_ratio", "mis_key", "mis_data_score_descending", "strata",
     "d2_neighbors", "d2_forward_gamma", "d2_reverse_gamma", "data_score_path", "features_path",
     # core.settings.RunSettings' record: its selection is the coreset record already
     "download", "selection")
)  # fmt: skip
# the coreset record's names as the report shows them; its ratio is the table's column and
# mis_ratio the beta the report sweeps (choose_variants), so neither splits a row
RECORD_NAMES = {"mode": "coreset_mode", "key": "coreset_key", "descending": "data_score_descending",
                "mis_descending": "mis_data_score_descending", "data_score_path": "scores",
                "features_path": "features", "ratio": None, "mis_ratio": None}  # fmt: skip
PATH_SETTINGS = ("scores", "features")
SUMMARY_KEYS = (
    "method",
    "label",
    "pruning_rate",
    "best_acc",
    "last_acc",
    # --val-size runs: the honest protocol's numbers (docs/FAITHFULNESS.md T18, R5)
    "test_acc_at_best_val",
    "best_val_acc",
    "val_size",
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
    label_what_differs(runs)
    refuse_repeated_seeds(runs)
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
        settings=run_settings(metrics, base_dir),
        flags=metrics.get("args") or {},
    )
    return run


def run_settings(metrics: dict, base_dir: str) -> dict:
    """Every recorded setting that changes a run's result, besides its seed: its flags
    (``args``) but those in NOT_SETTINGS, its coreset record (paths by where they lie, not by
    where the base folder is: _where) and the label-noise rate it trained on."""
    args = metrics.get("args") or {}
    found = {name: value for name, value in args.items() if name not in NOT_SETTINGS}
    for name, value in (metrics.get("coreset") or {}).items():
        shown = RECORD_NAMES.get(name, name)
        if shown in PATH_SETTINGS:
            value = _where(value, base_dir)
        if shown is not None:
            found[shown] = value
    found["label_noise"] = metrics.get("label_noise") or 0.0  # null: clean labels
    found["val_size"] = args.get("val_size") or 0  # recorded only when there is a split
    return found


def _where(path, base_dir: str):
    """A recorded file by where it lies: relative to the report's base folder when inside it,
    else its folder's name and its own (a study moved elsewhere keeps its names)."""
    if not path:
        return path
    path = os.path.normpath(os.path.abspath(path))
    base = os.path.normpath(os.path.abspath(base_dir))
    if os.path.commonpath([path, base]) == base:
        return os.path.relpath(path, base)
    return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))


# ----------------------------------------------------------------------------- rows


def label_what_differs(runs: list[dict]) -> None:
    """Runs of one method (one label) whose settings differ are separate rows: each label
    gains ``name=value`` for every setting that varies among them (a run that does not
    record one shows ``name=?``), so a row averages only runs that differ in their seed.
    Runs made before a setting was recorded are taken to share the value of those that
    record it, when they all record one value."""
    rows = defaultdict(list)
    for run in runs:
        rows[(group(run), run["label"])].append(run)
    for row in rows.values():
        recorded = defaultdict(set)
        for run in row:
            for name, value in run["settings"].items():
                recorded[name].add(_shown(value))
        varying = sorted(name for name, values in recorded.items() if len(values) > 1)
        for run in row:
            given = run["settings"]
            run["label"] += "".join(
                f" {name}={_shown(given[name]) if name in given else '?'}" for name in varying
            )


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


def refuse_repeated_seeds(runs: list[dict]) -> None:
    """A row's runs must differ in their seed: two runs of one row, rate, beta and seed are
    the same experiment twice (or differ only in what the report does not count as a
    setting), and averaging them would count one seed twice. UserError naming both."""
    seen = {}
    for run in sorted(runs, key=lambda run: run["run_dir"]):
        cell = (group(run), run["label"], rate(run), run["mis_ratio"], run["seed"])
        if cell in seen:
            first = seen[cell]
            raise UserError(
                f"runs {first['run_dir']} and {run['run_dir']} are one row of the table "
                f"({run['label']}, {percent(run['pruning_rate'])}) with the same seed "
                f"{run['seed']} ({_flags_apart(first, run)}): the report would average them "
                "as two seeds; keep one of them under BASE_DIR"
            )
        seen[cell] = run


def _flags_apart(one: dict, other: dict) -> str:
    """Which flags two runs differ in, besides their folder's name and place."""
    names = (set(one["flags"]) | set(other["flags"])) - {"task_name", "base_dir"}
    apart = sorted(name for name in names if one["flags"].get(name) != other["flags"].get(name))
    if not apart:
        return "the same flags"
    return "their flags differ only in " + ", ".join(
        "--" + name.replace("_", "-") for name in apart
    )


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


def choose_variants(runs: list[dict], on: str = "best_acc") -> tuple[list[dict], set]:
    """Keep, for each method and rate, the beta with the best mean accuracy ``on``.

    A beta sweep (several hard-cut ratios at one rate) would otherwise be averaged as if it
    were seeds. The paper picks beta per setting; so does this, by default on the test accuracy
    the runs report (docs/FAITHFULNESS.md, R2); ``on="best_val_acc"`` chooses on validation
    accuracy instead (--val-size runs, R5), among the runs that record it. Returns the kept
    runs and the (group, label, rate) cells that had a choice.
    """
    kept, swept = [], set()
    runs = [run for run in runs if run.get(on) is not None]
    for cell, by_beta in _variants(runs).items():
        if len(by_beta) > 1:
            swept.add(cell)
        best = max(by_beta.values(), key=lambda runs: stats([r[on] for r in runs])[0])
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
