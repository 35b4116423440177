"""Collect the runs under a base folder into a summary, tables and figures.

    python -m core.report BASE_DIR [--out DIR] [--features PATH] [--data-score PATH]
                                   [--coverage-rate R] [--device DEV]

Reads every ``metrics.json`` below BASE_DIR (docs/CONTRACTS.md, "Run folder") and writes
``summary.json``, ``table.md``, ``accuracy.png`` (the paper's figure-5 layout), ``strata.png``
(how CCS split its budget over the strata) and ``coverage.png`` (coverage curves and AUCpr,
paper section 3.1). Whatever a figure needs and is missing skips that figure with a note.
"""

import argparse
import datetime
import json
import math
import os
import pickle
import sys
from collections import defaultdict

import torch

from core import coverage
from core.errors import UserError, exit_with_error
from core.fileio import atomic_json_dump, atomic_write

METHOD_ORDER = (
    "full",
    "random",
    "ccs",
    "moderate",
    "forgetting",
    "accumulated_margin",
    "el2n",
    "entropy",
    "loss",
)
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
    "coreset",
)
DPI = 150
MAX_CUT_BINS = 200
# what torch.load(weights_only=True) raises for a missing, torn or foreign file
LOAD_ERRORS = (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError)
REPORT_FILES = ("summary.json", "table.md", "accuracy.png", "strata.png", "coverage.png")
AUCPR_TITLE = (
    "AUCpr (mean distance from a training example to the coreset; lower = better coverage)"
)


def note(message: str) -> None:
    print(f"note: {message}", flush=True)


# ----------------------------------------------------------------------------- reading runs


def collect_runs(base_dir: str) -> list[dict]:
    """One dict per ``metrics.json`` below ``base_dir``, sorted by method, rate, beta and seed.

    Unreadable or incomplete files are skipped with a note; none at all is a UserError.
    """
    if not os.path.isdir(base_dir):
        raise UserError(f"BASE_DIR {base_dir!r} is not a folder")
    runs = []
    for folder, subfolders, files in os.walk(base_dir):
        subfolders.sort()
        if "metrics.json" in files:
            run = _read_run(folder, base_dir)
            if run is not None:
                runs.append(run)
    if not runs:
        raise UserError(
            f"no usable metrics.json under {base_dir!r}: is it the --base-dir of the runs?"
        )
    return sorted(runs, key=_sort_key)


def _read_run(folder: str, base_dir: str) -> dict | None:
    path = os.path.join(folder, "metrics.json")
    try:
        with open(path) as fh:
            metrics = json.load(fh)
    except (OSError, ValueError) as exc:
        note(f"skipping {path}: {exc}")
        return None
    missing = [key for key in REQUIRED_KEYS if not isinstance(metrics, dict) or key not in metrics]
    if missing:
        note(f"skipping {path}: no {', '.join(missing)}")
        return None
    try:
        return _run_entry(metrics, folder, base_dir)
    except (TypeError, ValueError, AttributeError) as exc:
        note(f"skipping {path}: malformed entry ({exc})")
        return None


def _run_entry(metrics: dict, folder: str, base_dir: str) -> dict:
    info = metrics.get("coreset") or {}
    method = str(metrics["method"])
    run = {key: metrics.get(key) for key in SUMMARY_KEYS}
    run.update(
        method=method,
        pruning_rate=float(metrics["pruning_rate"]),
        best_acc=float(metrics["best_acc"]),
        coreset=dict(info) or None,
        # the hard cut is step 1 of CCS only (REFERENCE section 4)
        mis_ratio=float(info.get("mis_ratio") or 0.0) if method == "ccs" else 0.0,
        label=method + (" class-balanced" if info.get("class_balanced") else ""),
        run_dir=os.path.relpath(folder, base_dir),
        aucpr=None,
        abs_dir=folder,
    )
    return run


def _method_rank(label: str) -> tuple:
    method = label.split(" ")[0]
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return rank, label


