"""core.authors_td: the authors' logged dynamics, in exactly their pickle format, give the
hand-computed scores; their checkpoints load; hostile or malformed logs are refused."""

import math
import os
import pickle

import pytest
import torch

from core.authors_td import dynamics_from_logs, log_files
from core.errors import UserError
from core.models import build_model
from core.scoring import final_weights

# 3 examples, 3 classes, labels 0, 1, 2. Per epoch, each example's predicted distribution.
TARGETS = torch.tensor([0, 1, 2])
RIGHT = [0.6, 0.3, 0.1]  # for example 0 (label 0): correct, margin 0.3
WRONG = [0.3, 0.6, 0.1]  # for example 0: wrong, margin -0.3


def distribution(example, correct):
    """The example's probabilities, rotated so that `correct` decides about its own label."""
    probs = RIGHT if correct else WRONG
    return probs[-example:] + probs[:-example] if example else probs


# correctness per epoch of examples 0, 1, 2 over 12 epochs (EL2N stops after epoch 9)
PATTERN = {
    0: [1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1],
    1: [0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0],
    2: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
}
EPOCHS = 12


def records(epoch):
    """The authors' records of one epoch: two batches, examples [2, 0] then [1]."""
    out = []
    for iteration, batch in enumerate(([2, 0], [1])):
        probs = torch.tensor([distribution(i, PATTERN[i][epoch]) for i in batch])
        out.append(
            {
                "epoch": epoch,
                "iteration": iteration,
                "idx": torch.tensor(batch, dtype=torch.long).clone(),
                # as their Trainer logs it: log_softmax(outputs).detach().cpu().half()
                "output": torch.log_softmax(probs.log(), dim=1).detach().cpu().type(torch.half),
            }
        )
    return out


def dump(path, training_dynamics, data_name="cifar10"):
    with open(path, "wb") as fh:  # as their TrainingDynamicsLogger saves it
        pickle.dump({"data-name": data_name, "training_dynamics": training_dynamics}, fh)
    return str(path)


def expected_scores():
    """Hand computation from PATTERN: forgetting = 1 -> 0 transitions (starting from "not
    correct"), margin +-0.3 per visit, EL2N ||p - onehot|| per visit of epochs 0..9."""
    el2n_right = math.sqrt(0.4**2 + 0.3**2 + 0.1**2)
    el2n_wrong = math.sqrt(0.7**2 + 0.6**2 + 0.1**2)
    out = {name: [] for name in ("correctness", "forgetting", "last_correctness", "aum", "el2n")}
    for example in range(3):
        seq = PATTERN[example]
        out["correctness"].append(sum(seq))
        out["forgetting"].append(sum(a == 1 and b == 0 for a, b in zip([0] + seq, seq)))
        out["last_correctness"].append(seq[-1])
        out["aum"].append(sum(0.3 if c else -0.3 for c in seq))
        out["el2n"].append(sum(el2n_right if c else el2n_wrong for c in seq[:10]))
    return out


def check(scores):
    want = expected_scores()
    assert scores["correctness"].tolist() == want["correctness"] == [8, 5, 12]
    assert scores["forgetting"].tolist() == want["forgetting"] == [3, 5, 0]
    assert scores["last_correctness"].tolist() == want["last_correctness"]
    assert scores["visits"].tolist() == [EPOCHS] * 3
    # fp16 log-probabilities: ~1e-3 relative, summed over 12 (10) visits
    assert scores["accumulated_margin"].tolist() == pytest.approx(want["aum"], abs=1e-2)
    assert scores["el2n"].tolist() == pytest.approx(want["el2n"], abs=1e-2)


def test_one_file_log_of_the_cifar_train_py(tmp_path):
    log = dump(tmp_path / "td-all-data.pickle", [r for e in range(EPOCHS) for r in records(e)])
    check(dynamics_from_logs(log, TARGETS, 3).scores())


