"""airbench94: the network of Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU" (2024).

A frozen 2x2 whitening convolution (its 24 filters are the +/- eigenvectors of the training
images' 2x2-patch covariance, set by ``init_whitening``), then three blocks of conv-pool-BN-GELU,
conv-BN-GELU (64, 256, 256 channels), a 3x3 max-pool and a linear head scaled by 1/9. BatchNorm
has no learnable scale; every 3x3 convolution starts as the identity on its first input-many
filters (an implicit residual). Trained with ``core.training.recipe.FastRecipe``.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.models.head import Fp32Linear

WIDTHS = (64, 256, 256)
WHITEN_KERNEL = 2
WHITEN_EPS = 5e-4  # added to the patch covariance's eigenvalues before 1/sqrt
BN_MOMENTUM = 0.4  # PyTorch's convention: running = 0.6 running + 0.4 batch
BN_EPS = 1e-12
HEAD_SCALE = 1 / 9


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with a learnable bias only: the scale stays 1 (kept as a frozen parameter so
    the state_dict has a standard BatchNorm's keys)."""
    bn = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
    bn.weight.requires_grad_(False)
    return bn


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding="same", bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(cin, cout)])  # identity on the first cin filters
    return conv


class Block(nn.Module):
    """conv, 2x2 max-pool, BN, GELU, conv, BN, GELU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.norm1 = conv3x3(cin, cout), batch_norm(cout)
        self.conv2, self.norm2 = conv3x3(cout, cout), batch_norm(cout)

    def forward(self, x):
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class ScaledLinear(Fp32Linear):
    """The head: float32 logits ``scale * x @ W.T``; its input is the unscaled feature."""

    def __init__(self, in_features: int, out_features: int, scale: float):
        super().__init__(in_features, out_features, bias=False)
        self.scale = scale

    def forward(self, x):
        return super().forward(x) * self.scale


class Airbench94(nn.Module):
    def __init__(self, num_classes: int = 10, widths=WIDTHS):
        super().__init__()
        whiten_width = 2 * 3 * WHITEN_KERNEL**2
        self.whiten = nn.Conv2d(3, whiten_width, WHITEN_KERNEL, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)  # set from data by init_whitening, never trained
        nn.init.zeros_(self.whiten.bias)
        self.layer1 = Block(whiten_width, widths[0])
        self.layer2 = Block(widths[0], widths[1])
        self.layer3 = Block(widths[1], widths[2])
        self.fc = ScaledLinear(widths[2], num_classes, HEAD_SCALE)

    def forward(self, x):
        x = F.gelu(self.whiten(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.max_pool2d(x, 3).flatten(1))  # 3x3 map -> 1x1

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, mean=None, std=None, eps=WHITEN_EPS):
        """Set the whitening filters from training images: normalised float [N, 3, H, W], or
        uint8 with the loader's ``mean`` and ``std``. The filters are the eigenvectors of the
        (uncentred) covariance of all 2x2 patches, each divided by sqrt(eigenvalue + eps), and
        their negatives: the layer's outputs have about identity patch covariance."""
        x = images.to(self.whiten.weight.device)
        if x.dtype == torch.uint8:
            m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
            s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
            x = (x.float() / 255 - m) / s
        k = WHITEN_KERNEL
        patches = x.float().unfold(2, k, 1).unfold(3, k, 1)  # N, C, H', W', k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * k * k)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        filters = (eigenvectors.T / (eigenvalues[:, None] + eps).sqrt()).flip(0)  # largest first
        filters = filters.view(-1, 3, k, k)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))
