"""The one training loop for every dataset and launch mode.

The loop itself never waits on the device: losses, accuracies and training dynamics
accumulate in device tensors and are read once per epoch (marked "host sync" below).
Loaders yield ``(index, images, targets)`` already on the device, via
``loader.epoch(epoch, start_batch)``; the Trainer does not know which loader it has.
"""

import contextlib
import math
import signal
import time

import torch

from core.errors import UserError
from core.models import unwrap
from core.run_folder import RunFolder
from core.training import distributed as dist_utils
from core.training.checkpoint import rng_state, save_checkpoint, set_rng_state
from core.training.progress import Progress
from core.training.recipe import PaperRecipe
from core.training.runlog import RunLog

EPOCH_LOG_INTERVAL_S = 10.0  # runs of tiny epochs (small coresets) log one line per 10 s


class Interrupted(Exception):
    """Raised after a SIGINT/SIGTERM once the checkpoint is safely written."""


def autocast_for(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate(model, loader, device, precision="fp32", topk=(1,), predict=None):
    """Top-k accuracies (fractions) over a loader; ranks' shares are summed under DDP.
    ``predict(model, images) -> logits`` (a recipe's test-time augmentation; default: the
    model's logits)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros(len(topk), device=device, dtype=torch.float64)
    count = torch.zeros((), device=device, dtype=torch.float64)
    with torch.no_grad(), autocast_for(device, precision):
        for _, images, targets in loader.epoch(0):
            logits = model(images) if predict is None else predict(model, images)
            top = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices  # k <= classes
            hits = top == targets[:, None]
            for i, k in enumerate(topk):
                correct[i] += hits[:, :k].any(dim=1).sum()
            count += targets.numel()
    dist_utils.all_reduce_sum_(correct)
    dist_utils.all_reduce_sum_(count)
    model.train(was_training)
    return (correct / count.clamp_min(1)).tolist()  # host sync, once per evaluation


class Trainer:
    """Trains ``model`` for a number of iterations, testing, checkpointing and resuming.

    ``state_extra`` (the run's fingerprint, arguments, number of classes) is stored in every
    checkpoint; ``what`` names the run in the log ("resnet18 on cifar10: 5000/50000 examples").
    """

    def __init__(
        self,
        *,
        model,
        optimizer,
        scheduler,
        train_loader,
        test_loader,
        device,
        run: RunFolder,
        dynamics=None,
        recipe=None,
        precision="fp32",
        precision_why="",
        log: RunLog | None = None,
        topk=(1,),
        checkpoint_interval_s=60.0,
        state_extra=None,
        progress=True,
        started=None,
        what="",
        val_loader=None,
    ):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_loader, self.test_loader = train_loader, test_loader
        self.val_loader = val_loader  # (ours) --val-size: evaluated at every test point
        self.device, self.precision, self.topk = device, precision, tuple(topk)
        self.precision_why = precision_why
        self.dynamics = dynamics
        self.recipe = PaperRecipe() if recipe is None else recipe  # loss, averaging, TTA
        self.run, self.what = run, what
        self.log = log
        self.checkpoint_interval_s = checkpoint_interval_s
        self.state_extra = state_extra or {}
        self.progress = progress and dist_utils.is_main()
        self.main = dist_utils.is_main()
        self._stop_signal = None
        self._stop_vote = None  # made at the first vote, once the process group exists
        # batch (within its epoch) of the first non-finite loss this epoch, -1: none
        self._first_nonfinite = torch.full((), -1, dtype=torch.long, device=self.device)
        self._last_save = time.monotonic()
        self._last_line = 0.0  # epoch lines: every test and the last, others every 10 s
        self.position = {"iteration": 0, "epoch": 0, "batch": 0}
        self.best_acc, self.last_acc, self.history = 0.0, None, []
        self.train_time_s, self.images_seen = 0.0, 0
        # wall time of earlier sessions of this run (resumes), plus this one's since start-up
        self.wall_before_s = 0.0
        self.session_start = time.time() if started is None else started  # script start-up

    # ---- state -------------------------------------------------------------------------
    def state_dict(self, finished=False):
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "dynamics": self.dynamics.state_dict() if self.dynamics is not None else None,
            "recipe": self.recipe.state_dict(),
            "position": dict(self.position),
            "best_acc": self.best_acc,
            "last_acc": self.last_acc,
            "history": self.history,
            "train_time_s": self.train_time_s,
            "images_seen": self.images_seen,
            "wall_time_s": self.wall_time_s(),
            "rng": rng_state(),
            "finished": finished,
            **self.state_extra,
        }

    def load_state_dict(self, state):
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.dynamics is not None and state.get("dynamics") is not None:
            self.dynamics.load_state_dict(state["dynamics"])
        self.position = dict(state["position"])
        self.best_acc, self.last_acc = state["best_acc"], state["last_acc"]
        self.history = list(state["history"])
        self.train_time_s, self.images_seen = state["train_time_s"], state["images_seen"]
        self.wall_before_s = state.get("wall_time_s", 0.0)
        self.recipe.load_state_dict(state.get("recipe") or {})  # older checkpoints: paper's
        set_rng_state(state["rng"])

    def save_last(self, finished=False):
        if self.dynamics is not None:
            self.dynamics.all_reduce()  # every rank must hold the totals before rank 0 saves
        if self.main:
            save_checkpoint(self.state_dict(finished), self.run.last)
        self._last_save = time.monotonic()

    def save_best(self):
        if self.main:
            best = {
                "model": unwrap(self.model).state_dict(),
                "acc": self.best_acc,
                "iteration": self.position["iteration"],
                **self.state_extra,
                **self._val_best(),  # with a validation split: this model's accuracies
            }
            save_checkpoint(best, self.run.best)

    def _say(self, message: str) -> None:
        if self.log:
            self.log.info(message)

    # ---- signals -----------------------------------------------------------------------
    def _on_signal(self, signum, _frame):
        self._stop_signal = signum

    def _stop_requested(self, iteration):
        """Whether any rank got SIGINT/SIGTERM. Under DDP the ranks vote every 25 iterations
        and a vote's outcome is read at the next one (no host sync): all ranks stop at the same
        iteration, a multiple of 25, at most 50 iterations after the signal."""
        if not dist_utils.is_distributed():
            return self._stop_signal is not None
        if iteration % 25:
            return False
        if self._stop_vote is None:
            self._stop_vote = dist_utils.StopVote(self.device)
        return self._stop_vote.vote(self._stop_signal is not None)

    # ---- the loop ----------------------------------------------------------------------
    def fit(self, total_iterations, epochs_per_test=1):
        """Train whole epochs until ``total_iterations`` are done, as the reference does: the
        epoch in which they run out is finished (docs/FAITHFULNESS.md T5). Tests where the
        reference does: after epoch e when e % epochs_per_test == 0 (epoch 0 included) and
        after the last epoch. Checkpoints and logs at epoch ends. Returns the result dict for
        metrics.json; raises Interrupted (checkpoint written) after SIGINT/SIGTERM."""
        per_epoch = len(self.train_loader)
        total_epochs = math.ceil(total_iterations / per_epoch)
        self._announce(total_iterations, total_epochs, per_epoch)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self._last_save = time.monotonic()
        bar = Progress(total_epochs * per_epoch, self.position["iteration"], enabled=self.progress)
        try:
            while self.position["epoch"] < total_epochs:
                self._one_epoch(bar, total_epochs, epochs_per_test)
        except Interrupted as stop:
            self._say(
                f"interrupted at iteration {stop.args[0]}; checkpoint saved in {self.run.dir}; "
                "run the same command again to resume"
            )
            raise
        finally:
            bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        self.save_last(finished=True)
        return self.result(total_iterations, total_epochs)

    def _diverged(self, epoch: int, first_iteration: int):
        """A non-finite loss ends training at the epoch's end, before anything is saved: the
        last checkpoint keeps the last finite state."""
        batch = int(self._first_nonfinite)  # -1 on a rank that saw none (another rank did)
        where = f"iteration {first_iteration + batch + 1}" if batch >= 0 else f"epoch {epoch + 1}"
        lr = self.optimizer.param_groups[0]["lr"]
        raise UserError(
            f"the training loss became NaN or infinite at {where} (epoch {epoch + 1}): training "
            f"diverged; lower --lr (the learning rate was {lr:g} then) or the weight decay. "
            f"{self.run.last} keeps the last finite state; rerun with --no-resume to start afresh"
        )

    def _announce(self, total_iterations, total_epochs, per_epoch):
        planned = total_epochs * per_epoch
        if self.position["iteration"] > 0:
            self._say(
                f"resuming {self.run.dir} at iteration {self.position['iteration']}/{planned}"
            )
            return
        overshoot = "" if planned == total_iterations else f" for {total_iterations}"
        why = f" ({self.precision_why})" if self.precision_why else ""
        self._say(
            f"training {self.what}, {planned} iterations{overshoot} ({total_epochs} epochs of "
            f"{per_epoch}), {self.device}, {self.precision}{why}, {torch.get_num_threads()} "
            f"thread(s), {dist_utils.world_size()} process(es)"
        )

    def _one_epoch(self, bar, total_epochs, epochs_per_test):
        """One epoch, then its summary (one host sync), test, log line and checkpoint."""
        epoch = self.position["epoch"]
        first_iteration = self.position["iteration"] - self.position["batch"]
        loss_sum, correct, seen = self.train_one_epoch(bar)
        # A checkpoint is due by rank 0's clock alone: saving is a collective (the dynamics
        # all-reduce), so every rank must decide alike.
        due = self.main and time.monotonic() - self._last_save >= self.checkpoint_interval_s
        due_tensor = torch.tensor(float(due), device=self.device)
        bad = (self._first_nonfinite >= 0).float()
        stats = torch.stack([loss_sum.float(), correct.float(), due_tensor, bad])
        dist_utils.all_reduce_sum_(stats)
        loss_v, correct_v, due_v, bad_v = stats.tolist()  # host sync, once per epoch
        if bad_v or not math.isfinite(loss_v):
            self._diverged(epoch, first_iteration)
        seen_all = max(1, seen * dist_utils.world_size())
        finished = self.position["epoch"] >= total_epochs
        # the reference's test points (0-based epochs; it also tests once after the loop, the
        # same model as after the last epoch, so no second entry here)
        test_epoch = epoch % epochs_per_test == 0
        planned = total_epochs * len(self.train_loader)
        line = (
            f"epoch {epoch + 1}/{total_epochs} it {self.position['iteration']}/{planned} loss "
            f"{loss_v / seen_all:.4f} train-acc {correct_v / seen_all:.4f} lr "
            f"{self.optimizer.param_groups[0]['lr']:.5f}"
        )
        if finished or test_epoch:
            accs = self._test()
            line += " | test " + " ".join(f"top{k} {a:.4f}" for k, a in zip(self.topk, accs))
            line += f" (best {self.best_acc:.4f})" + self._val_line()
        rate = self.images_seen / max(self.train_time_s, 1e-9)
        bar.set_rate(f"{rate:,.0f} img/s")
        if finished or test_epoch or time.monotonic() - self._last_line >= EPOCH_LOG_INTERVAL_S:
            self._say(line + f" | {rate:,.0f} img/s")
            self._last_line = time.monotonic()
        if not finished and (due_v > 0 or test_epoch):
            self.save_last()

    def train_one_epoch(self, bar):
        """From the current position to the end of its epoch (whole epochs, as the reference):
        per batch forward, loss, backward, optimiser and schedule step, dynamics update. Returns
        the epoch's summed loss and correct count (device tensors) and this rank's example
        count."""
        self.model.train()
        epoch, start = self.position["epoch"], self.position["batch"]
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen, t0 = 0, time.perf_counter()
        self._first_nonfinite.fill_(-1)
        step = torch.zeros((), device=self.device, dtype=torch.long)  # this epoch's, on device
        for index, images, targets in self.train_loader.epoch(epoch, start_batch=start):
            with autocast_for(self.device, self.precision):
                logits = self.model(images)
                loss = self.recipe.loss(logits, targets)
            # the first step of the epoch whose loss is NaN or infinite, kept on the device:
            # read with the epoch's summary, not per step
            first = (self._first_nonfinite < 0) & ~torch.isfinite(loss.detach())
            self._first_nonfinite = torch.where(first, step + start, self._first_nonfinite)
            step += 1
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.recipe.after_step(self.model, self.position["iteration"] + 1)
            logits, loss = logits.detach(), loss.detach()
            if self.dynamics is not None:
                self.dynamics.update(epoch, index, logits, targets)
            n = targets.shape[0]
            loss_sum += loss * n
            correct += (logits.argmax(1) == targets).sum()
            seen += n
            self.position["iteration"] += 1
            self.position["batch"] += 1
            bar.update(1)
            if self._stop_requested(self.position["iteration"]):
                self._account(t0, seen)
                self.save_last()
                raise Interrupted(self.position["iteration"])
        if self.position["batch"] >= len(self.train_loader):
            self.position["epoch"], self.position["batch"] = epoch + 1, 0
        if self.dynamics is not None:
            self.dynamics.all_reduce()
        self._account(t0, seen)
        return loss_sum, correct, seen

    def _test(self):
        accs = evaluate(self.recipe.eval_model(self.model), self.test_loader, self.device,
                        self.precision, self.topk, predict=self.recipe.predict)  # fmt: skip
        self.last_acc = accs[0]
        improved = accs[0] > self.best_acc or not self.history
        self.best_acc = max(self.best_acc, accs[0])
        entry = {
            "iteration": self.position["iteration"],
            "epoch": self.position["epoch"],
            "acc": accs,
        }
        if self.val_loader is not None:  # ckpt-best.pt follows validation, never the test
            improved = self._validate(entry)
        self.history.append(entry)
        if improved:
            self.save_best()
        return accs

    # ---- the validation split (--val-size) --------------------------------------------------
    def _validate(self, entry) -> bool:
        """Evaluate the validation set into the history ``entry``; whether it is the best
        validation accuracy so far (the first of equals)."""
        best = self._best_val_entry()
        entry["val_acc"] = evaluate(
            self.model, self.val_loader, self.device, self.precision, self.topk
        )
        return best is None or entry["val_acc"][0] > best["val_acc"][0]

    def _best_val_entry(self):
        """The test point with the best validation accuracy (the first of equals), from the
        history, so that a resumed run knows it too; None before the first."""
        entries = [e for e in self.history if "val_acc" in e]
        return max(entries, key=lambda e: e["val_acc"][0]) if entries else None

    def _val_result(self) -> dict:
        """metrics.json's honest numbers: the test accuracy at the best validation point."""
        best = self._best_val_entry()
        if self.val_loader is None or best is None:
            return {}
        return {"test_acc_at_best_val": best["acc"][0], "best_val_acc": best["val_acc"][0]}

    def _val_best(self) -> dict:
        """ckpt-best.pt's accuracies with a validation split: of the model it holds."""
        result = self._val_result()
        if not result:
            return {}
        return {"acc": result["test_acc_at_best_val"], "val_acc": result["best_val_acc"]}

    def _val_line(self) -> str:
        best = self._best_val_entry()
        if self.val_loader is None or best is None:
            return ""
        return (
            f" | val top1 {self.history[-1]['val_acc'][0]:.4f} (best {best['val_acc'][0]:.4f}, "
            f"test there {best['acc'][0]:.4f})"
        )

    def wall_time_s(self) -> float:
        return self.wall_before_s + time.time() - self.session_start

    def _account(self, t0, seen):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # host sync: time what the device really did
        self.train_time_s += time.perf_counter() - t0
        self.images_seen += seen * dist_utils.world_size()

    def result(self, total_iterations, total_epochs):
        return {
            "best_acc": self.best_acc,
            "last_acc": self.last_acc,
            "iterations": total_iterations,  # as asked: the schedule's length (cosine T_max)
            "iterations_trained": self.position["iteration"],  # whole epochs: may be more
            "epochs": total_epochs,
            "train_time_s": self.train_time_s,
            "wall_time_s": self.wall_time_s(),
            "images_per_s": self.images_seen / max(self.train_time_s, 1e-9),
            "precision": self.precision,
            "precision_why": self.precision_why,
            "history": self.history,
            **self._val_result(),
        }
