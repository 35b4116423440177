"""The authors' training-dynamics log format and their scoring arithmetic, for tests.

`authors_log` writes what their train.py's TrainingDynamicsLogger records; `reference_dynamics`
is their generate_importance_score.py's arithmetic on such a log (exp of the fp16 values, the
target's probability set to 0 to find the runner-up, EL2N from an MSE), kept independent of
core.scores so that tests compare two computations.
"""

import torch


def authors_log(n, epochs, batch, num_classes=10, seed=0):
    """A log as the authors' train.py writes it: per batch epoch, iteration, idx, fp16
    log-softmax; shuffled batches with a final partial one."""
    generator = torch.Generator().manual_seed(seed)
    log = []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        for iteration, idx in enumerate(order.split(batch)):
            logits = 3 * torch.randn(len(idx), num_classes, generator=generator)
            log.append(
                {
                    "epoch": epoch,
                    "iteration": iteration,
                    "idx": idx.long().clone(),
                    "output": torch.log_softmax(logits, 1).cpu().type(torch.half),
                }
            )
    return log


def reference_dynamics(log, targets, max_epoch=10):
    """The authors' training_dynamics_metrics and EL2N, reduced to arithmetic."""
    n = len(targets)
    score = {k: torch.zeros(n, dtype=torch.int32) for k in ("correctness", "forgetting", "last")}
    aum, el2n = torch.zeros(n), torch.zeros(n)
    for item in log:
        output = torch.exp(item["output"].float())
        index, label = item["idx"], targets[item["idx"]]
        correct = (output.argmax(1) == label).int()
        score["forgetting"][index] += ((score["last"][index] == 1) & (correct == 0)).int()
        score["last"][index] = correct
        score["correctness"][index] += correct
        rows = range(len(index))
        if item["epoch"] < max_epoch:
            onehot = torch.nn.functional.one_hot(label, output.shape[1])
            el2n[index] += torch.sqrt(((onehot - output) ** 2).sum(1))
        target_prob = output[rows, label].clone()
        output[rows, label] = 0
        aum[index] += target_prob - output.max(1)[0]
    return score, aum, el2n
