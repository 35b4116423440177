"""Add a selection method of your own and run it through train.py and the report.

A method is one function plus one registry entry (core/methods.py). This toy one keeps every
k-th example along the score order, which spreads the coreset evenly over the ranking (a crude
cousin of CCS's strata). Register it, then run train.py's own main: every train.py flag works,
and the new mode and its parameter (`--every-kth-offset`) are flags like the built-in ones.

    python examples/toy_method.py --dataset cifar10 --iterations 2000 --task-name kth-0.1 \\
        --base-dir ./data-model/cifar10/kth --coreset --coreset-mode every_kth \\
        --data-score-path ./data-model/cifar10/all-data/data-score-all-data.pickle \\
        --coreset-key accumulated_margin --coreset-ratio 0.1
    python -m core.report ./data-model/cifar10   # the report lists it as "every_kth"
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.methods import SCORES, Method, Param, register  # noqa: E402


def every_kth(ctx) -> torch.Tensor:
    """`ctx` (core.coreset.Context) holds the checked selection, the score data and the budget;
    return the dataset indices to keep (any order)."""
    order = torch.sort(ctx.score(), descending=ctx.selection.descending, stable=True).indices
    step = len(order) / ctx.budget
    offset = ctx.selection.params["every_kth_offset"]
    picks = (torch.arange(ctx.budget, dtype=torch.float64) * step + offset).long()
    return order[picks.clamp_max(len(order) - 1)].unique()


register(
    Method(
        "every_kth",
        every_kth,
        "every k-th example along the score order (a toy method: examples/toy_method.py)",
        inputs=(SCORES,),
        default_key="accumulated_margin",
        result_name="every_kth",
        params=(
            Param(
                "every_kth_offset",
                0,
                "the offset",
                kind=int,
                low=0,
                help="(toy) every_kth: position of the first pick in the order (default: 0)",
            ),
        ),
    )
)

if __name__ == "__main__":
    import train  # after the registration: its parser takes the choices from the registry

    sys.exit(train.dist_utils.run_entry_point(train.main, train.get_args_parser().parse_args()))
