"""Per-example importance scores: training dynamics (online) and post-training inference.

The reference pickles every batch's fp16 log-softmax and replays the list afterwards
(E*N*C*2 bytes and a GPU->CPU copy per step). Here the same statistics are accumulated
online in O(N) device memory with no host sync in `update`; see docs/FAITHFULNESS.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F

from core.errors import UserError
from core.window_scores import SCORE_KEYS as WINDOW_SCORE_KEYS
from core.window_scores import WindowScores

# Additive per-example counters (int32) and sums (float32), stored as rows of one tensor each
# so an epoch-end all-reduce is two collective calls.
COUNT_FIELDS = ("correctness", "forgetting", "visits")
SUM_FIELDS = ("accumulated_margin", "el2n")

STATE_TENSORS = (
    "_counts",
    "_sums",
    "_new_counts",
    "_new_sums",
    "_last_correct",
    "_visited_since_sync",
)
# Score-file keys the reference stores as int32 (make_data_score writes the others as float32).
REFERENCE_INT_KEYS = ("targets", "correctness", "forgetting", "last_correctness")
SNAPSHOT_MARK = "@"  # score key "dual@30": the score after the first 30 epochs


def snapshot_key(name: str, epochs: int) -> str:
    return f"{name}{SNAPSHOT_MARK}{int(epochs)}"


def snapshot_epochs_of(scores: Mapping) -> list[int]:
    """The K of every `name@K` key: the epoch counts a score dict holds snapshots for."""
    return sorted({int(k.rsplit(SNAPSHOT_MARK, 1)[1]) for k in scores if SNAPSHOT_MARK in k})


def scores_at(scores: Mapping, epochs: int) -> dict:
    """`scores` (a score file or `TrainingDynamics.scores()`) with every dynamics score taken
    from the first `epochs` epochs: each `name@K` replaces `name`; the rest (targets, the final
    model's entropy, loss, moderate_distance) is kept; the snapshot keys themselves are dropped.
    """
    epochs = int(epochs)
    if epochs not in snapshot_epochs_of(scores):
        held = ", ".join(map(str, snapshot_epochs_of(scores))) or "none"
        raise UserError(
            f"--score-epochs {epochs}: the scores hold no snapshot after {epochs} epochs "
            f"(snapshots: {held}); record one with TrainingDynamics(snapshot_epochs=...)"
        )
    # a dynamics score is taken from the snapshot or not at all: one without a complete
    # window by then has no snapshot, and the whole run's value would pass for it
    dynamics = {k.split(SNAPSHOT_MARK, 1)[0] for k in scores if SNAPSHOT_MARK in k}
    dynamics |= set(WINDOW_SCORE_KEYS)
    out = {k: v for k, v in scores.items() if SNAPSHOT_MARK not in k and k not in dynamics}
    suffix = f"{SNAPSHOT_MARK}{epochs}"
    out.update({k[: -len(suffix)]: v for k, v in scores.items() if k.endswith(suffix)})
    return out


def batch_statistics(logits: torch.Tensor, targets: torch.Tensor):
    """Per-example (correct, margin, el2n) of one batch, computed in float32.

    margin = p_y - max_{k != y} p_k on probabilities (0 when another class ties with y);
    el2n = ||p - onehot(y)||_2.
    """
    return _statistics(logits.float().softmax(dim=1), targets)


def _statistics(probs: torch.Tensor, targets: torch.Tensor):
    targets = targets.long().unsqueeze(1)
    correct = probs.argmax(dim=1) == targets.squeeze(1)
    target_prob = probs.gather(1, targets).squeeze(1)
    others = probs.scatter(1, targets, float("-inf"))
    margin = target_prob - others.amax(dim=1)
    onehot = torch.zeros_like(probs).scatter_(1, targets, 1.0)
    el2n = torch.linalg.vector_norm(probs - onehot, dim=1)
    return correct, margin, el2n


class TrainingDynamics:
    """Online accumulator of the reference's training-dynamics scores, O(N) memory.

    Call `update` with the logits of every training forward pass. Totals live in
    `_counts`/`_sums`; the additions since the last `all_reduce` live in `_new_counts`/
    `_new_sums`, so a DDP sync sums exactly the per-rank contributions.

    `extra_scores=True` adds TDDS, Dyn-Unc, DUAL and the logit margin (core.window_scores;
    `window_options` go to WindowScores: tdds, tdds_epochs, ... dual_window).
    `snapshot_epochs=(K, ...)` keeps every score as it stood after the first K epochs
    (`name@K` keys in `scores()`; `scores_at` picks them). With either, an epoch ends when
    `update` first sees a later epoch number, or at `scores()`: epochs must come in order.
    """

    def __init__(
        self,
        num_examples: int,
        num_classes: int,
        el2n_epochs: int = 10,
        device=None,
        *,
        extra_scores: bool = False,
        snapshot_epochs=(),
        **window_options,
    ):
        self.num_examples = int(num_examples)
        self.num_classes = int(num_classes)
        self.el2n_epochs = int(el2n_epochs)
        # device=None: state follows the device of the first update (no copies in the hot path).
        self._follow_first_update = device is None
        self.device = torch.device("cpu" if device is None else device)
        if window_options and not extra_scores:
            raise UserError(f"{', '.join(window_options)}: only with extra_scores=True")
        self.snapshot_epochs = tuple(sorted({int(k) for k in snapshot_epochs}))
        if any(k < 1 for k in self.snapshot_epochs):
            raise UserError("snapshot_epochs: a snapshot is taken after 1 or more epochs")
        self._windows = (
            WindowScores(self.num_examples, self.num_classes, self.device, **window_options)
            if extra_scores
            else None
        )
        self._epoch = -1  # the epoch being recorded (not yet ended)
        self._snapshots: dict[int, dict[str, torch.Tensor]] = {}  # device tensors
        self._allocate()

    @property
    def _tracks_epochs(self) -> bool:
        return self._windows is not None or bool(self.snapshot_epochs)

    def _allocate(self) -> None:
        n, dev = self.num_examples, self.device
        self._counts = torch.zeros(len(COUNT_FIELDS), n, dtype=torch.int32, device=dev)
        self._sums = torch.zeros(len(SUM_FIELDS), n, dtype=torch.float32, device=dev)
        self._new_counts = torch.zeros_like(self._counts)
        self._new_sums = torch.zeros_like(self._sums)
        self._last_correct = torch.zeros(n, dtype=torch.int32, device=dev)
        self._visited_since_sync = torch.zeros(n, dtype=torch.bool, device=dev)

    def _move_to(self, device: torch.device) -> None:
        for name in STATE_TENSORS:
            setattr(self, name, getattr(self, name).to(device))
        if self._windows is not None:
            self._windows.to(device)
        self.device = device

    def _start_epoch(self, epoch: int) -> None:
        """Host-side bookkeeping when `update` sees a new epoch number: end the previous
        ones (window scores, snapshots), all on the device."""
        if epoch < self._epoch:
            raise UserError(f"training dynamics: epoch {epoch} after epoch {self._epoch}")
        for ended in range(self._epoch, epoch) if self._epoch >= 0 else ():
            if self._windows is not None:
                self._windows.end_epoch(ended)
            if ended + 1 in self.snapshot_epochs:
                snapshot = self._device_scores(ended, ended=True)
                self._snapshots[ended + 1] = {k: v.clone() for k, v in snapshot.items()}
        self._epoch = epoch

    @torch.no_grad()
    def update(self, epoch: int, index: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor):
        """Record one training batch: `index` are dataset positions, unique within the batch.

        `epoch` is a Python int (the EL2N cut-off is a host-side decision). No host sync.
        """
        if self._follow_first_update:
            self._follow_first_update = False
            if logits.device != self.device:
                self._move_to(logits.device)
        if self._tracks_epochs and epoch != self._epoch:
            self._start_epoch(epoch)
        index = index.to(self.device, torch.long)
        logits, targets = logits.to(self.device), targets.to(self.device)
        probs = logits.float().softmax(dim=1)
        correct, margin, el2n = _statistics(probs, targets)
        if self._windows is not None:
            self._windows.update(epoch, index, probs, logits, targets)
        correct = correct.int()
        forgot = (self._last_correct[index] == 1) & (correct == 0)

        counts = torch.stack((correct, forgot.int(), torch.ones_like(correct)))
        self._new_counts.index_add_(1, index, counts)
        self._new_sums[0].index_add_(0, index, margin)
        if epoch < self.el2n_epochs:
            self._new_sums[1].index_add_(0, index, el2n)
        self._last_correct[index] = correct
        self._visited_since_sync[index] = True

    def _totals(self):
        return self._counts + self._new_counts, self._sums + self._new_sums

    def _device_scores(self, epoch: int, ended: bool) -> dict[str, torch.Tensor]:
        """Every score once `epoch` has ended (`ended`: already closed), on the device."""
        counts, sums = self._totals()
        out = {name: counts[i] for i, name in enumerate(COUNT_FIELDS)}
        out.update({name: sums[i] for i, name in enumerate(SUM_FIELDS)})
        out["last_correctness"] = self._last_correct.clone()
        if self._windows is not None:
            out.update(self._windows.scores(epoch, ended))
        return out

    def scores(self) -> dict[str, torch.Tensor]:
        """CPU copies of the totals: int32 counters, float32 sums; with extra_scores the
        window scores, and `name@K` snapshots. The epoch under way counts as ended. A host
        sync."""
        out = self._device_scores(self._epoch, ended=False)
        snapshots = dict(self._snapshots)
        if self._epoch + 1 in self.snapshot_epochs:  # the run ends on a snapshot epoch
            snapshots.setdefault(self._epoch + 1, dict(out))
        for k, snapshot in sorted(snapshots.items()):
            out.update({snapshot_key(name, k): v for name, v in snapshot.items()})
        # copies, not row views: a saved view would carry the whole [fields, N] storage
        return {name: value.to("cpu", copy=True) for name, value in out.items()}

    def state_dict(self) -> dict:
        """Plain tensors and ints (loads with torch.load(weights_only=True)).

        Under DDP take it after `all_reduce`, when every rank holds the same totals.
        """
        counts, sums = self._totals()
        state = {
            "num_examples": self.num_examples,
            "num_classes": self.num_classes,
            "el2n_epochs": self.el2n_epochs,
            "counts": counts.cpu(),
            "sums": sums.cpu(),
            "last_correctness": self._last_correct.cpu(),
        }
        if self._tracks_epochs:
            state["epoch"] = self._epoch
            state["snapshot_epochs"] = list(self.snapshot_epochs)
            state["snapshots"] = {
                k: {name: v.cpu() for name, v in snapshot.items()}
                for k, snapshot in self._snapshots.items()
            }
        if self._windows is not None:
            state["window_scores"] = self._windows.state_dict()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        """Restore totals from `state_dict()` onto this accumulator's device."""
        if int(state["num_examples"]) != self.num_examples:
            raise UserError(
                f"training dynamics are for {int(state['num_examples'])} examples, "
                f"the training set has {self.num_examples}"
            )
        self.num_classes = int(state["num_classes"])
        self.el2n_epochs = int(state["el2n_epochs"])
        self._allocate()
        # Where an uninterrupted run holds these totals: one process never syncs, so everything
        # sits in the running sums; under DDP the checkpoint follows a sync, which folded them
        # into the synced totals. Restoring them there keeps float additions in the same order,
        # so a resumed run's scores equal an uninterrupted run's bit for bit.
        dist = torch.distributed
        synced = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        counts, sums = (self._counts, self._sums) if synced else (self._new_counts, self._new_sums)
        counts.copy_(state["counts"])
        sums.copy_(state["sums"])
        self._last_correct.copy_(state["last_correctness"])
        # the settings of the run that saved it, as for el2n_epochs
        self._windows = None
        if "window_scores" in state:
            self._windows = WindowScores.from_state(
                state["window_scores"], self.num_examples, self.num_classes, self.device, synced
            )
        self.snapshot_epochs = tuple(state.get("snapshot_epochs", ()))
        self._epoch = int(state.get("epoch", -1))
        self._snapshots = {
            int(k): {name: v.to(self.device) for name, v in snapshot.items()}
            for k, snapshot in state.get("snapshots", {}).items()
        }

    @torch.no_grad()
    def all_reduce(self) -> None:
        """DDP: sum every rank's additions since the last call; take last_correctness from the
        rank that visited each example. Call on every rank at every epoch end. Between two
        calls an example must be visited on at most one rank. No-op without a process group
        of size > 1.
        """
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        visited = self._visited_since_sync.int()
        last = torch.stack((self._last_correct * visited, visited))
        dist.all_reduce(self._new_counts)
        dist.all_reduce(self._new_sums)
        dist.all_reduce(last)
        self._counts += self._new_counts
        self._sums += self._new_sums
        self._new_counts.zero_()
        self._new_sums.zero_()
        self._last_correct = torch.where(last[1] > 0, last[0], self._last_correct)
        if self._windows is not None:
            self._windows.all_reduce(self._epoch, visited, last[1] > 0)
        self._visited_since_sync.zero_()


@torch.no_grad()
def inference_scores(
    model: torch.nn.Module,
    batches: Iterable,
    num_examples: int,
    feature_module: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """One eval-mode pass of the final model: per-example entropy and loss (float32, CPU),
    and `features` [N, D] = the flattened input of `feature_module` when it is given.

    `batches` yields (index, images, targets) on the model's device. Examples that no batch
    covers keep 0.
    """
    was_training = model.training
    model.eval()
    captured: list[torch.Tensor] = []
    hook = None
    if feature_module is not None:
        hook = feature_module.register_forward_hook(
            lambda module, inputs, output: captured.append(inputs[0])
        )
    out: dict[str, torch.Tensor] = {}
    try:
        for index, images, targets in batches:
            logits = model(images).float()
            _scatter_batch(out, num_examples, index, logits, targets, captured)
            captured.clear()
    finally:
        if hook is not None:
            hook.remove()
        model.train(was_training)
    if not out:
        out = {"entropy": torch.zeros(num_examples), "loss": torch.zeros(num_examples)}
    return {name: values.cpu() for name, values in out.items()}  # the one host copy


def _scatter_batch(out, num_examples, index, logits, targets, captured) -> None:
    """Write one batch's scores into the preallocated device tensors of `out`."""
    log_probs = logits.log_softmax(dim=1)
    probs = log_probs.exp()
    values = {
        # the reference's formula, including its 1e-10
        "entropy": -(probs * torch.log(probs + 1e-10)).sum(dim=1),
        "loss": F.nll_loss(log_probs, targets.long(), reduction="none"),
    }
    if captured:
        values["features"] = captured[-1].detach().flatten(1).float()
    for name, value in values.items():
        if name not in out:
            shape = (num_examples,) + tuple(value.shape[1:])
            out[name] = torch.zeros(shape, dtype=torch.float32, device=value.device)
        out[name][index.to(value.device, torch.long)] = value


def moderate_distance(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Moderate-DS distance: each example's L2 distance to its class's per-dimension median
    feature (numpy-style median: the mean of the two middle values for even counts). float32 [N].
    """
    features = features.reshape(len(features), -1)
    targets = torch.as_tensor(targets).reshape(-1)
    if len(features) != len(targets):
        raise UserError(f"features have {len(features)} rows but there are {len(targets)} targets")
    distance = torch.zeros(len(targets), dtype=torch.float32)
    order = torch.sort(targets.cpu(), stable=True).indices
    _, counts = torch.unique_consecutive(targets.cpu()[order], return_counts=True)
    for members in torch.split(order, counts.tolist()):  # one pass per class, not per example
        class_features = features[members.to(features.device)].float()
        median = _median_rows(class_features)
        distance[members] = torch.linalg.vector_norm(class_features - median, dim=1).cpu()
    return distance


def _median_rows(values: torch.Tensor) -> torch.Tensor:
    """numpy.median(values, axis=0)."""
    ordered = values.sort(dim=0).values
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def make_data_score(
    dynamics: TrainingDynamics | Mapping | None,
    inference: Mapping | None,
    targets: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The score file's dict: the reference keys with the reference dtypes (int32 targets,
    correctness, forgetting, last_correctness; float32 accumulated_margin, el2n, entropy, loss),
    plus `visits` (int32) and `moderate_distance` (float32, when inference has features), and
    whatever else the dynamics hold: float32 tdds, dyn_unc, dual, dual_mean_prob,
    accumulated_margin_logits; `name@K` snapshots with `name`'s dtype.
    `dynamics` is a TrainingDynamics or its `scores()`; either part may be None.
    """
    targets = torch.as_tensor(targets).reshape(-1).cpu()
    n = len(targets)
    if isinstance(dynamics, TrainingDynamics):
        dynamics = dynamics.scores()
    score = {"targets": targets.to(torch.int32).clone()}
    for name, value in (dynamics or {}).items():
        score[name] = value
    inference = dict(inference or {})
    features = inference.pop("features", None)
    score.update(inference)
    if features is not None:
        score["moderate_distance"] = moderate_distance(features, targets)
    for name, value in score.items():
        value = torch.as_tensor(value).detach().cpu().reshape(-1)
        if len(value) != n:
            raise UserError(
                f"score '{name}' has {len(value)} entries, expected {n} (one per example)"
            )
        base = name.split(SNAPSHOT_MARK, 1)[0]
        integer = base in REFERENCE_INT_KEYS or base == "visits"
        score[name] = value.to(torch.int32 if integer else torch.float32).clone()
    return score
