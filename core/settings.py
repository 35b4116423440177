"""Settings as values: `Selection` (which coreset) and `RunSettings` (how a run trains), frozen,
built once where the flags are parsed and checked there, once, raising UserError.

Each knows its record (`record()`: what metrics.json and the checkpoint store) and the part of
it that decides whether a run folder may be resumed (`fingerprint()`). Core functions take
these objects whole; none receives an argparse.Namespace.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from core import methods
from core.data.valsplit import check_val_size
from core.errors import UserError
from core.run_folder import features_beside


@dataclass(frozen=True)
class Selection:
    """A coreset selection: the mode, its budget and score settings, the mode's own parameters
    (`params`, defaults filled in from its registry entry) and the files it reads."""

    mode: str
    ratio: float
    key: str | None = None
    descending: bool = False
    class_balanced: bool = False
    mis_ratio: float = 0.0
    mis_key: str = "accumulated_margin"
    mis_descending: bool = False
    strata: int = 50
    params: dict = field(default_factory=dict)
    data_score_path: str | None = None
    features_path: str | None = None

    def __post_init__(self):
        entry = methods.method(self.mode)
        if self.ratio is None:
            raise UserError("--coreset-ratio: a coreset needs a ratio in (0, 1]")
        if not 0 < self.ratio <= 1:
            raise UserError(
                f"--coreset-ratio: the coreset ratio must be in (0, 1], got {self.ratio}"
            )
        if not 0 <= self.mis_ratio < 1:
            raise UserError(f"--mis-ratio: the mis ratio must be in [0, 1), got {self.mis_ratio}")
        if entry.hard_cut and self.ratio + self.mis_ratio > 1:
            raise UserError(
                f"--coreset-ratio + --mis-ratio must be at most 1, got {self.ratio} + "
                f"{self.mis_ratio}: not enough examples survive the hard cut"
            )
        check_strata(self.strata)
        key = self.key or entry.default_key
        if entry.needs_key and not key:
            raise UserError(
                f"--coreset-key: coreset mode '{self.mode}' needs a score key to order by"
            )
        own = {p.name: p for p in entry.params}
        others = {p.name: p for p in methods.all_params()}
        values = {}
        for name, value in dict(self.params).items():
            if name not in others:
                raise UserError(f"unknown selection parameter '{name}'")
            others[name].check(value)  # every mode's parameters are checked in every mode
            if name in own:
                values[name] = own[name].check(value)
        values = {p.name: values.get(p.name, p.default) for p in entry.params}
        for name, value in (("key", key), ("params", values)):
            object.__setattr__(self, name, value)

    @classmethod
    def build(cls, mode, ratio, **settings) -> Selection:
        """A Selection from flat keyword arguments, the mode's parameters among them
        (`d2_neighbors=3`): the library's keyword form."""
        fields = {f.name for f in dataclasses.fields(cls)} - {"params"}
        params = {k: settings.pop(k) for k in list(settings) if k not in fields}
        return cls(mode=mode, ratio=ratio, params=params, **settings)

    @classmethod
    def from_args(cls, args) -> Selection | None:
        """The coreset flags of train.py / train_imagenet.py, or None without --coreset."""
        if not args.coreset:
            return None
        entry = methods.method(args.coreset_mode)
        if entry.inputs and not args.data_score_path:
            raise UserError(f"--coreset-mode {args.coreset_mode} needs --data-score-path")
        features = None
        if methods.FEATURES in entry.inputs:
            features = args.features_path or features_beside(args.data_score_path)
        return cls(
            mode=args.coreset_mode,
            ratio=args.coreset_ratio,
            key=args.coreset_key,
            descending=bool(args.data_score_descending),
            class_balanced=bool(args.class_balanced),
            mis_ratio=args.mis_ratio,
            mis_key=args.mis_key,
            mis_descending=bool(args.mis_data_score_descending),
            strata=args.strata,
            params={p.name: getattr(args, p.name) for p in methods.all_params()},
            data_score_path=args.data_score_path,
            features_path=features,
        )

    @property
    def method(self) -> methods.Method:
        return methods.method(self.mode)

    @property
    def name(self) -> str:
        """The method's name in results (ccs, random, forgetting, ...)."""
        return self.method.name_of(self.key)

    def reads(self, what: str) -> bool:
        return what in self.method.inputs

    def record(self, absolute_paths: bool = False) -> dict:
        """The settings as metrics.json and the checkpoint store them: the common settings,
        the mode's own parameters, the score file, and the features file where one is read."""
        record = {
            "mode": self.mode,
            "ratio": self.ratio,
            "key": self.key,
            "descending": self.descending,
            "class_balanced": self.class_balanced,
            "mis_ratio": self.mis_ratio,
            "mis_key": self.mis_key,
            "mis_descending": self.mis_descending,
            "strata": self.strata,
            **self.params,
        }
        files = {"data_score_path": self.data_score_path}
        if self.features_path is not None:
            files["features_path"] = self.features_path
        if absolute_paths:  # the report finds them from any folder
            files = {k: os.path.abspath(v) if v else v for k, v in files.items()}
        return {**record, **files}


