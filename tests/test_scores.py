"""core.scores: the score definitions on hand-computed cases, DDP reduction, inference pass."""

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from core.errors import UserError
from core.scores import TrainingDynamics, inference_scores, make_data_score, moderate_distance


def logits_of(probs):
    return torch.log(torch.tensor(probs, dtype=torch.float32))


def one_example_logits(correct: bool):
    """3 classes, target 0: predicted class 0 when correct, else class 1."""
    return logits_of([[0.6, 0.3, 0.1]] if correct else [[0.3, 0.6, 0.1]])


def test_forgetting_sequence():
    dynamics = TrainingDynamics(2, 3)
    pattern = [0, 1, 1, 0, 1, 0, 0, 1]  # 1->0 twice: two forgetting events
    for epoch, correct in enumerate(pattern):
        dynamics.update(epoch, torch.tensor([1]), one_example_logits(correct), torch.tensor([0]))
    scores = dynamics.scores()
    assert scores["forgetting"].tolist() == [0, 2]
    assert scores["correctness"].tolist() == [0, 4]
    assert scores["last_correctness"].tolist() == [0, 1]
    assert scores["visits"].tolist() == [0, 8]


def test_first_visit_wrong_is_not_a_forgetting_event():
    dynamics = TrainingDynamics(1, 3)
    for epoch, correct in enumerate([0, 0, 1, 0]):
        dynamics.update(epoch, torch.tensor([0]), one_example_logits(correct), torch.tensor([0]))
    assert dynamics.scores()["forgetting"].tolist() == [1]
    assert dynamics.scores()["last_correctness"].tolist() == [0]


def test_margin_and_el2n_hand_computed():
    dynamics = TrainingDynamics(3, 3)
    logits = logits_of([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]])
    # example 0: y=0, margin .5-.3; example 1: y=2, margin .2-.5; example 2: tie with y -> 0
    dynamics.update(0, torch.tensor([0, 1, 2]), logits, torch.tensor([0, 2, 1]))
    scores = dynamics.scores()
    assert scores["accumulated_margin"].tolist() == pytest.approx([0.2, -0.3, 0.0], abs=1e-6)
    expected_el2n = [
        math.sqrt(0.25 + 0.09 + 0.04),
        math.sqrt(0.25 + 0.09 + 0.64),
        math.sqrt(0.16 + 0.36 + 0.04),
    ]
    assert scores["el2n"].tolist() == pytest.approx(expected_el2n, abs=1e-6)
    assert scores["correctness"].tolist() == [1, 0, 0]  # the tie goes to the first class (0)


def test_el2n_counts_only_the_first_epochs():
    dynamics = TrainingDynamics(1, 3, el2n_epochs=2)
    logits = logits_of([[0.5, 0.3, 0.2]])
    for epoch in range(5):
        dynamics.update(epoch, torch.tensor([0]), logits, torch.tensor([0]))
    scores = dynamics.scores()
    assert scores["el2n"].item() == pytest.approx(2 * math.sqrt(0.38), abs=1e-6)
    assert scores["accumulated_margin"].item() == pytest.approx(5 * 0.2, abs=1e-5)
    assert scores["visits"].item() == 5


def test_dtypes_and_unvisited_examples():
    dynamics = TrainingDynamics(4, 3)
    dynamics.update(0, torch.tensor([2]), logits_of([[0.5, 0.3, 0.2]]), torch.tensor([0]))
    scores = dynamics.scores()
    for name in ("forgetting", "correctness", "last_correctness", "visits"):
        assert scores[name].dtype == torch.int32 and scores[name].device.type == "cpu"
    for name in ("accumulated_margin", "el2n"):
        assert scores[name].dtype == torch.float32
    assert scores["visits"].tolist() == [0, 0, 1, 0]


