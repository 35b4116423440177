"""table.md: best test accuracy (and AUCpr) per method and pruning rate, in markdown."""

from core.report.runs import (
    by_group,
    cells,
    choose_variants,
    group,
    method_rank,
    percent,
    rate,
    stats,
)

AUCPR_TITLE = (
    "AUCpr (mean distance from a training example to the coreset; lower = better coverage)"
)


def _format_cell(values: list[float], scale: float, digits: int) -> str:
    mean, std, n = stats(values)
    if n == 1:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f} (n={n})"


def _table(runs: list[dict], field: str, scale: float, digits: int, marks: set) -> list[str]:
    """Markdown lines: rows = methods, columns = pruning rates, for the runs of one group."""
    known = cells(runs, field)
    if not known:
        return []
    rates = sorted({at for (_, _, at) in known})
    labels = sorted({label for (_, label, _) in known}, key=method_rank)
    name = group(runs[0])
    lines = [
        "| method | " + " | ".join(percent(at) for at in rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    for label in labels:
        row = []
        for column in rates:
            values = known.get((name, label, column))
            text = _format_cell(values, scale, digits) if values else "—"
            row.append(text + (" †" if values and (name, label, column) in marks else ""))
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return lines


def _beta_notes(runs: list[dict], swept: set) -> list[str]:
    notes = []
    for label in sorted({r["label"] for r in runs if r["mis_ratio"] > 0}, key=method_rank):
        betas = sorted({(rate(r), r["mis_ratio"]) for r in runs if r["label"] == label})
        listed = ", ".join(f"{percent(at)}: {beta:g}" for at, beta in betas)
        notes.append(f"Hard-cut ratio β of {label} per pruning rate: {listed}.")
    if swept:
        notes.append(
            "† best of several β at that rate, chosen on the reported test accuracy (as the "
            "paper tunes β); every β is in the β table below."
        )
    return notes


def _beta_sweep_table(runs: list[dict], swept: set) -> list[str]:
    """Every beta of the swept cells: rows = method and beta, columns = rates."""
    swept_runs = [r for r in runs if (group(r), r["label"], rate(r)) in swept]
    if not swept_runs:
        return []
    relabelled = [dict(r, label=f"{r['label']} β={r['mis_ratio']:g}") for r in swept_runs]
    lines = ["", "Best test accuracy (%) for each hard-cut ratio β:", ""]
    lines += _table(relabelled, "best_acc", 100.0, 1, set())
    # under label noise the hard cut is what drops the mislabeled examples: show it per beta
    noise_lines = _table(relabelled, "mislabeled_share", 100.0, 1, set())
    if noise_lines:
        lines += ["", "Mislabeled share (%) for each hard-cut ratio β:", ""] + noise_lines
    return lines


def _section(group_runs: list[dict]) -> list[str]:
    """The tables and notes of one dataset / network."""
    kept, swept = choose_variants(group_runs)
    lines = ["Best test accuracy (%):", ""] + _table(kept, "best_acc", 100.0, 1, swept)
    notes = _beta_notes(kept, swept)
    lines += [""] + notes if notes else []
    noise_lines = _table(kept, "mislabeled_share", 100.0, 1, swept)
    if noise_lines:
        title = "Mislabeled share of the examples trained on (%; the full run's is the dataset's)"
        lines += ["", f"{title}:", ""] + noise_lines
    aucpr_lines = _table(kept, "aucpr", 1.0, 3, swept)
    if aucpr_lines:
        lines += ["", f"{AUCPR_TITLE}:", ""] + aucpr_lines
    return lines + _beta_sweep_table(group_runs, swept)


def markdown_table(runs: list[dict], left_out: list[dict] | None = None) -> str:
    """table.md: best test accuracy (%) per method and pruning rate; AUCpr when available.

    Several seeds give ``mean ± std (n=k)`` (sample standard deviation). The full-data run has
    its own ``0%`` column. One section per dataset / network when the runs mix them.
    """
    groups = by_group(runs)
    sections = []
    for name, group_runs in groups.items():
        heading = [f"### {name}", ""] if len(groups) > 1 else []
        sections.append("\n".join(heading + _section(group_runs)))
    if left_out:  # never drop a run silently
        lines = ["Not in the table:"] + [f"- `{r['run_dir']}`: {r['why']}" for r in left_out]
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"