def check_strata(strata) -> None:
    if isinstance(strata, bool) or int(strata) != strata or strata < 1:
        raise UserError(f"--strata: the number of strata must be a positive integer, got {strata}")


# --lr and --batch-size when not given: the reference scripts' (paper) and airbench94's (fast; lr
# per 1024 examples, core.training.recipe.FastRecipe)
RECIPE_DEFAULTS = {
    "paper": {"lr": 0.1, "batch_size": 256},
    "fast": {"lr": 11.5, "batch_size": 1024},
}

# What each launcher's run folder must keep to be resumed (besides the selection and the number
# of processes). The names and the order are those of every run folder made so far.
RESUME_FIELDS = {
    "train.py": (
        "dataset",
        "network",
        "epochs",
        "iterations",
        "batch_size",
        "lr",
        "seed",
        "train_subset",
        "test_subset",
        "label_noise",
        "label_noise_seed",
    ),
    "train_imagenet.py": (
        "network",
        "epochs",
        "iterations",
        "batch_size",
        "lr",
        "seed",
        "scheduler",
        "image_size",
        "ignore_td",
    ),
}


@dataclass(frozen=True)
class RunSettings:
    """How one run trains: data, network, schedule, subsets, validation split, label noise,
    seed, precision, where it lives, and the coreset it trains on (None: all data, recording dynamics)."""

    script: str  # train.py or train_imagenet.py: which flags it has and what resumes it
    dataset: str
    network: str
    base_dir: str
    task_name: str
    data_dir: str
    epochs: int | None = None
    iterations: int | None = None
    batch_size: int | None = None  # None: the recipe's default
    lr: float | None = None
    recipe: str = "paper"
    seed: int = 0
    iterations_per_testing: int = 800
    snapshot_epochs: tuple = ()
    dynamics_window: int | None = None  # TDDS, Dyn-Unc and DUAL windows (None: the authors')
    dynamics_epochs: int | None = None  # TDDS's trajectory and DUAL's epochs (None: theirs)
    precision: str = "auto"
    compile: bool = False
    checkpoint_interval: float = 60.0
    no_resume: bool = False
    device: str = "auto"
    gpuid: str | None = None
    # train.py
    train_subset: int = 0
    test_subset: int = 0
    label_noise: float | None = None
    label_noise_seed: int = 0
    download: bool = True
    # both: training examples held out for validation (core.data.valsplit); 0 = none
    val_size: int = 0
    # train_imagenet.py
    scheduler: str = "cosine"
    image_size: int | None = None
    ignore_td: bool = False
    workers: int | None = None
    selection: Selection | None = None

    def __post_init__(self):
        if self.recipe not in RECIPE_DEFAULTS:
            raise UserError(f"--recipe {self.recipe!r}: choose paper or fast")
        for name, value in RECIPE_DEFAULTS[self.recipe].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.recipe == "fast" and self.script != "train.py":
            raise UserError("--recipe fast: airbench94's recipe is for the CIFAR family (train.py)")
        name = self.task_name
        if not name or name in (".", "..") or os.sep in name or "/" in name or name.startswith("."):
            raise UserError(
                f"--task-name {name!r} must be a plain folder name (no '/', not empty, not "
                "starting with '.'); --base-dir says where it goes"
            )
        if (self.epochs is None) == (self.iterations is None):
            raise UserError("give exactly one of --epochs and --iterations")
        flag, length = (
            ("--epochs", self.epochs)
            if self.epochs is not None
            else ("--iterations", self.iterations)
        )
        if length <= 0:
            raise UserError(f"{flag} must be positive, got {length}")
        if self.batch_size <= 0:
            raise UserError(f"--batch-size must be positive, got {self.batch_size}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if not math.isfinite(self.checkpoint_interval) or self.checkpoint_interval < 0:
            raise UserError(
                f"--checkpoint-interval must be 0 or more seconds, got {self.checkpoint_interval}"
            )
        if self.iterations_per_testing <= 0:
            raise UserError(
                f"--iterations-per-testing must be positive, got {self.iterations_per_testing}"
            )
        check_imagefolder_settings(self.workers, self.image_size)
        for flag, value in (("--train-subset", self.train_subset),
                            ("--test-subset", self.test_subset)):  # fmt: skip
            if value < 0:  # the upper bound, the dataset's size, is checked once it is read
                raise UserError(f"{flag} must be 0 (all) or a positive size, got {value}")
        noise = self.label_noise
        if noise is not None and not (math.isfinite(noise) and 0 <= noise < 1):
            raise UserError(f"--label-noise must be in [0, 1), got {noise}")
        check_val_size(self.val_size)
        object.__setattr__(self, "snapshot_epochs", parse_epochs(self.snapshot_epochs))
        for flag, value in (("--dynamics-window", self.dynamics_window),
                            ("--dynamics-epochs", self.dynamics_epochs)):  # fmt: skip
            if value is not None and value < (2 if flag == "--dynamics-window" else 1):
                raise UserError(
                    f"{flag} must be at least {2 if 'window' in flag else 1}, got {value}"
                )
        if (self.dynamics_window or 0) > (self.dynamics_epochs or math.inf):
            raise UserError("--dynamics-window must not exceed --dynamics-epochs")

    def dynamics_options(self) -> dict:
        """TrainingDynamics' window options these settings ask for (none: the authors')."""
        options = {}
        if self.dynamics_window is not None:
            w = self.dynamics_window
            options.update(tdds_window=w, dyn_unc_window=w, dual_window=w)
        if self.dynamics_epochs is not None:
            options.update(tdds_epochs=self.dynamics_epochs, dual_epochs=self.dynamics_epochs)
        return options

    @classmethod
    def from_args(cls, args, script: str, **resolved) -> RunSettings:
        """The flags of train.py or train_imagenet.py (those the script has); `resolved`
        overrides or adds values the script decides (dataset for ImageNet)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"script", "selection", "download"}
        values = {name: getattr(args, name) for name in names if hasattr(args, name)}
        values.update(resolved)
        if hasattr(args, "no_download"):
            values["download"] = not args.no_download
        selection = Selection.from_args(args)
        return cls(script=script, selection=selection, **values)

    @classmethod
    def from_record(cls, record: dict) -> RunSettings:
        """Back from `record()` (this project's checkpoints), or from the `args` dict that
        checkpoints made before settings objects hold: unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in names and k != "selection"}
        values.setdefault("script", "train_imagenet.py" if "image_size" in record else "train.py")
        values.setdefault(
            "dataset", "imagenet" if values["script"] == "train_imagenet.py" else "cifar10"
        )
        if "no_download" in record:
            values["download"] = not record["no_download"]
        return cls._unchecked(values)

    @classmethod
    def _unchecked(cls, values: dict) -> RunSettings:
        """A recorded run's settings, as they were (not checked again: they trained)."""
        settings = object.__new__(cls)
        for f in dataclasses.fields(cls):
            default = None if f.default is dataclasses.MISSING else f.default
            object.__setattr__(settings, f.name, values.get(f.name, default))
        return settings

    @property
    def imagenet(self) -> bool:
        return self.script == "train_imagenet.py"

    def fingerprint(self) -> dict:
        """The settings a run folder must keep to be resumed: the launcher's own, and the
        selection's (its record with the paths as given; {} for full data)."""
        settings = {name: getattr(self, name) for name in RESUME_FIELDS[self.script]}
        # only where asked: folders made before these flags resume as they were
        if self.recipe != "paper":
            settings["recipe"] = self.recipe
        if self.snapshot_epochs:
            settings["snapshot_epochs"] = list(self.snapshot_epochs)
        for name in ("dynamics_window", "dynamics_epochs"):
            if getattr(self, name) is not None:
                settings[name] = getattr(self, name)
        if self.val_size:
            settings["val_size"] = self.val_size
        # full data: the score path of a run without one, as run folders have always recorded
        coreset = self.selection.record() if self.selection else {"data_score_path": None}
        settings["coreset"] = coreset
        return settings

    def record(self) -> dict:
        """Every setting, as plain values (the checkpoint's "settings")."""
        record = dataclasses.asdict(self)
        record["selection"] = None if self.selection is None else self.selection.record()
        if not self.val_size:  # as every record made before --val-size
            del record["val_size"]
        return record

    def metrics_record(self) -> dict:
        """What metrics.json says about how the run was made."""
        selection = self.selection.record(absolute_paths=True) if self.selection else None
        record = {
            "seed": self.seed,
            "dataset": self.dataset,
            "network": self.network,
            "coreset": selection,
        }
        if self.val_size:
            record["val_size"] = self.val_size
        return record


def parse_epochs(value) -> tuple[int, ...]:
    """--snapshot-epochs "10,30" (or a sequence) as sorted distinct positive epoch counts."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not all(p.isdigit() for p in parts):
            raise UserError(
                f"--snapshot-epochs: {value!r} is not a list of epoch counts like 10,30"
            )
        value = [int(p) for p in parts]
    epochs = tuple(sorted({int(k) for k in value or ()}))
    if any(k < 1 for k in epochs):
        raise UserError(f"--snapshot-epochs: a snapshot comes after 1 or more epochs, got {value}")
    return epochs


def check_imagefolder_settings(workers, image_size) -> None:
    if workers is not None and workers < 0:
        raise UserError(f"--workers must be 0 or more, got {workers}")
    if image_size is not None and image_size < 8:
        raise UserError(f"--image-size must be at least 8 pixels, got {image_size}")