def test_per_epoch_folder_of_train_imagenet_py(tmp_path):
    folder = tmp_path / "training-dynamics"
    folder.mkdir()
    for epoch in range(EPOCHS):  # file i holds epoch i - 1
        dump(folder / f"td-in-epoch-{epoch + 1}.pickle", records(epoch), "imagenet")
    assert [e for _, e in log_files(str(folder))] == list(range(EPOCHS))
    assert os.path.basename(log_files(str(folder))[9][0]) == "td-in-epoch-10.pickle"
    check(dynamics_from_logs(str(folder), TARGETS, 3).scores())


def test_the_reference_formulas_on_the_same_log_agree(tmp_path):
    """The authors' generate_importance_score.py arithmetic (exp of the fp16 values, target
    set to 0 for the runner-up, MSE-based EL2N) on the same records, within fp16 rounding."""
    log = [r for e in range(EPOCHS) for r in records(e)]
    aum, el2n = torch.zeros(3), torch.zeros(3)
    for item in log:
        output = torch.exp(item["output"].float())
        index = item["idx"]
        label = TARGETS[index]
        rows = range(len(index))
        onehot = torch.nn.functional.one_hot(label, 3)
        if item["epoch"] < 10:
            el2n[index] += torch.sqrt(((onehot - output) ** 2).sum(dim=1))
        target_prob = output[rows, label].clone()
        output[rows, label] = 0
        aum[index] += target_prob - output.max(dim=1)[0]
    ours = dynamics_from_logs(dump(tmp_path / "td.pickle", log), TARGETS, 3).scores()
    assert torch.allclose(ours["accumulated_margin"], aum, atol=2e-3)
    assert torch.allclose(ours["el2n"], el2n, atol=2e-3)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_log_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    log = dump(tmp_path / "td.pickle", [dict(records(0)[0], output=Evil(marker))])
    with pytest.raises(UserError, match=r"td.pickle: it names the global posix.system"):
        dynamics_from_logs(log, TARGETS, 3)
    assert not marker.exists()


@pytest.mark.parametrize(
    "change,message",
    [
        ({"idx": torch.tensor([0, 7])}, r"indices outside 0..2"),
        ({"output": torch.zeros(2, 5).half()}, r"'output' is \[2, 5\], expected \[2, 3\]"),
        ({"idx": torch.tensor([0.0, 1.0])}, r"'idx' is not a 1-D integer tensor"),
    ],
)
def test_malformed_records_name_the_file_and_record(tmp_path, change, message):
    log = dump(tmp_path / "td.pickle", [records(0)[0], dict(records(0)[0], **change)])
    with pytest.raises(UserError, match=rf"td.pickle, record 1: {message}"):
        dynamics_from_logs(log, TARGETS, 3)
    with open(tmp_path / "x.pickle", "wb") as fh:
        pickle.dump({"scores": torch.zeros(3)}, fh)
    with pytest.raises(UserError, match="not a training-dynamics log"):
        dynamics_from_logs(str(tmp_path / "x.pickle"), TARGETS, 3)


def test_per_epoch_folders_must_be_complete(tmp_path):
    for i in (1, 3):
        dump(tmp_path / f"td-in-epoch-{i}.pickle", records(0))
    with pytest.raises(UserError, match="log of epoch 2 is missing"):
        log_files(str(tmp_path))
    with pytest.raises(UserError, match="not found"):
        log_files(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no td-<task>-epoch-<i>.pickle"):
        log_files(str(tmp_path / "empty"))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_the_authors_cifar_checkpoint_loads(name):
    ours = build_model(name, 10).state_dict()
    theirs = {
        (k.replace("fc.", "linear.") if k.startswith("fc.") else k): v for k, v in ours.items()
    }
    weights, args, network = final_weights({"model_state_dict": theirs, "epoch": 199}, False)
    assert args is None and network == name
    assert weights.keys() == ours.keys()
    build_model(network, 10).load_state_dict(weights)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_the_authors_imagenet_checkpoint_loads(name):
    ours = build_model(name, 5, imagenet=True).state_dict()
    theirs = {f"module.{k}": v for k, v in ours.items()}  # nn.DataParallel's prefix
    weights, _, network = final_weights({"model_state_dict": theirs, "epoch": 59}, True)
    assert network == name and weights.keys() == ours.keys()
