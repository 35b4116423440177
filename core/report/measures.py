"""The numbers behind strata.png and coverage.png: a CCS selection recounted per stratum, and
each coreset's nearest distances (AUCpr, paper section 3.1)."""

import torch

from core import coverage
from core.coreset import hard_cut_survivors, stratify
from core.errors import UserError
from core.report.inputs import load_features, read_indices, recorded_score_path
from core.report.runs import by_group, note
from core.run_folder import features_beside


def _survivors(data_score: dict, info: dict, mis_key: str) -> torch.Tensor:
    """The examples the run's hard cut kept, by core.coreset's own rule."""
    total = len(data_score[info["key"]])
    mis_ratio = float(info.get("mis_ratio") or 0.0)
    return hard_cut_survivors(
        data_score, total, mis_ratio, mis_key, bool(info.get("mis_descending"))
    )


def _positions(survivors: torch.Tensor, total: int, indices) -> torch.Tensor:
    """Each coreset index's position among the survivors; -1 where it fell in the hard cut."""
    position = torch.full((total,), -1, dtype=torch.long)
    position[survivors] = torch.arange(len(survivors))
    indices = torch.as_tensor(indices, dtype=torch.long)
    if int(indices.max()) >= total:
        raise UserError(f"coreset indices go past the {total} examples of the score file")
    return position[indices]


def strata_counts(data_score: dict, info: dict, indices: torch.Tensor) -> dict:
    """Recount a CCS selection: the hard cut, the strata of the survivors and the picks in each.

    ``info`` is the run's ``coreset`` entry of metrics.json; the hard cut and the strata edges
    come from core.coreset, the functions the selection itself used.
    """
    key, mis_key = info["key"], info.get("mis_key") or "accumulated_margin"
    for name in (key, mis_key):
        if name not in data_score:
            raise UserError(f"the score file has no {name!r} (it has {sorted(data_score)})")
    scores = data_score[key]
    survivors = _survivors(data_score, info, mis_key)
    removed = torch.ones(len(scores), dtype=torch.bool)
    removed[survivors] = False
    stratum_of_each, edges = stratify(scores[survivors], int(info.get("strata") or 50))
    picked = _positions(survivors, len(scores), indices)
    strata = len(edges) - 1
    return {
        "key": key,
        "mis_key": mis_key,
        "edges": edges.double(),
        "sizes": torch.bincount(stratum_of_each, minlength=strata),
        "taken": torch.bincount(stratum_of_each[picked[picked >= 0]], minlength=strata),
        "cut_scores": scores[removed].double(),
        "picked_in_cut": int((picked < 0).sum()),
        # under --label-noise: where the flipped examples sit on the score axis
        "mislabeled_scores": (
            scores[data_score["noisy_label"].bool()].double()
            if "noisy_label" in data_score
            else None
        ),
    }


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
        try:
            indices = read_indices(run, len(features))
        except UserError as exc:
            note(f"no AUCpr for {run['run_dir']}: {exc}")
            continue
        # the distances, not just their mean (coverage.aucpr), also draw the coverage curve
        distances[run["run_dir"]] = coverage.nearest_distances(
            features, features[indices], device=device
        )
        run["aucpr"] = coverage.aucpr(distances[run["run_dir"]])
    return distances


def _features_path(name: str, runs: list[dict], score_flag: str | None) -> str | None:
    """The features file of one dataset / network: beside the one score file its coreset runs
    were selected from (random runs record one too, or share their group's)."""
    scores = {score_flag} if score_flag else {recorded_score_path(r) for r in runs} - {None}
    if len(scores) == 1:
        return features_beside(scores.pop())
    if scores:
        why = f"its runs record {len(scores)} different score files ({', '.join(sorted(scores))})"
    else:
        why = "no run records the score file (coreset.data_score_path) the features lie beside"
    note(f"no AUCpr for {name}: {why}; pass --features")
    return None


def _features_or_note(name: str, path: str, given: bool) -> torch.Tensor | None:
    try:
        return load_features(path)
    except UserError as exc:
        if given:  # named on the command line: the user's mistake, not a missing extra
            raise
        note(f"no AUCpr for {name}: {exc}; pass --features to name another")
        return None


def coverage_distances(runs: list[dict], features_flag=None, score_flag=None, device=None):
    """Distances of every coreset run that has features and indices; sets their AUCpr.

    Returns ({run_dir: distances}, [features files used]). Each dataset / network gets its own
    features file unless ``features_flag`` names one for all.
    """
    distances, loaded = {}, {}
    for name, group_runs in by_group(runs).items():
        if all(run["method"] == "full" for run in group_runs):
            continue
        path = features_flag or _features_path(name, group_runs, score_flag)
        if path is not None and path not in loaded:
            loaded[path] = _features_or_note(name, path, given=features_flag is not None)
        if path is not None and loaded[path] is not None:
            distances.update(compute_distances(group_runs, loaded[path], device))
    used = [path for path, features in loaded.items() if features is not None]
    return distances, used