def _sort_key(run: dict) -> tuple:
    seed = run["seed"] if isinstance(run["seed"], int) else -1
    return (*_method_rank(run["label"]), run["pruning_rate"], run["mis_ratio"], seed)


def _group(run: dict) -> str:
    """Runs of different datasets or networks never share a table row or a plot."""
    return " / ".join(str(run.get(key) or "?") for key in ("dataset", "network"))


def _by_group(runs: list[dict]) -> dict[str, list[dict]]:
    """{dataset / network: its runs}, groups in name order, runs sorted within each."""
    by_group = defaultdict(list)
    for run in sorted(runs, key=_sort_key):
        by_group[_group(run)].append(run)
    return dict(sorted(by_group.items()))


def _rate(run: dict) -> float:
    return round(run["pruning_rate"], 6)


def _percent(rate: float) -> str:
    return f"{rate * 100:g}%"


# ----------------------------------------------------------------------------- aggregation


def _stats(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std, n


def _cells(runs: list[dict], field: str) -> dict:
    """{(group, label, rate): [values over seeds]} for the runs where ``field`` is known."""
    cells = defaultdict(list)
    for run in runs:
        if run.get(field) is not None:
            cells[(_group(run), run["label"], _rate(run))].append(float(run[field]))
    return cells


def _variants(runs: list[dict]) -> dict:
    """{(group, label, rate): {beta: [runs]}}."""
    variants = defaultdict(lambda: defaultdict(list))
    for run in runs:
        variants[(_group(run), run["label"], _rate(run))][run["mis_ratio"]].append(run)
    return variants


def choose_variants(runs: list[dict]) -> tuple[list[dict], set]:
    """Keep, for each method and rate, the beta with the best mean accuracy.

    A beta sweep (several hard-cut ratios at one rate) would otherwise be averaged as if it
    were seeds. The paper picks beta per setting; so does this, on the test accuracy the runs
    report. Returns the kept runs and the (group, label, rate) cells that had a choice.
    """
    kept, swept = [], set()
    for cell, by_beta in _variants(runs).items():
        if len(by_beta) > 1:
            swept.add(cell)
        best = max(by_beta.values(), key=lambda group: _stats([r["best_acc"] for r in group])[0])
        kept.extend(best)
    return sorted(kept, key=_sort_key), swept


# ----------------------------------------------------------------------------- summary, tables


def summarise(runs: list[dict], extra: dict | None = None) -> dict:
    """The content of summary.json: every run's numbers plus where they came from."""
    from core.provenance import git_commit

    generated_by = {
        "script": "python -m core.report",
        "git_commit": git_commit(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    public = [{key: run.get(key) for key in SUMMARY_KEYS} for run in sorted(runs, key=_sort_key)]
    return {"runs": public, "generated_by": generated_by}


def _format_cell(values: list[float], scale: float, digits: int) -> str:
    mean, std, n = _stats(values)
    if n == 1:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f} (n={n})"


def _table(runs: list[dict], field: str, scale: float, digits: int, marks: set) -> list[str]:
    """Markdown lines: rows = methods, columns = pruning rates, for the runs of one group."""
    cells = _cells(runs, field)
    if not cells:
        return []
    rates = sorted({rate for (_, _, rate) in cells})
    labels = sorted({label for (_, label, _) in cells}, key=_method_rank)
    group = _group(runs[0])
    lines = [
        "| method | " + " | ".join(_percent(rate) for rate in rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    for label in labels:
        row = []
        for rate in rates:
            values = cells.get((group, label, rate))
            text = _format_cell(values, scale, digits) if values else "—"
            row.append(text + (" †" if values and (group, label, rate) in marks else ""))
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return lines


def _beta_notes(runs: list[dict], swept: set) -> list[str]:
    notes = []
    for label in sorted({r["label"] for r in runs if r["mis_ratio"] > 0}, key=_method_rank):
        betas = sorted({(_rate(r), r["mis_ratio"]) for r in runs if r["label"] == label})
        listed = ", ".join(f"{_percent(rate)}: {beta:g}" for rate, beta in betas)
        notes.append(f"Hard-cut ratio β of {label} per pruning rate: {listed}.")
    if swept:
        notes.append(
            "† best of several β at that rate, chosen on the reported test accuracy (as the "
            "paper tunes β); every β is in the β table below."
        )
    return notes


def _beta_sweep_table(runs: list[dict], swept: set) -> list[str]:
    """Every beta of the swept cells: rows = method and beta, columns = rates."""
    swept_runs = [r for r in runs if (_group(r), r["label"], _rate(r)) in swept]
    if not swept_runs:
        return []
    relabelled = [dict(r, label=f"{r['label']} β={r['mis_ratio']:g}") for r in swept_runs]
    lines = ["", "Best test accuracy (%) for each hard-cut ratio β:", ""]
    return lines + _table(relabelled, "best_acc", 100.0, 1, set())


def markdown_table(runs: list[dict]) -> str:
    """table.md: best test accuracy (%) per method and pruning rate; AUCpr when available.

    Several seeds give ``mean ± std (n=k)`` (sample standard deviation). The full-data run has
    its own ``0%`` column. One section per dataset / network when the runs mix them.
    """
    by_group = _by_group(runs)
    sections = []
    for group, group_runs in by_group.items():
        kept, swept = choose_variants(group_runs)
        lines = [f"### {group}", ""] if len(by_group) > 1 else []
        lines += ["Best test accuracy (%):", ""] + _table(kept, "best_acc", 100.0, 1, swept)
        notes = _beta_notes(kept, swept)
        lines += [""] + notes if notes else []
        aucpr_lines = _table(kept, "aucpr", 1.0, 3, swept)
        if aucpr_lines:
            lines += ["", f"{AUCPR_TITLE}:", ""] + aucpr_lines
        lines += _beta_sweep_table(group_runs, swept)
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


# ----------------------------------------------------------------------------- figures


def _new_figure(columns: int = 1):
    # Figure without pyplot: no global backend state, renders with Agg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4 * columns + 1.6, 4.6), dpi=DPI, layout="constrained")
    return fig, fig.subplots(1, columns, squeeze=False)[0]


def _save_figure(fig, path: str) -> None:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI))


def _draw_accuracy(ax, group: str, runs: list[dict]) -> None:
    cells = _cells(runs, "best_acc")
    labels = sorted({label for (_, label, _) in cells}, key=_method_rank)
    for label in labels:
        points = sorted((rate, values) for (_, lab, rate), values in cells.items() if lab == label)
        if label == "full":
            mean = _stats([v for _, values in points for v in values])[0] * 100
            ax.axhline(mean, linestyle="--", color="black", label=f"full data ({mean:.1f}%)")
            continue
        stats = [_stats(values) for _, values in points]
        ax.errorbar(
            [rate * 100 for rate, _ in points],
            [mean * 100 for mean, _, _ in stats],
            yerr=[std * 100 for _, std, _ in stats],
            marker="o",
            capsize=3,
            label=label,
        )
    rates = sorted({rate for (_, label, rate) in cells if label != "full"})
    if rates:
        ax.set_xticks([rate * 100 for rate in rates])
    ax.set_xlabel("pruning rate (%)")
    ax.set_ylabel("best test accuracy (%)")
    ax.set_title(f"{group}: accuracy vs pruning rate")
    ax.grid(alpha=0.3)
    # beside the axes, not over them: at high pruning rates the points spread over the range
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")


def plot_accuracy(runs: list[dict], path: str) -> None:
    """accuracy.png: test accuracy vs pruning rate, one line per method, error bars over seeds,
    the full-data accuracy as a dashed line (the paper's figure 5). One panel per dataset."""
    by_group = _by_group(runs)
    fig, axes = _new_figure(len(by_group))
    for ax, (group, group_runs) in zip(axes, by_group.items()):
        _draw_accuracy(ax, group, choose_variants(group_runs)[0])
    _save_figure(fig, path)


def strata_counts(data_score: dict, info: dict, indices: torch.Tensor) -> dict:
    """Recount a CCS selection: the hard cut, the strata of the survivors and the picks in each.

    ``info`` is the run's ``coreset`` entry of metrics.json; strata edges come from
    core.coreset.stratify, the function the selection itself used.
    """
    from core.coreset import hard_cut_survivors, stratify

    key, mis_key = info["key"], info.get("mis_key") or "accumulated_margin"
    for name in (key, mis_key):
        if name not in data_score:
            raise UserError(f"the score file has no {name!r} (it has {sorted(data_score)})")
    scores = data_score[key]
    total = len(scores)
    survivors = hard_cut_survivors(
        data_score,
        total,
        float(info.get("mis_ratio") or 0.0),
        mis_key,
        bool(info.get("mis_descending")),
    )
    removed = torch.ones(total, dtype=torch.bool)
    removed[survivors] = False
    stratum_of_each, edges = stratify(scores[survivors], int(info.get("strata") or 50))
    strata = len(edges) - 1
    position = torch.full((total,), -1, dtype=torch.long)
    position[survivors] = torch.arange(len(survivors))
    indices = torch.as_tensor(indices, dtype=torch.long)
    if int(indices.max()) >= total:
        raise UserError(f"coreset indices go past the {total} examples of the score file")
    picked = position[indices]
    return {
        "key": key,
        "mis_key": mis_key,
        "edges": edges.double(),
        "sizes": torch.bincount(stratum_of_each, minlength=strata),
        "taken": torch.bincount(stratum_of_each[picked[picked >= 0]], minlength=strata),
        "cut_scores": scores[removed].double(),
        "picked_in_cut": int((picked < 0).sum()),
    }


def _draw_hard_cut(ax, counts: dict, width: float, beta: float) -> None:
    """The hard-cut examples' scores, binned like the strata: grey bars in a shaded region
    when the cut used the stratification score itself, else a dashed outline."""
    cut_scores, low = counts["cut_scores"], float(counts["edges"][0])
    if len(cut_scores) == 0:
        return
    first = math.floor((float(cut_scores.min()) - low) / width)
    last = max(math.ceil((float(cut_scores.max()) - low) / width) + 1, first + 2)
    if last - first <= MAX_CUT_BINS:
        bins = torch.tensor([low + width * i for i in range(first, last)], dtype=torch.float64)
    else:  # cut scores spread far wider than the strata: coarser bins of their own
        bins = torch.linspace(float(cut_scores.min()), float(cut_scores.max()), MAX_CUT_BINS + 1)
    heights, bin_edges = torch.histogram(cut_scores, bins.double())
    label = f"removed by the hard cut (β={beta:g}, {len(cut_scores)} examples)"
    if counts["mis_key"] != counts["key"]:
        # cut by another score: its examples overlap the strata, so an outline, not bars
        label += f", cut by {counts['mis_key']}"
        ax.stairs(heights.tolist(), bin_edges.tolist(), color="0.2", ls="--", label=label, zorder=3)
        return
    width = float(bin_edges[1] - bin_edges[0])
    ax.bar(bin_edges[:-1].tolist(), heights.tolist(), width, align="edge", color="0.6", label=label)
    ax.axvspan(float(bin_edges[0]), float(bin_edges[-1]), color="0.88", zorder=0)
    # the cut takes the lowest scores unless --mis-data-score-descending took the highest
    threshold = low if float(cut_scores.max()) <= low else float(counts["edges"][-1])
    ax.axvline(threshold, color="black", linestyle=":", label="hard-cut threshold")


def plot_strata(run: dict, data_score: dict, indices: torch.Tensor, path: str) -> None:
    """strata.png: a CCS run's stratification score split into its strata; per stratum its size
    and how many examples CCS took; the examples removed by the hard cut in grey."""
    info = run["coreset"]
    counts = strata_counts(data_score, info, indices)
    edges = counts["edges"]
    width = float(edges[1] - edges[0])
    fig, (ax,) = _new_figure()
    _draw_hard_cut(ax, counts, width, run["mis_ratio"])
    lefts = edges[:-1].tolist()
    ax.bar(
        lefts,
        counts["sizes"].tolist(),
        width=width,
        align="edge",
        color="tab:blue",
        alpha=0.35,
        edgecolor="white",
        linewidth=0.3,
        label=f"stratum size ({len(edges) - 1} strata)",
    )
    ax.bar(
        lefts,
        counts["taken"].tolist(),
        width=width,
        align="edge",
        color="tab:blue",
        label=f"taken by CCS ({int(counts['taken'].sum())} examples)",
    )
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 30)  # headroom on the log axis, so the legend hides no bar
    ax.set_xlabel(f"{counts['key']} score")
    ax.set_ylabel("examples (log scale)")
    ax.set_title(f"{_group(run)}: CCS strata at {_percent(run['pruning_rate'])} pruning")
    ax.legend(loc="upper left", fontsize="small", framealpha=0.9, ncol=2)
    _save_figure(fig, path)
    if counts["picked_in_cut"]:
        note(
            f"{counts['picked_in_cut']} coreset examples of {run['run_dir']} fall in the hard cut "
            "as recomputed here: the score file may not be the one the run used"
        )


def plot_coverage(curves: list[tuple[str, torch.Tensor]], rate: float, path: str) -> None:
    """coverage.png: fraction of the training set within distance r of each coreset, vs r.

    ``curves`` holds (legend label, nearest distances of every training example) pairs.
    """
    # Nearest distances are heavy-tailed: stop the axis where the worst-covering coreset
    # reaches 99% of the training set, so the informative part of every curve is visible.
    top = max(float(torch.quantile(distances.float(), 0.99)) for _, distances in curves)
    radii = coverage.default_radii(torch.tensor([top]), num=400)
    fig, (ax,) = _new_figure()
    for label, distances in curves:
        curve = coverage.coverage_curve(distances, radii)
        ax.plot(
            radii.tolist(), curve.tolist(), label=f"{label}: AUCpr {coverage.aucpr(distances):.3f}"
        )
    ax.set_xlabel("radius r (penultimate-layer feature distance; axis ends at the 99th percentile)")
    ax.set_ylabel("fraction of training set within r of the coreset")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Coverage of the training set at {_percent(rate)} pruning")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    _save_figure(fig, path)


# ----------------------------------------------------------------------------- inputs


def _find_first(base_dir: str, prefix: str, suffix: str) -> str | None:
    for folder, _, files in sorted(os.walk(base_dir)):
        for name in sorted(files):
            if name.startswith(prefix) and name.endswith(suffix):
                return os.path.join(folder, name)
    return None


def load_features(path: str) -> torch.Tensor:
    """The penultimate features [N, D] of a ``features-<task>.pt`` file."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as exc:
        raise UserError(f"cannot read features file {path}: {exc}") from None
    features = payload.get("features") if isinstance(payload, dict) else None
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        raise UserError(f"{path} holds no 'features' [N, D] tensor")
    return features


def load_indices(run: dict, size: int) -> torch.Tensor | None:
    """The run's coreset-indices.pt when present and within ``size`` rows, else None (noted)."""
    path = os.path.join(run["abs_dir"], "coreset-indices.pt")
    if not os.path.exists(path):
        note(f"no coreset-indices.pt in {run['run_dir']}: no AUCpr for it")
        return None
    try:
        indices = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as exc:
        note(f"cannot read {path}: {exc}")
        return None
    if not isinstance(indices, torch.Tensor) or indices.dim() != 1 or indices.is_floating_point():
        note(f"{path} is not a 1-D tensor of indices: skipped")
        return None
    if len(indices) == 0 or int(indices.min()) < 0 or int(indices.max()) >= size:
        note(f"{path} is empty or indexes past the {size} examples: skipped")
        return None
    return indices.long()


def _features_for(features_flag: str | None, base_dir: str):
    """(path, features) from --features or the first features-*.pt; (None, None) if none."""
    if features_flag is not None:
        if not os.path.isfile(features_flag):
            raise UserError(f"--features {features_flag!r}: no such file")
        return features_flag, load_features(features_flag)
    path = _find_first(base_dir, "features-", ".pt")
    if path is None:
        note(f"no features-*.pt under {base_dir} and no --features: no AUCpr, no coverage.png")
        return None, None
    try:
        return path, load_features(path)
    except UserError as exc:
        note(f"{exc}: no AUCpr, no coverage.png")
        return None, None


def compute_distances(runs: list[dict], features: torch.Tensor, device=None) -> dict:
    """Nearest-coreset distances of every training example, per coreset run; sets run["aucpr"].

    Returns {run_dir: float32 [N]}. Runs trained on another training-set size are skipped.
    """
    distances = {}
    for run in runs:
        if run["method"] == "full":
            continue
        if run["train_size"] is not None and int(run["train_size"]) != len(features):
            note(
                f"{run['run_dir']} trained on {run['train_size']} examples but the features "
                f"have {len(features)}: no AUCpr for it"
            )
            continue
        indices = load_indices(run, len(features))
        if indices is None:
            continue
        distances[run["run_dir"]] = coverage.nearest_distances(
            features, features[indices], device=device
        )
        run["aucpr"] = coverage.aucpr(distances[run["run_dir"]])
    return distances


def _resolve_score_path(run: dict, flag: str | None, base_dir: str) -> str | None:
    if flag is not None:
        if not os.path.isfile(flag):
            raise UserError(f"--data-score {flag!r}: no such file")
        return flag
    recorded = (run["coreset"] or {}).get("data_score_path")
    if recorded:
        # recorded as given at training time: relative to where training ran, maybe elsewhere
        for root in ("", os.getcwd(), base_dir, run["abs_dir"]):
            candidate = os.path.join(root, recorded)
            if os.path.isfile(candidate):
                return candidate
        for_this_name = _find_first(base_dir, os.path.basename(recorded), "")
        if for_this_name:
            return for_this_name
    return _find_first(base_dir, "data-score-", ".pickle")


# ----------------------------------------------------------------------------- the report


def _strata_figure(runs: list[dict], score_flag, base_dir: str, path: str) -> bool:
    ccs = [run for run in runs if run["method"] == "ccs" and (run["coreset"] or {}).get("key")]
    if not ccs:
        note("no CCS run with a stratification key: no strata.png")
        return False
    top = max(run["pruning_rate"] for run in ccs)
    run = next(run for run in ccs if run["pruning_rate"] == top)
    score_path = _resolve_score_path(run, score_flag, base_dir)
    size = int(run["train_size"] or 0) or sys.maxsize
    indices = load_indices(run, size)
    if score_path is None or indices is None:
        note(f"no score file or no coreset indices for {run['run_dir']}: no strata.png")
        return False
    try:
        from core.score_io import load_data_score

        plot_strata(run, load_data_score(score_path), indices, path)
    except ImportError as exc:
        note(f"{exc}: no strata.png")
        return False
    except UserError as exc:
        if score_flag is not None:
            raise
        note(f"{exc}: no strata.png")
        return False
    return True


def _coverage_rate(runs: list[dict], distances: dict, requested: float | None) -> float:
    rates = sorted({_rate(run) for run in runs if run["run_dir"] in distances})
    if requested is None:
        return rates[-1]
    match = [rate for rate in rates if math.isclose(rate, requested, abs_tol=1e-6)]
    if not match:
        present = ", ".join(f"{rate:g}" for rate in rates) or "none"
        raise UserError(
            f"--coverage-rate {requested:g}: no coreset run with indices at that "
            f"rate (rates with indices: {present})"
        )
    return match[0]


def _coverage_figure(runs, distances: dict, requested: float | None, path: str) -> bool:
    if not distances:
        if requested is not None:
            raise UserError("--coverage-rate given but no coreset run has features and indices")
        note("no coreset distances (features or indices missing): no coverage.png")
        return False
    rate = _coverage_rate(runs, distances, requested)
    kept, _ = choose_variants([run for run in runs if run["run_dir"] in distances])
    curves, seen = [], set()
    for run in kept:  # sorted by method then seed: the first seed of each method
        if _rate(run) == rate and (_group(run), run["label"]) not in seen:
            seen.add((_group(run), run["label"]))
            beta = f" β={run['mis_ratio']:g}" if run["mis_ratio"] else ""
            curves.append((run["label"] + beta, distances[run["run_dir"]]))
    plot_coverage(curves, rate, path)
    return True


def make_report(
    base_dir: str,
    out_dir: str | None = None,
    features_path: str | None = None,
    data_score_path: str | None = None,
    coverage_rate: float | None = None,
    device=None,
) -> tuple[str, list[str]]:
    """Write summary.json, table.md and the figures; return (the markdown table, written paths)."""
    if coverage_rate is not None and not 0 <= coverage_rate < 1:
        raise UserError(f"--coverage-rate must be a fraction in [0, 1), got {coverage_rate:g}")
    out_dir = out_dir or base_dir
    runs = collect_runs(base_dir)
    features_path, features = _features_for(features_path, base_dir)
    distances = compute_distances(runs, features, device) if features is not None else {}
    path = {name: os.path.join(out_dir, name) for name in REPORT_FILES}
    table = markdown_table(runs)
    extra = {"base_dir": os.path.abspath(base_dir), "features": features_path}
    atomic_json_dump(summarise(runs, extra), path["summary.json"])
    atomic_write(path["table.md"], lambda fh: fh.write(table), "w")
    plot_accuracy(runs, path["accuracy.png"])
    written = [path["summary.json"], path["table.md"], path["accuracy.png"]]
    if _strata_figure(runs, data_score_path, base_dir, path["strata.png"]):
        written.append(path["strata.png"])
    if _coverage_figure(runs, distances, coverage_rate, path["coverage.png"]):
        written.append(path["coverage.png"])
    return table, written


def parse_args(argv=None) -> argparse.Namespace:
    from core.cli import ArgumentParser

    parser = ArgumentParser(
        prog="python -m core.report",
        description="Summarise the runs under BASE_DIR: summary.json, table.md and figures.",
    )
    parser.add_argument("base_dir", metavar="BASE_DIR", help="folder searched for metrics.json")
    parser.add_argument("--out", default=None, help="folder for the report (default: BASE_DIR)")
    parser.add_argument(
        "--features",
        default=None,
        help="features-<task>.pt of the full-data model, for AUCpr and "
        "coverage.png (default: the first features-*.pt under BASE_DIR)",
    )
    parser.add_argument(
        "--data-score",
        default=None,
        help="score file for strata.png (default: the data_score_path of the CCS "
        "run, else the first data-score-*.pickle under BASE_DIR)",
    )
    parser.add_argument(
        "--coverage-rate",
        type=float,
        default=None,
        help="pruning rate (fraction, e.g. 0.9) of coverage.png (default: the "
        "highest rate with coreset indices)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="device for the distances (default: cuda when available, else cpu)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        table, written = make_report(
            base_dir=args.base_dir,
            out_dir=args.out,
            features_path=args.features,
            data_score_path=args.data_score,
            coverage_rate=args.coverage_rate,
            device=args.device,
        )
    except UserError as exc:
        exit_with_error(str(exc))
    print()
    print(table, end="")
    print()
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
