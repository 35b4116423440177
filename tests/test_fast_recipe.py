"""The fast recipe's pieces (airbench94): network, whitening, optimiser groups, schedule, EMA,
test-time augmentation, the airbench augmentation, resuming; and that PaperRecipe is today's."""

import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.data.device import DeviceLoader
from core.errors import UserError
from core.models import build_model
from core.models.head import Fp32Linear
from core.training.optim import build_scheduler, build_sgd
from core.training.recipe import RECIPES, FastRecipe, PaperRecipe

IDENTITY = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
KILOSTEP = 1024 * (1 + 1 / (1 - 0.85))  # airbench's lr unit under Nesterov momentum 0.85


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 5))


def built(recipe, model, total=100, per_epoch=10, batch_size=512):
    return recipe.build(
        model, total_iterations=total, iterations_per_epoch=per_epoch, batch_size=batch_size
    )


# ---- network ------------------------------------------------------------------------------
def test_airbench94_shape_head_and_initialisation():
    torch.manual_seed(0)
    model = build_model("airbench94", 7)
    assert isinstance(model.fc, Fp32Linear) and model.fc.bias is None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7) and logits.dtype == torch.float32
    convs = 24 * 3 * 4 + 9 * (24 * 64 + 64 * 64 + 64 * 256 + 3 * 256 * 256)
    bn_and_biases = 24 + 2 * 2 * (64 + 256 + 256)
    assert sum(p.numel() for p in model.parameters()) == convs + bn_and_biases + 256 * 7
    # identity-initialised 3x3 convolutions: layer2.conv2 is all identity, conv1 on 64 of 256
    eye = torch.zeros(256, 256, 3, 3)
    eye[range(256), range(256), 1, 1] = 1
    assert torch.equal(model.layer2.conv2.weight, eye)
    assert torch.equal(model.layer2.conv1.weight[:64], eye[:64, :64])
    bn = model.layer1.norm1
    assert not bn.weight.requires_grad and bn.bias.requires_grad
    assert (bn.eps, bn.momentum) == (1e-12, 0.4)  # running = 0.6 running + 0.4 batch
    assert not model.whiten.weight.requires_grad and model.whiten.weight.shape == (24, 3, 2, 2)


