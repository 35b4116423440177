"""Training recipes: how a network is optimised, what loss it sees, how it is tested.

A recipe is everything about training that is not data, network or loop. The Trainer calls:

    optimizer, scheduler = recipe.build(model, lr=, total_iterations=, iterations_per_epoch=,
                                        batch_size=)    # lr None: the recipe's default
    recipe.prepare(model, images)     # fresh runs only, before the first step; on resume
                                      # recipe.load_state_dict(checkpoint["recipe"]) instead
    per step:  loss = recipe.loss(logits, targets)   # under autocast, a per-example mean
               backward, optimizer.step(), scheduler.step(), iteration += 1
               recipe.after_step(model, iteration)   # iteration: steps done, from 1
    testing and scoring: recipe.predict(recipe.eval_model(model), images) -> logits
    checkpoint: recipe.state_dict()

``PaperRecipe`` is the reference scripts' training (SGD, cosine or step schedule, cross-entropy).
``FastRecipe`` is airbench94's (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds"): Nesterov SGD
with decoupled hyper-parameters, a triangular schedule, label smoothing, a lookahead-style EMA of
the weights, a whitening layer set from data, and test-time augmentation. No hook reads a device
tensor: nothing here waits on the device.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.data.device import AIRBENCH
from core.models import unwrap
from core.training.optim import build_scheduler, build_sgd


class PaperRecipe:
    """What train.py (weight decay 5e-4, Nesterov, cosine) and train_imagenet.py (1e-4, plain
    momentum, ``--scheduler``) build today; the other hooks do nothing."""

    def __init__(self, *, weight_decay=5e-4, nesterov=True, scheduler="cosine", lr=0.1):
        self.weight_decay, self.nesterov, self.scheduler = weight_decay, nesterov, scheduler
        self.lr = lr  # build()'s default

    def build(self, model, *, lr=None, total_iterations, iterations_per_epoch, batch_size=None):
        lr = self.lr if lr is None else lr
        optimizer = build_sgd(model, lr, weight_decay=self.weight_decay, nesterov=self.nesterov)
        scheduler = build_scheduler(
            optimizer, self.scheduler, total_iterations, iterations_per_epoch
        )
        return optimizer, scheduler

    prepare_images = 0  # prepare() needs no data

    def prepare(self, model, images):
        pass

    def augmentation(self, dataset_augment):
        """The training loader's augmentation: the dataset's own (crops and flips, or none)."""
        return dataset_augment

    def loss(self, logits, targets):
        return F.cross_entropy(logits, targets)

    def after_step(self, model, iteration):
        pass

    def eval_model(self, model):
        return model

    def predict(self, model, images):
        return model(images)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class FastRecipe:
    """airbench94's training. Units as airbench states them: ``lr`` and ``weight_decay`` per 1024
    examples, decoupled (the step size does not change with the momentum, the decay does not
    change with the lr)."""

    lr = 11.5  # per 1024 examples
    momentum = 0.85  # Nesterov
    weight_decay = 0.0153  # per 1024 examples, decoupled from the lr
    bias_scaler = 64.0  # BatchNorm biases: 64x the lr, the same decay
    label_smoothing = 0.2
    warmup, start, end = 0.23, 0.2, 0.07  # lr x0.2 -> x1 over 23% of the steps, -> x0.07 at the end
    whiten_bias_epochs = 3  # the whitening bias trains for 3 epochs, then is frozen
    ema_every, ema_base, ema_power = 5, 0.95, 3  # every 5 steps, decay 0.95^5 (t / T)^3
    whiten_images = prepare_images = 5000  # training images the whitening statistics come from

    def __init__(self, tta_level=2):
        self.tta_level = tta_level  # 0 none, 1 flip, 2 flip and 1-pixel translations
        self.ema = None  # float state_dict entries of the averaged model
        self.total_iterations = None

    # ---- optimiser and schedule --------------------------------------------------------
    def build(self, model, *, lr=None, total_iterations, iterations_per_epoch, batch_size):
        """Nesterov SGD in three groups: the weights (first, so logs show their lr), BatchNorm
        biases at 64x the lr and the whitening bias, all decaying by the same amount per step
        (``weight_decay`` per 1024 examples, times the schedule); and a per-step LambdaLR.
        ``batch_size`` is the global batch."""
        lr = self.lr if lr is None else lr
        self.total_iterations = total_iterations
        # Nesterov's steps are (1 + 1/(1 - momentum)) x the gradient for a constant gradient;
        # airbench divides that out. It sums its loss over the batch; ours is the batch mean
        # (DDP averages it over ranks), so the lr is multiplied by the global batch size.
        kilostep = 1024 * (1 + 1 / (1 - self.momentum))
        sgd_lr = lr / kilostep * batch_size
        decay = self.weight_decay * batch_size / kilostep  # per step, decoupled from lr
        groups = _parameter_groups(unwrap(model))
        lrs = {"other": sgd_lr, "bn_bias": sgd_lr * self.bias_scaler, "whiten_bias": sgd_lr}
        optimizer = torch.optim.SGD(
            [
                dict(params=params, lr=lrs[name], weight_decay=decay / lrs[name])
                for name, params in groups.items()
            ],
            momentum=self.momentum,
            nesterov=True,
        )
        freeze_at = self.whiten_bias_epochs * iterations_per_epoch

        def trained(step):
            return self.schedule(step)

        def frozen_later(step):
            return self.schedule(step) if step < freeze_at else 0.0  # lr 0: the bias stays

        lambdas = [frozen_later if name == "whiten_bias" else trained for name in groups]
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)

    def schedule(self, step):
        """The lr multiplier of step ``step`` (from 0): linear 0.2 -> 1 up to 23% of the run,
        then linear to 0.07 at its end; held at 0.07 past it."""
        total = self.total_iterations
        peak = int(self.warmup * total)
        step = min(step, total)
        if step < peak:
            return self.start + (1 - self.start) * step / peak
        return 1 + (self.end - 1) * (step - peak) / (total - peak)

    def loss(self, logits, targets):
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def augmentation(self, dataset_augment):
        """airbench's translate-by-2 and alternating flips, where the dataset augments."""
        return AIRBENCH if dataset_augment else False

    # ---- whitening and weight averaging ------------------------------------------------
    def prepare(self, model, images):
        """Whitening from the first 5000 training images (normalised float, as the loader
        yields them), then the average starts from the initial weights."""
        net = unwrap(model)
        if hasattr(net, "init_whitening"):
            net.init_whitening(images[: self.whiten_images])
        self.ema = _float_state(net, clone=True)

    def after_step(self, model, iteration):
        """Lookahead-style EMA every 5 steps: the average moves towards the weights, then the
        weights are set to the average. The decay grows as (t / T)^3, so the average follows
        early training closely and averages strongly at the end; the last step copies the
        average into the net (decay 1)."""
        if self.ema is None:  # prepare() was not called: start from the weights as they are
            self.ema = _float_state(unwrap(model), clone=True)
        total = self.total_iterations
        if iteration % self.ema_every == 0:
            t = min(iteration / total, 1.0)
            self._update(model, self.ema_base**self.ema_every * t**self.ema_power)
        if iteration == total:
            self._update(model, 1.0)

    @torch.no_grad()
    def _update(self, model, decay):
        for name, weight in _float_state(unwrap(model)).items():
            average = self.ema[name]
            if average.device != weight.device:  # restored from a checkpoint (CPU)
                average = self.ema[name] = average.to(weight.device)
            average.lerp_(weight, 1 - decay)
            weight.copy_(average)

    def eval_model(self, model):
        """The net itself: each EMA update copies the average into it, and the last step
        leaves it equal to the average."""
        return model

    # ---- test-time augmentation --------------------------------------------------------
    def predict(self, model, images):
        """Logits averaged over views (level 2): the image and its mirror (weight 1/4 each) and
        both of them shifted one pixel up-left and down-right, reflect-padded (1/8 each)."""
        views = [(images, 1.0)]
        if self.tta_level >= 2:
            padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
            h, w = images.shape[2:]
            views = [
                (images, 0.5),
                (padded[:, :, :h, :w], 0.25),
                (padded[:, :, 2:, 2:], 0.25),
            ]
        if self.tta_level >= 1:
            views = [(v.flip(3), wt / 2) for v, wt in views] + [(v, wt / 2) for v, wt in views]
        return sum(weight * model(view) for view, weight in views)

    # ---- checkpoint --------------------------------------------------------------------
    def state_dict(self):
        return {"ema": self.ema}

    def load_state_dict(self, state):
        self.ema = state["ema"]


RECIPES = {"paper": PaperRecipe, "fast": FastRecipe}
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _parameter_groups(net) -> dict:
    """Trainable parameters: the rest, BatchNorm biases, the whitening bias (if any)."""
    whiten = getattr(net, "whiten", None)
    whiten_bias = [] if whiten is None or whiten.bias is None else [whiten.bias]
    bn_bias = [m.bias for m in net.modules() if isinstance(m, BATCH_NORMS) and m.bias is not None]
    chosen = {id(p) for p in whiten_bias + bn_bias}
    other = [p for p in net.parameters() if id(p) not in chosen]
    groups = {"other": other, "bn_bias": bn_bias, "whiten_bias": whiten_bias}
    return {
        name: [p for p in params if p.requires_grad]
        for name, params in groups.items()
        if any(p.requires_grad for p in params)
    }


def _float_state(net, clone=False) -> dict:
    """The floating-point state_dict entries (weights, BatchNorm running statistics), as
    airbench averages them; clones when ``clone``, else the net's own tensors."""
    state = net.state_dict(keep_vars=True)
    return {
        k: (v.detach().clone() if clone else v.detach())
        for k, v in state.items()
        if v.is_floating_point()
    }
