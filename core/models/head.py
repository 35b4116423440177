"""The classifier layer every network ends in: a Linear that always computes in float32.

Under bf16 autocast (the CUDA default, docs/FAITHFULNESS.md T2) a plain Linear returns bf16
logits, and the training dynamics recorded from them (AUM, forgetting, EL2N) would carry
bf16's 8-bit-mantissa rounding. Running this one small layer in float32 gives the dynamics
float32 logits for the cost of one fp32 matmul per batch (docs/FAITHFULNESS.md S2).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Fp32Linear(nn.Linear):
    """nn.Linear whose forward leaves autocast: float32 input, weights and output.

    A subclass, so its parameters, state_dict keys (``fc.weight``, ``fc.bias``) and
    initialisation are a Linear's and checkpoints load either way.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.float(), self.weight, self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Fp32Linear":
        """The same layer (same parameter tensors) as an Fp32Linear."""
        # on the meta device: no initialisation draws from the global RNG, the seeded run's
        # later draws stay as they were
        head = cls(linear.in_features, linear.out_features, linear.bias is not None, "meta")
        head.weight, head.bias = linear.weight, linear.bias
        return head
