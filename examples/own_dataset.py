"""CCS on your own data, through the library: record dynamics while you train, score, select.

Runs in seconds on CPU with a synthetic dataset; replace the data, model and loop with yours.
The only requirement on your loop: it must know each example's index in the dataset.

    python examples/own_dataset.py
"""

import os
import sys
import tempfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from core.coreset import select_coreset  # noqa: E402
from core.score_io import load_data_score, save_data_score  # noqa: E402
from core.scores import TrainingDynamics, inference_scores, make_data_score  # noqa: E402

torch.manual_seed(0)
N, C, D, EPOCHS = 2000, 5, 20, 8
centres = torch.randn(C, D) * 2
targets = torch.randint(0, C, (N,))
inputs = centres[targets] + torch.randn(N, D)
targets[:100] = torch.randint(0, C, (100,))  # some label noise: CCS's hard cut drops such examples

model = torch.nn.Sequential(torch.nn.Linear(D, 64), torch.nn.ReLU(), torch.nn.Linear(64, C))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

# 1. Train on all data, feeding every batch's logits (with dataset indices) to the accumulator.
dynamics = TrainingDynamics(num_examples=N, num_classes=C)
for epoch in range(EPOCHS):
    for index in torch.randperm(N).split(100):
        logits = model(inputs[index])
        loss = F.cross_entropy(logits, targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        dynamics.update(epoch, index, logits.detach(), targets[index])

# 2. Scores: dynamics + one eval pass of the final model (entropy, loss, features for Moderate).
batches = ((i, inputs[i], targets[i]) for i in torch.arange(N).split(500))
inference = inference_scores(model, batches, N, feature_module=model[2])
data_score = make_data_score(dynamics, inference, targets)
path = os.path.join(tempfile.mkdtemp(), "data-score.pickle")
save_data_score(path, data_score)  # the reference's file format

# 3. Select: CCS keeps 10% (90% pruning), after cutting the 10% lowest-AUM examples.
data_score = load_data_score(path)
keep = select_coreset(
    data_score, mode="stratified", ratio=0.1, key="accumulated_margin", mis_ratio=0.1, seed=0
)
print(
    f"kept {keep.numel()} of {N} examples; noisy ones kept: {(keep < 100).sum().item()} "
    f"(random would keep about {int(0.1 * 100)})"
)
subset = torch.utils.data.TensorDataset(inputs[keep], targets[keep])  # train a fresh model on it
