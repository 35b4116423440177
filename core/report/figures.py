"""The report's figures: accuracy.png (the paper's figure 5), strata.png (how CCS split its
budget over the strata) and coverage.png (coverage curves and AUCpr, paper section 3.1)."""

import math

import torch

from core import coverage
from core.fileio import atomic_write
from core.report.runs import by_group, cells, choose_variants, group, method_rank, percent, stats

DPI = 150
MAX_CUT_BINS = 200


def _new_figure(columns: int = 1):
    # Lazy: matplotlib takes over half a second to import, which code that only collects
    # runs or builds tables need not pay. Figure without pyplot: no global backend state,
    # renders with Agg.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4 * columns + 1.6, 4.6), dpi=DPI, layout="constrained")
    return fig, fig.subplots(1, columns, squeeze=False)[0]


def _save_figure(fig, path: str) -> None:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI))


# ----------------------------------------------------------------------------- accuracy.png


def _draw_accuracy(
    ax, name: str, runs: list[dict], field="best_acc", what="best test accuracy", full="full data"
) -> None:
    """``field`` (a fraction, drawn in %) vs pruning rate, one line per method; the full-data
    run's value as a dashed line."""
    known = cells(runs, field)
    labels = sorted({label for (_, label, _) in known}, key=method_rank)
    for label in labels:
        points = sorted((at, values) for (_, lab, at), values in known.items() if lab == label)
        if label == "full":
            mean = stats([v for _, values in points for v in values])[0] * 100
            ax.axhline(mean, linestyle="--", color="black", label=f"{full} ({mean:.1f}%)")
            continue
        summaries = [stats(values) for _, values in points]
        ax.errorbar(
            [at * 100 for at, _ in points],
            [mean * 100 for mean, _, _ in summaries],
            yerr=[std * 100 for _, std, _ in summaries],
            marker="o",
            capsize=3,
            label=label,
        )
    rates = sorted({at for (_, label, at) in known if label != "full"})
    if rates:
        ax.set_xticks([at * 100 for at in rates])
    ax.set_xlabel("pruning rate (%)")
    ax.set_ylabel(f"{what} (%)")
    ax.set_title(f"{name}: {what} vs pruning rate")
    ax.grid(alpha=0.3)
    # beside the axes, not over them: at high pruning rates the points spread over the range
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")


def plot_mislabeled(runs: list[dict], path: str) -> None:
    """mislabeled.png: the share of mislabeled examples each coreset kept vs pruning rate, the
    dataset's noise rate as the dashed line (label-noise runs only)."""
    groups = by_group([r for r in runs if r.get("mislabeled_share") is not None])
    fig, axes = _new_figure(len(groups))
    for ax, (name, group_runs) in zip(axes, groups.items()):
        kept = choose_variants(group_runs)[0]
        _draw_accuracy(ax, name, kept, "mislabeled_share", "mislabeled share kept", "dataset")
    _save_figure(fig, path)


def plot_accuracy(runs: list[dict], path: str) -> None:
    """accuracy.png: test accuracy vs pruning rate, one line per method, error bars over seeds,
    the full-data accuracy as a dashed line (the paper's figure 5). One panel per dataset."""
    groups = by_group(runs)
    fig, axes = _new_figure(len(groups))
    for ax, (name, group_runs) in zip(axes, groups.items()):
        _draw_accuracy(ax, name, choose_variants(group_runs)[0])
    _save_figure(fig, path)


# ----------------------------------------------------------------------------- strata.png


def _cut_bins(cut_scores: torch.Tensor, low: float, width: float) -> torch.Tensor:
    """Bins for the hard-cut scores, aligned with the strata where that stays readable."""
    first = math.floor((float(cut_scores.min()) - low) / width)
    last = max(math.ceil((float(cut_scores.max()) - low) / width) + 1, first + 2)
    if last - first <= MAX_CUT_BINS:
        return torch.tensor([low + width * i for i in range(first, last)], dtype=torch.float64)
    # cut scores spread far wider than the strata: coarser bins of their own
    return torch.linspace(float(cut_scores.min()), float(cut_scores.max()), MAX_CUT_BINS + 1)


def _draw_hard_cut(ax, counts: dict, width: float, beta: float) -> None:
    """The hard-cut examples' scores, binned like the strata: grey bars in a shaded region
    when the cut used the stratification score itself, else a dashed outline."""
    cut_scores, low = counts["cut_scores"], float(counts["edges"][0])
    if len(cut_scores) == 0:
        return
    heights, bin_edges = torch.histogram(cut_scores, _cut_bins(cut_scores, low, width).double())
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


def _draw_strata(ax, counts: dict, width: float) -> None:
    """Per stratum its size (light) and how many examples CCS took from it (dark)."""
    lefts = counts["edges"][:-1].tolist()
    ax.bar(
        lefts,
        counts["sizes"].tolist(),
        width=width,
        align="edge",
        color="tab:blue",
        alpha=0.35,
        edgecolor="white",
        linewidth=0.3,
        label=f"stratum size ({len(lefts)} strata)",
    )
    ax.bar(
        lefts,
        counts["taken"].tolist(),
        width=width,
        align="edge",
        color="tab:blue",
        label=f"taken by CCS ({int(counts['taken'].sum())} examples)",
    )


def _draw_mislabeled(ax, counts: dict, width: float) -> None:
    """A red outline: how many flipped (--label-noise) examples each score bin holds."""
    scores = counts.get("mislabeled_scores")
    if scores is None or len(scores) == 0:
        return
    bins = _cut_bins(scores, float(counts["edges"][0]), width)
    heights, bin_edges = torch.histogram(scores, bins.double())
    label = f"mislabeled ({len(scores)} examples)"
    ax.stairs(heights.tolist(), bin_edges.tolist(), color="tab:red", lw=1.2, label=label, zorder=4)


def plot_strata(run: dict, counts: dict, path: str) -> None:
    """strata.png: a CCS run's stratification score split into its strata; per stratum its size
    and how many examples CCS took; the examples removed by the hard cut in grey; under label
    noise, the mislabeled examples as a red outline.

    ``counts`` is measures.strata_counts of the run."""
    edges = counts["edges"]
    width = float(edges[1] - edges[0])
    fig, (ax,) = _new_figure()
    _draw_hard_cut(ax, counts, width, run["mis_ratio"])
    _draw_strata(ax, counts, width)
    _draw_mislabeled(ax, counts, width)
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 30)  # headroom on the log axis, so the legend hides no bar
    ax.set_xlabel(f"{counts['key']} score")
    ax.set_ylabel("examples (log scale)")
    ax.set_title(f"{group(run)}: CCS strata at {percent(run['pruning_rate'])} pruning")
    ax.legend(loc="upper left", fontsize="small", framealpha=0.9, ncol=2)
    _save_figure(fig, path)


# ----------------------------------------------------------------------------- coverage.png


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
    ax.set_title(f"Coverage of the training set at {percent(rate)} pruning")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    _save_figure(fig, path)