def test_bf16_logits_accumulate_in_float32():
    dynamics = TrainingDynamics(2, 3)
    logits = logits_of([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]]).bfloat16()
    probs = logits.float().softmax(1)[0]
    margin = (probs[0] - probs[1]).item()
    for epoch in range(200):
        dynamics.update(epoch, torch.tensor([0, 1]), logits, torch.tensor([0, 0]))
    total = dynamics.scores()["accumulated_margin"]
    assert total.dtype == torch.float32
    # a bf16 running sum (8-bit mantissa, spacing 0.25 at 32) would be off by far more
    assert total.tolist() == pytest.approx([200 * margin] * 2, rel=1e-5)


def test_state_dict_round_trip(tmp_path):
    dynamics = TrainingDynamics(3, 3, el2n_epochs=4)
    for epoch, correct in enumerate([1, 0, 1]):
        dynamics.update(epoch, torch.tensor([1]), one_example_logits(correct), torch.tensor([0]))
    torch.save(dynamics.state_dict(), tmp_path / "td.pt")
    restored = TrainingDynamics(3, 3)
    restored.load_state_dict(torch.load(tmp_path / "td.pt", weights_only=True))
    assert restored.el2n_epochs == 4
    restored.update(3, torch.tensor([1]), one_example_logits(False), torch.tensor([0]))
    dynamics.update(3, torch.tensor([1]), one_example_logits(False), torch.tensor([0]))
    for name, value in dynamics.scores().items():
        assert torch.equal(restored.scores()[name], value), name
    assert restored.scores()["forgetting"].tolist() == [0, 2, 0]


def test_scores_are_compact_copies():
    dynamics = TrainingDynamics(3, 3)
    scores = dynamics.scores()
    assert all(v.untyped_storage().nbytes() == 3 * 4 for v in scores.values())
    scores["visits"] += 1
    assert dynamics.scores()["visits"].tolist() == [0, 0, 0]


def test_load_state_dict_of_another_size():
    with pytest.raises(UserError, match="5 examples.*has 3"):
        TrainingDynamics(3, 3).load_state_dict(TrainingDynamics(5, 3).state_dict())


def test_all_reduce_without_process_group_is_a_no_op():
    dynamics = TrainingDynamics(2, 3)
    dynamics.update(0, torch.tensor([0]), one_example_logits(True), torch.tensor([0]))
    before = dynamics.scores()
    dynamics.all_reduce()
    assert all(torch.equal(before[k], v) for k, v in dynamics.scores().items())


# ---- DDP: two gloo processes against one process fed the same batches -----------------------

N, C, EPOCHS, BATCH = 40, 5, 4, 8


def synthetic_run():
    """Targets, per-(epoch, example) logits (about half correct) and each epoch's order."""
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(0, C, (N,), generator=gen)
    logits = torch.randn(EPOCHS, N, C, generator=gen)
    logits[:, torch.arange(N), targets] += 1.5 * torch.rand(EPOCHS, N, generator=gen)
    orders = [torch.randperm(N, generator=gen) for _ in range(EPOCHS)]
    return targets, logits, orders


