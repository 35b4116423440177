"""Every network's classifier runs in float32 under bf16 autocast, so the training dynamics
see float32 logits (docs/FAITHFULNESS.md S2); and how far they still are from a float32 model."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from tinydata import tiny_images

from core.models import CIFAR_NETWORKS, IMAGENET_NETWORKS, build_model
from core.models.head import Fp32Linear
from core.scores import batch_statistics


def bf16_forward(model, images):
    """(logits, the classifier's input) of one forward under CPU bf16 autocast."""
    captured = []
    hook = model.fc.register_forward_hook(lambda m, inputs, out: captured.append(inputs[0]))
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(images)
    finally:
        hook.remove()
    return logits, captured[0]


@pytest.mark.parametrize(
    "name,imagenet",
    [(n, False) for n in ("resnet20", "resnet18")] + [(n, True) for n in ("resnet18",)],
)
def test_logits_are_float32_under_bf16_autocast(name, imagenet):
    torch.manual_seed(0)
    model = build_model(name, 10, imagenet=imagenet).eval()
    logits, features = bf16_forward(model, torch.randn(2, 3, 32, 32))
    assert isinstance(model.fc, Fp32Linear) and features.dtype == torch.bfloat16
    assert logits.dtype == torch.float32
    # exactly the float32 layer on the (bf16) features: no bf16 rounding of the logits
    assert torch.equal(logits, F.linear(features.float(), model.fc.weight, model.fc.bias))
    assert {k for k in model.state_dict() if k.startswith("fc.")} == {"fc.weight", "fc.bias"}


def test_every_network_has_the_fp32_head_and_its_usual_initialisation():
    for name in CIFAR_NETWORKS:
        assert isinstance(build_model(name, 3).fc, Fp32Linear), name
    for name in IMAGENET_NETWORKS:
        torch.manual_seed(0)
        model = build_model(name, 3, imagenet=True)
        after = torch.rand(1)  # the swap draws nothing from the global RNG
        torch.manual_seed(0)
        plain = getattr(torchvision.models, name)(weights=None, num_classes=3)
        assert torch.equal(after, torch.rand(1)), name
        assert isinstance(model.fc, Fp32Linear)
        assert torch.equal(model.fc.weight, plain.fc.weight), name


@pytest.mark.slow  # trains a ResNet-20 for a few steps; CPU bf16 convolutions are slow
def test_measured_distance_from_a_float32_model():
    """Per-visit scores from a bf16-autocast forward vs a float32 forward of the same weights
    (ResNet-20 briefly trained on 512 tiny 16x16 images, a third of them relabelled at random
    so that margins spread over [-1, 1]): the figures of FAITHFULNESS S2."""
    torch.manual_seed(0)
    images, labels = tiny_images(512, 10, size=(16, 16), seed=0)
    x = (torch.from_numpy(images).float() / 255 - 0.5) / 0.25
    y = torch.from_numpy(labels)
    y[::3] = torch.randint(0, 10, (len(y[::3]),), generator=torch.Generator().manual_seed(1))
    model = build_model("resnet20", 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        batch = torch.randint(0, len(y), (64,), generator=generator)
        loss = F.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # train mode, as the dynamics are recorded (batch statistics in BatchNorm)
    with torch.no_grad():
        reference = batch_statistics(model(x), y)  # float32 body and head
    logits, features = bf16_forward(model, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what a plain Linear head returned
        bf16_logits = F.linear(features, model.fc.weight, model.fc.bias)
    assert bf16_logits.dtype == torch.bfloat16
    figures = {}
    for head, out in (("fp32 head", logits), ("bf16 head", bf16_logits)):
        correct, margin, el2n = batch_statistics(out, y)
        figures[head] = (
            (margin - reference[1]).abs().max().item(),
            (el2n - reference[2]).abs().max().item(),
            int((correct != reference[0]).sum()),
        )
    print(f"accuracy {reference[0].float().mean():.3f}; per visit max |dmargin|, |del2n|, flips:")
    print(figures)
    fp32_head, bf16_head = figures["fp32 head"], figures["bf16 head"]
    assert fp32_head[0] < bf16_head[0] and fp32_head[1] < bf16_head[1]
    # what remains is the bf16 body's share (here 1.1e-2 margin, 2 of 512 flips; 1.6e-2 and 3
    # with the bf16 head)
    assert fp32_head[0] < 0.03 and fp32_head[2] <= 5
