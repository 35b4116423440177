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
    def authors_td(self) -> str:
        """The authors' train.py dynamics log: every batch's fp16 log-softmax (core.authors_td)."""
        return self._file(f"td-{self.task}.pickle")

    @property
    def authors_td_dir(self) -> str:
        """The authors' train_imagenet.py logs, td-<task>-epoch-<i>.pickle for i = 1, 2, ..."""
        return self._file("training-dynamics")

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