def feed(dynamics, rank, world_size, after_epoch=lambda: None):
    targets, logits, orders = synthetic_run()
    for epoch, order in enumerate(orders):
        for start in range(0, N, BATCH):
            batch = order[start : start + BATCH]
            share = batch[rank * BATCH // world_size : (rank + 1) * BATCH // world_size]
            dynamics.update(epoch, share, logits[epoch, share], targets[share])
        after_epoch()


def _ddp_worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        dynamics = TrainingDynamics(N, C, el2n_epochs=2)
        feed(dynamics, rank, 2, after_epoch=dynamics.all_reduce)
        torch.save(dynamics.scores(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_all_reduce_matches_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    single = TrainingDynamics(N, C, el2n_epochs=2)
    feed(single, 0, 1)
    expected = single.scores()
    assert expected["forgetting"].sum() > 0 and expected["visits"].eq(EPOCHS).all()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, value in expected.items():
            assert torch.allclose(got[name], value, atol=1e-6), (rank, name)
            assert got[name].dtype == value.dtype


# ---- inference pass ---------------------------------------------------------------------------


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_inference_scores_by_index_with_features():
    model = tiny_model().train()
    images = torch.randn(6, 2, 2)
    targets = torch.tensor([0, 1, 1, 0, 1, 0])
    order = torch.tensor([4, 0, 5, 2])  # out of order; examples 1 and 3 never scored
    batches = [
        (order[:2], images[order[:2]], targets[order[:2]]),
        (order[2:], images[order[2:]], targets[order[2:]]),
    ]
    out = inference_scores(model, batches, 6, feature_module=model[3])
    assert model.training  # mode restored
    with torch.no_grad():
        logits = model.eval()(images)
        features = model[2](model[1](model[0](images)))
    probs = logits.softmax(1)
    entropy = -(probs * torch.log(probs + 1e-10)).sum(1)
    loss = nn.functional.cross_entropy(logits, targets, reduction="none")
    covered = order.sort().values
    assert torch.allclose(out["entropy"][covered], entropy[covered], atol=1e-6)
    assert torch.allclose(out["loss"][covered], loss[covered], atol=1e-6)
    assert torch.allclose(out["features"][covered], features[covered], atol=1e-6)
    assert out["loss"][[1, 3]].tolist() == [0.0, 0.0]
    assert out["features"].shape == (6, 3) and out["features"].dtype == torch.float32


def test_inference_scores_keeps_eval_mode_and_skips_features():
    model = tiny_model().eval()
    out = inference_scores(
        model, [(torch.arange(2), torch.randn(2, 2, 2), torch.tensor([0, 1]))], 2
    )
    assert not model.training and set(out) == {"entropy", "loss"}


def test_moderate_distance_hand_computed():
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 0.0], [4.0, 6.0], [2.0, 2.0]])
    targets = torch.tensor([0, 0, 1, 0, 1])
    # class 0 median (2, 0); class 1 (even count) median (1, 1)
    expected = [2.0, 0.0, math.sqrt(2), math.sqrt(40), math.sqrt(2)]
    got = moderate_distance(features, targets)
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx(expected, abs=1e-6)


def test_make_data_score_keys_and_dtypes():
    dynamics = TrainingDynamics(5, 3)
    dynamics.update(0, torch.arange(5), torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1]))
    inference = {
        "entropy": torch.rand(5),
        "loss": torch.rand(5).double(),
        "features": torch.randn(5, 4),
    }
    score = make_data_score(dynamics, inference, torch.tensor([0, 1, 2, 0, 1]))
    ints = {"targets", "correctness", "forgetting", "last_correctness", "visits"}
    floats = {"accumulated_margin", "el2n", "entropy", "loss", "moderate_distance"}
    assert set(score) == ints | floats
    assert all(score[k].dtype == torch.int32 for k in ints)
    assert all(score[k].dtype == torch.float32 for k in floats)
    assert score["targets"].tolist() == [0, 1, 2, 0, 1]
    with pytest.raises(UserError, match="'entropy' has 5 entries, expected 4"):
        make_data_score(None, {"entropy": torch.rand(5)}, torch.zeros(4))


def test_a_resumed_accumulator_sums_in_the_same_order():
    """Float sums are not associative: restored totals must continue the same running sum."""
    from core.scores import TrainingDynamics

    g = torch.Generator().manual_seed(0)
    batches = [(torch.arange(64), torch.randn(64, 10, generator=g) * 5) for _ in range(12)]
    targets = torch.randint(0, 10, (64,), generator=g)
    whole = TrainingDynamics(64, 10)
    for epoch, (index, logits) in enumerate(batches):
        whole.update(epoch, index, logits, targets)
    first = TrainingDynamics(64, 10)
    for epoch, (index, logits) in enumerate(batches[:5]):
        first.update(epoch, index, logits, targets)
    resumed = TrainingDynamics(64, 10)
    resumed.load_state_dict(first.state_dict())
    for epoch, (index, logits) in enumerate(batches[5:], start=5):
        resumed.update(epoch, index, logits, targets)
    a, b = whole.scores(), resumed.scores()
    for name in a:
        assert torch.equal(a[name], b[name]), name
