"""Window-based training-dynamics scores (TDDS, Dyn-Unc, DUAL) and the logit margin, online.

The authors' scripts store every epoch's outputs and compute these afterwards. Each score
only needs the last few epochs, so this keeps ring buffers of them: O(N * window) memory
(TDDS also needs the previous epoch's N x C probabilities, during its trajectory only).
`core.scores.TrainingDynamics` owns one and tells it when an epoch has ended. Defaults and
their sources: the constants below.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import torch

from core.errors import UserError

# TDDS (Zhang et al., CVPR 2024), the README's command: --trajectory_len 30 --window_size 10
# --decay 0.9 (importance_evaluation.py's own argparse default trajectory is 10).
TDDS_EPOCHS, TDDS_WINDOW, TDDS_DECAY = 30, 10, 0.9
TDDS_EPS = 1e-8  # importance_evaluation.py: log(p + 1e-8)
# Dyn-Unc (He et al., CVPRW 2024), ImageNet/README.md: get_coreset.py --window 10.
DYN_UNC_WINDOW = 10
# DUAL (Cho et al., ICML 2025): the first 30 epochs (CIFAR; ImageNet 60), window 10.
DUAL_EPOCHS, DUAL_WINDOW = 30, 10
# TDDS's N x C buffer is on by default up to this size (CIFAR-100: 20 MB; ImageNet: 5.1 GB).
TDDS_AUTO_MAX_BYTES = 1 << 30

SCORE_KEYS = ("accumulated_margin_logits", "dyn_unc", "dual", "dual_mean_prob", "tdds")
# additive rows (summed across ranks): logit margins, target probabilities of DUAL's epochs
_SUM_ROWS = ("accumulated_margin_logits", "dual_prob_sum")
_ACCUMULATORS = ("dyn_unc_sum", "dyn_unc_last", "dual_sum", "tdds")


class WindowScores:
    """Per-example window statistics, fed by `update`, closed by `end_epoch`.

    Epochs are 0-based and consecutive, and every example is visited once per epoch (a
    full-data run), as in the authors' per-epoch arrays.
    """

    def __init__(
        self,
        num_examples: int,
        num_classes: int,
        device=None,
        *,
        tdds: bool | None = None,
        tdds_epochs: int = TDDS_EPOCHS,
        tdds_window: int = TDDS_WINDOW,
        tdds_decay: float = TDDS_DECAY,
        dyn_unc_window: int = DYN_UNC_WINDOW,
        dual_epochs: int = DUAL_EPOCHS,
        dual_window: int = DUAL_WINDOW,
    ):
        n, c = int(num_examples), int(num_classes)
        if tdds is None:  # on where the previous epoch's probabilities are small
            tdds = n * c * 4 <= TDDS_AUTO_MAX_BYTES
        self.config = {
            "tdds": bool(tdds),
            "tdds_epochs": int(tdds_epochs),
            "tdds_window": int(tdds_window),
            "tdds_decay": float(tdds_decay),
            "dyn_unc_window": int(dyn_unc_window),
            "dual_epochs": int(dual_epochs),
            "dual_window": int(dual_window),
        }
        _check(self.config)
        self.num_examples, self.num_classes = n, c
        self.ring = max(self.config["dyn_unc_window"], self.config["dual_window"])
        self.device = torch.device("cpu" if device is None else device)
        self._allocate()

    def _allocate(self) -> None:
        n, dev, cfg = self.num_examples, self.device, self.config
        zeros = partial(torch.zeros, dtype=torch.float32, device=dev)
        self.t = {
            "sums": zeros(len(_SUM_ROWS), n),
            "new_sums": zeros(len(_SUM_ROWS), n),  # additions since the last all_reduce
            "probs": zeros(self.ring, n),  # target-class probability, slot epoch % ring
            **{name: zeros(n) for name in _ACCUMULATORS},
        }
        if cfg["tdds"]:
            self.t["prev"] = zeros(n, self.num_classes)  # the previous epoch's probabilities
            self.t["kl"] = zeros(cfg["tdds_window"] - 1, n)  # changes, slot (epoch - 1) % (J-1)

    def to(self, device) -> None:
        self.t = {name: value.to(device) for name, value in self.t.items()}
        self.device = torch.device(device)

    # ---- per batch --------------------------------------------------------------------
    @torch.no_grad()
    def update(self, epoch: int, index, probs, logits, targets) -> None:
        """One batch: float32 `probs` (softmax of `logits`), dataset `index`. No host sync."""
        cfg, t = self.config, self.t
        y = targets.long().unsqueeze(1)
        target_prob = probs.gather(1, y).squeeze(1)
        z = logits.float()
        margin = z.gather(1, y).squeeze(1) - z.scatter(1, y, float("-inf")).amax(dim=1)
        t["new_sums"][0].index_add_(0, index, margin)
        if epoch < cfg["dual_epochs"]:
            t["new_sums"][1].index_add_(0, index, target_prob)
        t["probs"][epoch % self.ring, index] = target_prob
        if "kl" in t and 1 <= epoch < cfg["tdds_epochs"]:
            # the authors' |p_t * (log p_t - log p_{t-1})| summed over classes
            prev = t["prev"][index]
            change = probs * (torch.log(probs + TDDS_EPS) - torch.log(prev + TDDS_EPS))
            t["kl"][(epoch - 1) % (cfg["tdds_window"] - 1), index] = change.abs().sum(dim=1)
        if "prev" in t and epoch < cfg["tdds_epochs"] - 1:
            t["prev"][index] = probs

    # ---- per epoch --------------------------------------------------------------------
    def _window(self, epoch: int, width: int) -> torch.Tensor:
        """[width, N]: the target probabilities of epochs epoch-width+1 .. epoch."""
        if width == self.ring:
            return self.t["probs"]  # the whole ring, in slot order (order does not matter)
        slots = torch.arange(epoch - width + 1, epoch + 1, device=self.device) % self.ring
        return self.t["probs"].index_select(0, slots)

    def _after(self, epoch: int) -> dict[str, torch.Tensor]:
        """The accumulators once `epoch` has ended (new tensors; the state is not changed)."""
        cfg, acc = self.config, {name: self.t[name] for name in _ACCUMULATORS}
        w = cfg["dyn_unc_window"]
        # Dyn-Unc's get_coreset.py leaves out the window that ends at the last epoch: a
        # window's std joins the mean one epoch later.
        if epoch - 1 >= w - 1:
            acc["dyn_unc_sum"] = acc["dyn_unc_sum"] + acc["dyn_unc_last"]
        if epoch >= w - 1:
            acc["dyn_unc_last"] = self._window(epoch, w).std(dim=0)
        w = cfg["dual_window"]
        if w - 1 <= epoch < cfg["dual_epochs"]:
            window = self._window(epoch, w)
            acc["dual_sum"] = acc["dual_sum"] + window.std(dim=0) * (1 - window.mean(dim=0))
        j, decay = cfg["tdds_window"], cfg["tdds_decay"]
        if "kl" in self.t and j - 1 <= epoch < cfg["tdds_epochs"]:
            # window k = epoch - j + 1: L2 norm of the changes' deviations from their mean,
            # then the moving average: weight decay * (1 - decay)^(T - J - k) at the end
            kl = self.t["kl"]
            norm = torch.linalg.vector_norm(kl - kl.mean(dim=0), dim=0)
            acc["tdds"] = (1 - decay) * acc["tdds"] + decay * norm
        return acc

    def end_epoch(self, epoch: int) -> None:
        """Close `epoch` (device work only). The TDDS buffers go once its trajectory ends."""
        self.t.update(self._after(epoch))
        if epoch >= self.config["tdds_epochs"] - 1:
            self.t.pop("prev", None)
            self.t.pop("kl", None)

    def scores(self, epoch: int, ended: bool = False) -> dict[str, torch.Tensor]:
        """Device tensors once `epoch` has ended: `ended` says whether `end_epoch(epoch)` was
        called already; if not, it is applied to a copy. epoch -1: nothing recorded yet."""
        cfg = self.config
        acc = self._after(epoch) if not ended and epoch >= 0 else self.t
        sums = self.t["sums"] + self.t["new_sums"]
        dyn_windows = epoch - cfg["dyn_unc_window"] + 1  # windows ending w-1 .. epoch-1
        dual_windows = min(epoch, cfg["dual_epochs"] - 1) - cfg["dual_window"] + 2
        out = {
            "accumulated_margin_logits": sums[0],
            "dual_mean_prob": sums[1] / max(1, min(epoch + 1, cfg["dual_epochs"])),
        }
        # a score with no complete window yet is left out, not written as zeros that a
        # selection would take for measurements (a run shorter than the window)
        if dyn_windows >= 1:
            out["dyn_unc"] = acc["dyn_unc_sum"] / dyn_windows
        if dual_windows >= 1:
            out["dual"] = acc["dual_sum"] / dual_windows
        if cfg["tdds"] and epoch >= cfg["tdds_window"] - 1:
            out["tdds"] = acc["tdds"].clone()
        return out

    # ---- DDP --------------------------------------------------------------------------
    @torch.no_grad()
    def all_reduce(self, epoch: int, visited: torch.Tensor, seen: torch.Tensor) -> None:
        """Sum the additive rows; take the epoch's ring slots and probabilities from the rank
        that visited each example (`visited` int [N] on this rank, `seen` bool [N] on any)."""
        dist, t, cfg = torch.distributed, self.t, self.config
        dist.all_reduce(t["new_sums"])
        t["sums"] += t["new_sums"]
        t["new_sums"].zero_()
        rows = [t["probs"][epoch % self.ring]]
        kl_slot = (epoch - 1) % (cfg["tdds_window"] - 1)
        has_kl = "kl" in t and 1 <= epoch < cfg["tdds_epochs"]
        if has_kl:
            rows.append(t["kl"][kl_slot])
        merged = _from_visitor(torch.stack(rows), visited, seen)  # one collective
        t["probs"][epoch % self.ring] = merged[0]
        if has_kl:
            t["kl"][kl_slot] = merged[1]
        if "prev" in t and epoch < cfg["tdds_epochs"] - 1:
            t["prev"] = _from_visitor(t["prev"], visited[:, None], seen[:, None])

    # ---- state ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        sums = self.t["sums"] + self.t["new_sums"]
        tensors = {k: v.cpu() for k, v in self.t.items() if k not in ("sums", "new_sums")}
        return {"config": dict(self.config), "sums": sums.cpu(), **tensors}

    @classmethod
    def from_state(cls, state: Mapping, num_examples, num_classes, device, synced: bool):
        """A WindowScores restored from `state_dict()`; `synced`: as TrainingDynamics's."""
        windows = cls(num_examples, num_classes, device, **state["config"])
        t = windows.t
        (t["sums"] if synced else t["new_sums"]).copy_(state["sums"])
        for name in list(t):
            if name in ("sums", "new_sums"):
                continue
            if name in state:
                t[name].copy_(state[name])
            else:  # freed after the TDDS trajectory
                del t[name]
        return windows


def _from_visitor(rows: torch.Tensor, visited: torch.Tensor, seen: torch.Tensor):
    """rows [..., N] (or [N, C] with [N, 1] masks): each example's values from the one rank that visited it since the last
    sync (a sum of one value and zeros: exact); unvisited examples keep theirs."""
    summed = rows * visited
    torch.distributed.all_reduce(summed)
    return torch.where(seen, summed, rows)


def _check(cfg: dict) -> None:
    for name in ("tdds_window", "dyn_unc_window", "dual_window"):
        if cfg[name] < 2:
            raise UserError(f"{name} must be at least 2 (a spread needs two values)")
    if cfg["tdds_epochs"] < cfg["tdds_window"]:
        raise UserError("tdds_epochs must be at least tdds_window")
    if cfg["dual_epochs"] < cfg["dual_window"]:
        raise UserError("dual_epochs must be at least dual_window")
    if not 0 < cfg["tdds_decay"] <= 1:
        raise UserError("tdds_decay must be in (0, 1]")