def smooth_images(n=64, size=16, seed=0):
    """Normalised float images with strongly correlated neighbouring pixels and channels."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, 1, size // 4, size // 4, generator=g)
    base = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    return base * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1) + 0.3 * torch.randn(
        n, 3, size, size, generator=g
    )


def test_whitening_gives_identity_patch_covariance_and_lives_in_the_state_dict():
    model = build_model("airbench94", 10)
    images = smooth_images()
    model.init_whitening(images)
    w = model.whiten.weight
    assert torch.equal(w[12:], -w[:12])  # the filters and their negatives
    out = F.conv2d(images, w[:12])  # the layer before its bias and GELU
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = flat.T @ flat / len(flat)
    assert torch.allclose(covariance, torch.eye(12), atol=0.02)
    # before: the raw patches are far from white
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    assert (patches.T @ patches / len(patches) - torch.eye(12)).abs().max() > 0.3
    restored = build_model("airbench94", 10)
    restored.load_state_dict(model.state_dict())
    assert torch.equal(restored.whiten.weight, w)


def test_whitening_from_uint8_equals_whitening_from_normalised_images():
    g = torch.Generator().manual_seed(1)
    raw = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8, generator=g)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    a, b = build_model("airbench94", 10), build_model("airbench94", 10)
    a.init_whitening(raw, mean=mean, std=std)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    b.init_whitening((raw.float() / 255 - m) / s)
    assert torch.allclose(a.whiten.weight, b.whiten.weight, rtol=1e-4, atol=1e-5)


# ---- optimiser and schedule ---------------------------------------------------------------
def test_parameter_groups_lrs_and_decoupled_weight_decay():
    model = build_model("airbench94", 10)
    recipe = FastRecipe()
    optimizer, _ = built(recipe, model, batch_size=512)
    other, bn_bias, whiten_bias = optimizer.param_groups
    assert [len(g["params"]) for g in (other, bn_bias, whiten_bias)] == [7, 6, 1]
    assert whiten_bias["params"][0] is model.whiten.bias
    assert all(p is m.bias for p, m in zip(bn_bias["params"], _batch_norms(model)))
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(model.whiten.weight) not in trained and id(model.layer1.norm1.weight) not in trained
    lr = 11.5 / KILOSTEP * 512 * 0.2  # the schedule starts at 0.2
    assert other["lr"] == pytest.approx(lr) and whiten_bias["lr"] == pytest.approx(lr)
    assert bn_bias["lr"] == pytest.approx(64 * lr)
    decay = 0.0153 * 512 / KILOSTEP * 0.2  # per step, the same in every group
    for group in optimizer.param_groups:
        assert group["lr"] * group["weight_decay"] == pytest.approx(decay)
        assert group["momentum"] == 0.85 and group["nesterov"]


def _batch_norms(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_schedule_values_and_frozen_whitening_bias():
    recipe = FastRecipe()
    optimizer, scheduler = built(recipe, build_model("airbench94", 10), total=100, per_epoch=10)
    expected = {0: 0.2, 11: 0.2 + 0.8 * 11 / 23, 23: 1.0, 60: 1 - 0.93 * 37 / 77, 100: 0.07}
    for step, value in expected.items():
        assert recipe.schedule(step) == pytest.approx(value)
    assert recipe.schedule(150) == pytest.approx(0.07)  # held past the end
    base = [g["lr"] / 0.2 for g in optimizer.param_groups]
    for step in range(1, 101):
        optimizer.step()
        scheduler.step()
        lrs = [g["lr"] for g in optimizer.param_groups]
        assert lrs[0] == pytest.approx(base[0] * recipe.schedule(step))
        assert lrs[1] == pytest.approx(base[1] * recipe.schedule(step))
        # the whitening bias trains for 3 epochs (30 steps), then its lr is 0
        assert lrs[2] == (pytest.approx(base[2] * recipe.schedule(step)) if step < 30 else 0.0)


def test_loss_is_label_smoothed_cross_entropy_mean():
    logits, targets = torch.randn(6, 10), torch.arange(6)
    smoothed = 0.8 * F.cross_entropy(logits, targets) - 0.2 * logits.log_softmax(1).mean()
    assert torch.allclose(FastRecipe().loss(logits, targets), smoothed)


# ---- EMA -------------------------------------------------------------------------------------
def test_ema_is_a_lookahead_average_every_5_steps():
    model, recipe = tiny_net(), FastRecipe()
    optimizer, _ = built(recipe, model, total=10)
    recipe.prepare(model, torch.randn(4, 3, 8, 8))  # no whitening layer: only the average
    average = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    for iteration in range(1, 11):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        optimizer.step()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        recipe.after_step(model, iteration)
        after = model.state_dict()
        if iteration % 5:
            assert all(torch.equal(after[k], before[k]) for k in after)
            continue
        decay = 0.95**5 * (iteration / 10) ** 3
        for k in average:
            average[k] = decay * average[k] + (1 - decay) * before[k]
            assert torch.allclose(after[k], average[k], atol=1e-6)  # the net is the average
        assert torch.equal(after["1.num_batches_tracked"], before["1.num_batches_tracked"])
    assert all(torch.equal(recipe.ema[k], model.state_dict()[k]) for k in recipe.ema)


# ---- test-time augmentation ---------------------------------------------------------------
def test_tta_is_the_weighted_mean_of_its_views():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 4))
    images = torch.randn(3, 3, 8, 8)
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[:, :, :8, :8], padded[:, :, 2:, 2:]]
    views = [images, images.flip(3)] + shifted + [v.flip(3) for v in shifted]
    weights = [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    expected = sum(w * model(v) for w, v in zip(weights, views))
    with torch.no_grad():
        assert torch.allclose(FastRecipe().predict(model, images), expected, atol=1e-6)
        mirror = FastRecipe(tta_level=1).predict(model, images)
        assert torch.allclose(mirror, (model(images) + model(images.flip(3))) / 2, atol=1e-6)
        assert torch.equal(FastRecipe(tta_level=0).predict(model, images), model(images))
        assert torch.equal(PaperRecipe().predict(model, images), model(images))
    assert shifted[0][0, 0, 1, 1] == images[0, 0, 0, 0]  # content moved down-right by one


# ---- PaperRecipe is today's training ------------------------------------------------------
@pytest.mark.parametrize(
    "settings",
    [
        dict(weight_decay=5e-4, nesterov=True, scheduler="cosine"),  # train.py
        dict(weight_decay=1e-4, nesterov=False, scheduler="default"),  # train_imagenet.py
    ],
)
def test_paper_recipe_builds_what_build_sgd_and_build_scheduler_build(settings):
    def train(make):
        model = tiny_net()
        optimizer, scheduler = make(model)
        g = torch.Generator().manual_seed(0)
        for _ in range(5):
            x, y = torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 5, (4,), generator=g)
            loss = recipe.loss(model(x), y) if make is by_recipe else F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        return model, optimizer, scheduler

    recipe = PaperRecipe(**settings)

    def by_recipe(model):
        return recipe.build(model, lr=0.1, total_iterations=20, iterations_per_epoch=4)

    def by_hand(model):
        optimizer = build_sgd(
            model, 0.1, weight_decay=settings["weight_decay"], nesterov=settings["nesterov"]
        )
        return optimizer, build_scheduler(optimizer, settings["scheduler"], 20, 4)

    (m1, o1, s1), (m2, o2, s2) = train(by_recipe), train(by_hand)
    assert type(s1) is type(s2) and s1.state_dict() == s2.state_dict()
    assert str(o1.state_dict()["param_groups"]) == str(o2.state_dict()["param_groups"])
    assert all(
        torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values())
    )
    assert RECIPES["paper"] is PaperRecipe and RECIPES["fast"] is FastRecipe


# ---- the airbench augmentation ------------------------------------------------------------
def airbench_loader(images, seed=0, **overrides):
    settings = dict(batch_size=8, augment="airbench", shuffle=True, seed=seed, device="cpu")
    return DeviceLoader(images, torch.arange(len(images)), **IDENTITY, **{**settings, **overrides})


def epoch_views(loader, epoch):
    """{example: (shift dy, dx, flipped)} of one epoch, found by matching every output against
    the 25 two-pixel reflect-padded crops of its source image and their mirrors."""
    views = {}
    for index, images, _ in loader.epoch(epoch):
        for i, out in zip(index.tolist(), (images * 255).round().to(torch.uint8)):
            padded = F.pad(loader.images[i : i + 1].float(), (2, 2, 2, 2), mode="reflect")[0]
            found = [
                (dy, dx, flip)
                for dy in range(5)
                for dx in range(5)
                for flip in (False, True)
                if torch.equal(
                    out, (lambda c: c.flip(2) if flip else c)(padded[:, dy : dy + 8, dx : dx + 8])
                )
            ]
            assert len(found) == 1
            views[i] = found[0]
    return views


def test_airbench_augmentation_translates_by_2_and_alternates_flips():
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    loader = airbench_loader(images)
    epochs = [epoch_views(loader, e) for e in range(4)]
    assert all(sorted(views) == list(range(40)) for views in epochs)
    flips = [torch.tensor([views[i][2] for i in range(40)]) for views in epochs]
    assert 10 < flips[0].sum() < 30  # a random half in the first epoch
    assert torch.equal(flips[1], ~flips[0]) and torch.equal(flips[2], flips[0])
    assert torch.equal(flips[3], flips[1])
    shifts = [[views[i][:2] for i in range(40)] for views in epochs]
    assert shifts[0] != shifts[2]  # translations are drawn anew every epoch
    assert {s for epoch in shifts for shift in epoch for s in shift} == set(range(5))


def test_airbench_augmentation_is_deterministic_and_resumes():
    images = torch.randint(0, 256, (30, 3, 8, 8), dtype=torch.uint8)

    def batches(loader, epoch, start=0):
        return [torch.cat([b[1].flatten(), b[0].float()]) for b in loader.epoch(epoch, start)]

    a, b = airbench_loader(images), airbench_loader(images)
    for epoch in (0, 1):
        first, again = batches(a, epoch), batches(b, epoch)
        assert all(torch.equal(x, y) for x, y in zip(first, again))
        assert all(torch.equal(x, y) for x, y in zip(first[2:], batches(b, epoch, start=2)))
    other = batches(airbench_loader(images, seed=1), 0)
    assert not torch.equal(other[0], batches(a, 0)[0])
    with pytest.raises(UserError, match="augment"):
        airbench_loader(images, augment="flip")


# ---- resuming ---------------------------------------------------------------------------------
def test_resume_mid_run_is_bit_identical():
    """12 steps straight, or 7, a checkpoint through torch.save, a fresh process's objects and
    5 more: the same weights to the bit."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    targets = torch.randint(0, 10, (16,), generator=g)
    loader = DeviceLoader(
        images, targets, batch_size=8, augment="airbench", shuffle=True, seed=0, device="cpu",
        **IDENTITY,
    )  # fmt: skip

    def fresh():
        torch.manual_seed(0)
        model, recipe = build_model("airbench94", 10), FastRecipe()
        optimizer, scheduler = built(recipe, model, total=12, per_epoch=len(loader), batch_size=8)
        return model, recipe, optimizer, scheduler

    def steps(parts, start, stop):
        model, recipe, optimizer, scheduler = parts
        for iteration in range(start, stop):
            epoch, batch = divmod(iteration, len(loader))
            _, x, y = next(iter(loader.epoch(epoch, batch)))
            loss = recipe.loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            recipe.after_step(model, iteration + 1)

    straight = fresh()
    straight[1].prepare(straight[0], images.float() / 255)
    steps(straight, 0, 12)

    first = fresh()
    first[1].prepare(first[0], images.float() / 255)
    steps(first, 0, 7)
    buffer = io.BytesIO()
    torch.save([p.state_dict() for p in first], buffer)
    buffer.seek(0)
    resumed = fresh()  # no prepare(): the state comes from the checkpoint
    for part, state in zip(resumed, torch.load(buffer, weights_only=True)):
        part.load_state_dict(state)
    steps(resumed, 7, 12)
    for a, b in zip(straight[0].state_dict().values(), resumed[0].state_dict().values()):
        assert torch.equal(a, b)
