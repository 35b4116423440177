"""`build_model(name, num_classes, image_size)`: one factory for every network the scripts name."""

import torch.nn as nn

from core.errors import UserError
from core.models.airbench import Airbench94
from core.models.cifar_resnet import BasicBlock, Bottleneck, ResNet, SmallResNet
from core.models.head import Fp32Linear

CIFAR_NETWORKS = ("resnet18", "resnet50", "resnet20", "resnet32", "resnet56", "airbench94")
IMAGENET_NETWORKS = ("resnet18", "resnet34", "resnet50")


def build_model(name: str, num_classes: int, imagenet: bool = False) -> nn.Module:
    """A freshly initialised network; its classifier is always ``model.fc``, an Fp32Linear:
    float32 logits under bf16 autocast, for the training dynamics."""
    if imagenet:
        if name not in IMAGENET_NETWORKS:
            raise UserError(
                f"--network {name!r} is not an ImageNet network; choose from "
                f"{', '.join(IMAGENET_NETWORKS)}"
            )
        import torchvision.models  # here, not at the top: ~2 s that CIFAR runs need not pay

        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        model.fc = Fp32Linear.from_linear(model.fc)  # same initialised parameters
        return model
    if name == "resnet18":
        return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)
    if name == "resnet50":
        return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)
    if name in ("resnet20", "resnet32", "resnet56"):
        return SmallResNet(int(name[len("resnet") :]), num_classes)
    if name == "airbench94":
        return Airbench94(num_classes)
    raise UserError(f"--network {name!r} is unknown; choose from {', '.join(CIFAR_NETWORKS)}")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers (its state_dict has clean keys)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def classifier_of(model: nn.Module) -> nn.Module:
    """The final linear layer (its input is the penultimate feature), through any wrappers."""
    return unwrap(model).fc
