"""The one place that names the files of a run folder, ``<base-dir>/<task-name>/``.

Every script and module that reads or writes a run's files asks this class for the path,
so the layout (which follows the reference scripts' names, see docs/FAITHFULNESS.md) is
spelled once.
"""

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class RunFolder:
    base_dir: str
    task: str

    @property
    def dir(self) -> str:
        return os.path.join(self.base_dir, self.task)

    def _file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    @property
    def last(self) -> str:
        """Checkpoint to resume from (and the final model once finished)."""
        return self._file("ckpt-last.pt")

    @property
    def best(self) -> str:
        return self._file("ckpt-best.pt")

    @property
    def log(self) -> str:
        return self._file(f"log-train-{self.task}.log")

    @property
    def td(self) -> str:
        """Training-dynamics summary (O(N) per-example totals)."""
        return self._file(f"td-{self.task}.pt")

    @property
    def metrics(self) -> str:
        return self._file("metrics.json")

    @property
    def indices(self) -> str:
        """The coreset a coreset run trained on (indices into the training set)."""
        return self._file("coreset-indices.pt")

    @property
    def data_score(self) -> str:
        """Default score file written by generate_importance_score*.py."""
        return self._file(f"data-score-{self.task}.pickle")

    @property
    def features(self) -> str:
        """Penultimate-layer features of the final model (coverage, moderate, D2, k-center)."""
        return self._file(f"features-{self.task}.pt")


def features_beside(score_path: str) -> str:
    """The features file that generate_importance_score*.py writes with a score file: the
    score file's folder is the scored run's folder <base-dir>/<task>, which holds
    features-<task>.pt (RunFolder.features). The rule holds for the default score path
    (data-score-<task>.pickle in the run folder); a score file written elsewhere with
    --data-score-path has no features beside it, so pass the features path explicitly."""
    run_dir = os.path.normpath(os.path.dirname(score_path) or os.curdir)
    task = os.path.basename(os.path.abspath(run_dir))
    if os.path.basename(run_dir) != task:  # "." or "..": the folder's name needs its path
        run_dir = os.path.abspath(run_dir)
    return RunFolder(os.path.dirname(run_dir), task).features  # relative stays relative
