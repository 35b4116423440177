"""TDDS, Dyn-Unc, DUAL, the logit margin (core.window_scores via TrainingDynamics), snapshots,
DUAL's Beta sampling and RS2 (core.dynamic_selection): hand-computed cases, online against a
direct computation from the whole trajectory, exact resume, DDP."""

import math
import os

import pytest
import scipy.stats
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from core import window_scores
from core.authors_td import dynamics_from_logs
from core.dynamic_selection import RS2Schedule, dual_beta, dual_sample, rs2_epoch_indices
from core.errors import UserError
from core.scores import TrainingDynamics, make_data_score, scores_at

# ---- hand-computed: 3 examples, 4 epochs, 2 classes ------------------------------------------

# each example's probability of class 0, per epoch; targets 0, 0, 1
P0 = [[0.5, 0.5, 0.5, 0.5], [0.2, 0.4, 0.6, 0.8], [0.5, 0.5, 0.5, 0.1]]
TARGETS3 = torch.tensor([0, 0, 1])
SMALL = dict(tdds_epochs=4, tdds_window=3, tdds_decay=0.5, dyn_unc_window=2, dual_window=2)


def hand_run(**options):
    dynamics = TrainingDynamics(3, 2, extra_scores=True, **{**SMALL, **options})
    for epoch in range(4):
        probs = torch.tensor([[p[epoch], 1 - p[epoch]] for p in P0])
        dynamics.update(epoch, torch.tensor([2, 0, 1]), probs.log()[[2, 0, 1]], TARGETS3[[2, 0, 1]])
    return dynamics.scores()


def target_probs(example):
    return [p if TARGETS3[example] == 0 else 1 - p for p in P0[example]]


def std2(a, b):  # unbiased std of two values
    return abs(a - b) / math.sqrt(2)


def test_dyn_unc_by_hand():
    # windows of 2 ending at epochs 1 and 2; the one ending at the last epoch (3) is left out,
    # as the authors' get_coreset.py does: example 2's jump at epoch 3 does not count yet
    got = hand_run(dual_epochs=4)["dyn_unc"]
    expected = [0.0, (std2(0.2, 0.4) + std2(0.4, 0.6)) / 2, 0.0]
    assert got.tolist() == pytest.approx(expected, abs=1e-6)


def test_dual_by_hand():
    # every window of 2 within the first 4 epochs: mean of std * (1 - mean)
    got = hand_run(dual_epochs=4)
    ex1 = [std2(a, b) * (1 - (a + b) / 2) for a, b in ((0.2, 0.4), (0.4, 0.6), (0.6, 0.8))]
    ex2 = [0.0, 0.0, std2(0.5, 0.9) * (1 - 0.7)]
    assert got["dual"].tolist() == pytest.approx([0.0, sum(ex1) / 3, sum(ex2) / 3], abs=1e-6)
    assert got["dual_mean_prob"].tolist() == pytest.approx([0.5, 0.5, 0.6], abs=1e-6)
    # the first 3 epochs only: windows ending 1 and 2
    early = hand_run(dual_epochs=3)
    assert early["dual"].tolist() == pytest.approx([0.0, sum(ex1[:2]) / 2, 0.0], abs=1e-6)
    assert early["dual_mean_prob"][1].item() == pytest.approx(0.4, abs=1e-6)


def test_tdds_by_hand():
    def change(example, t):  # sum_c p_t,c |log p_t,c - log p_t-1,c| (+1e-8 as the authors)
        now = [P0[example][t], 1 - P0[example][t]]
        before = [P0[example][t - 1], 1 - P0[example][t - 1]]
        return sum(p * abs(math.log(p + 1e-8) - math.log(q + 1e-8)) for p, q in zip(now, before))

    expected = []
    for example in range(3):
        c1, c2, c3 = (change(example, t) for t in (1, 2, 3))
        # T=4, J=3: windows k=0 (c1, c2) and k=1 (c2, c3); L2 norm of the deviations from the
        # window mean; weights 0.5 * 0.5^(T-J-k): 0.25 and 0.5
        expected.append(0.25 * std2(c1, c2) + 0.5 * std2(c2, c3))
    got = hand_run(dual_epochs=4)["tdds"]
    assert got.tolist() == pytest.approx(expected, abs=1e-6)
    assert got[0] == 0 and got[2] > got[1] > 0


def test_logit_margin_by_hand():
    got = hand_run(dual_epochs=4)["accumulated_margin_logits"]
    expected = []
    for example in range(3):
        probs = target_probs(example)
        expected.append(sum(math.log(p) - math.log(1 - p) for p in probs))
    assert got.tolist() == pytest.approx(expected, abs=1e-5)


# ---- online against a direct computation from every epoch's probabilities ---------------------


def offline(logits, targets, cfg, epochs):
    """The authors' formulas on the stored trajectory of the first `epochs` epochs (float64)."""
    z = logits[:epochs].double()
    p = z.softmax(-1)
    rows = torch.arange(z.shape[1])
    tp = p[:, rows, targets]
    w = cfg["dyn_unc_window"]  # Dyn-Unc: windows ending w-1 .. E-2
    stds = [tp[t - w + 1 : t + 1].std(0) for t in range(w - 1, epochs - 1)]
    out = {"dyn_unc": torch.stack(stds).mean(0) if stds else torch.zeros(len(rows))}
    t_dual, w = min(epochs, cfg["dual_epochs"]), cfg["dual_window"]
    windows = [tp[i : i + w] for i in range(t_dual - w + 1)]
    out["dual"] = (
        torch.stack([x.std(0) * (1 - x.mean(0)) for x in windows]).mean(0)
        if windows
        else torch.zeros(len(rows))
    )
    out["dual_mean_prob"] = tp[:t_dual].mean(0)
    t, j, decay = min(epochs, cfg["tdds_epochs"]), cfg["tdds_window"], cfg["tdds_decay"]
    eps = 1e-8
    kl = [(p[i + 1] * (torch.log(p[i + 1] + eps) - torch.log(p[i] + eps))).abs().sum(-1)
          for i in range(t - 1)]  # fmt: skip
    tdds = torch.zeros(len(rows), dtype=torch.float64)
    for k in range(t - j + 1):
        window = torch.stack(kl[k : k + j - 1])
        norm = torch.linalg.vector_norm(window - window.mean(0), dim=0)
        tdds += norm * decay * (1 - decay) ** (t - j - k)
    out["tdds"] = tdds
    others = z.scatter(2, targets.view(1, -1, 1).expand(epochs, -1, 1), float("-inf"))
    out["accumulated_margin_logits"] = (z[:, rows, targets] - others.amax(2)).sum(0)
    return {key: value.double() for key, value in out.items()}


N, C, EPOCHS, BATCH = 40, 5, 10, 8
CONFIGS = {
    "windows differ": dict(
        tdds_epochs=7, tdds_window=4, tdds_decay=0.8, dyn_unc_window=3, dual_epochs=6, dual_window=4
    ),  # fmt: skip
    "windows equal": dict(
        tdds_epochs=12,
        tdds_window=3,
        tdds_decay=0.9,
        dyn_unc_window=3,
        dual_epochs=5,
        dual_window=3,
    ),  # fmt: skip
}


def trajectory(seed=0):
    gen = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, C, (N,), generator=gen)
    logits = 2 * torch.randn(EPOCHS, N, C, generator=gen)
    logits[:, torch.arange(N), targets] += torch.linspace(0, 3, EPOCHS)[:, None]
    orders = [torch.randperm(N, generator=gen) for _ in range(EPOCHS)]
    return targets, logits, orders


def feed(dynamics, epochs, rank=0, world_size=1, after_epoch=lambda: None, stop=None):
    """Every epoch's batches in its own order; `stop=(epoch, batch)` returns there."""
    targets, logits, orders = trajectory()
    for epoch in epochs:
        for number, start in enumerate(range(0, N, BATCH)):
            if stop == (epoch, number):
                return
            batch = orders[epoch][start : start + BATCH]
            share = batch[rank * BATCH // world_size : (rank + 1) * BATCH // world_size]
            dynamics.update(epoch, share, logits[epoch, share], targets[share])
        after_epoch()


@pytest.mark.parametrize("name", CONFIGS)
def test_online_equals_offline_and_snapshots(name):
    cfg = {**CONFIGS[name]}
    dynamics = TrainingDynamics(N, C, extra_scores=True, snapshot_epochs=(3, 6, 10), **cfg)
    feed(dynamics, range(EPOCHS))
    scores = dynamics.scores()
    targets, logits, _ = trajectory()
    for epochs, got in ((EPOCHS, scores), (3, scores_at(scores, 3)), (6, scores_at(scores, 6))):
        want = offline(logits, targets, cfg, epochs)
        for key, value in want.items():
            if key not in got:  # left out exactly where no window is complete yet: zeros
                assert value.eq(0).all() and epochs < EPOCHS, (epochs, key)
                continue
            assert torch.allclose(got[key].double(), value, rtol=1e-5, atol=1e-6), (epochs, key)
        assert got["visits"].eq(epochs).all()
    assert scores["tdds"].gt(0).all() and scores["dyn_unc"].gt(0).all()
    assert torch.equal(scores_at(scores, 10)["tdds"], scores["tdds"])  # ends on a snapshot


def test_tdds_buffers_are_freed_after_its_trajectory():
    dynamics = TrainingDynamics(N, C, extra_scores=True, **CONFIGS["windows differ"])
    feed(dynamics, range(8))  # tdds_epochs=7: epoch 6 ended when epoch 7 began
    assert "prev" not in dynamics._windows.t and "kl" not in dynamics._windows.t
    assert "tdds" in dynamics.scores()


# ---- exact resume ------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [(4, 2), (5, 0), (1, 3)])  # mid-window, at an epoch end, early
def test_resume_mid_window_is_bit_identical(tmp_path, stop):
    options = dict(extra_scores=True, snapshot_epochs=(2, 6), **CONFIGS["windows differ"])
    whole = TrainingDynamics(N, C, **options)
    feed(whole, range(EPOCHS))
    first = TrainingDynamics(N, C, **options)
    feed(first, range(EPOCHS), stop=stop)
    torch.save(first.state_dict(), tmp_path / "td.pt")
    resumed = TrainingDynamics(N, C)  # the settings come with the state
    resumed.load_state_dict(torch.load(tmp_path / "td.pt", weights_only=True))
    targets, logits, orders = trajectory()
    epoch, batch = stop
    for start in range(batch * BATCH, N, BATCH):  # the rest of the stopped epoch
        index = orders[epoch][start : start + BATCH]
        resumed.update(epoch, index, logits[epoch, index], targets[index])
    feed(resumed, range(epoch + 1, EPOCHS))
    a, b = whole.scores(), resumed.scores()
    assert a.keys() == b.keys() and "tdds@6" in a
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ---- DDP: two gloo processes against one ------------------------------------------------------


def _ddp_worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        dynamics = TrainingDynamics(N, C, extra_scores=True, snapshot_epochs=(5,),
                                    **CONFIGS["windows differ"])  # fmt: skip
        feed(dynamics, range(EPOCHS), rank, 2, after_epoch=dynamics.all_reduce)
        torch.save(dynamics.scores(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_all_reduce_matches_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    single = TrainingDynamics(N, C, extra_scores=True, snapshot_epochs=(5,),
                              **CONFIGS["windows differ"])  # fmt: skip
    feed(single, range(EPOCHS))
    expected = single.scores()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert torch.allclose(got[name], value, atol=1e-6), (rank, name)


# ---- the API around it ------------------------------------------------------------------------


def test_off_by_default_and_checked():
    plain = TrainingDynamics(4, 3)
    plain.update(0, torch.arange(4), torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    assert "tdds" not in plain.scores() and "window_scores" not in plain.state_dict()
    with pytest.raises(UserError, match="dual_epochs: only with extra_scores=True"):
        TrainingDynamics(4, 3, dual_epochs=60)
    with pytest.raises(UserError, match="tdds_window must be at least 2"):
        TrainingDynamics(4, 3, extra_scores=True, tdds_window=1)
    dynamics = TrainingDynamics(4, 3, extra_scores=True)
    dynamics.update(2, torch.arange(4), torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(UserError, match="epoch 1 after epoch 2"):
        dynamics.update(1, torch.arange(4), torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))


def test_tdds_is_on_where_its_buffer_fits(monkeypatch):
    assert "prev" in TrainingDynamics(50, 10, extra_scores=True)._windows.t
    monkeypatch.setattr(window_scores, "TDDS_AUTO_MAX_BYTES", 50 * 10 * 4 - 1)
    off = TrainingDynamics(50, 10, extra_scores=True)
    assert "prev" not in off._windows.t
    assert "prev" in TrainingDynamics(50, 10, extra_scores=True, tdds=True)._windows.t


def test_score_file_keys_dtypes_and_picking_a_snapshot():
    windows = dict(tdds_window=2, dyn_unc_window=2, dual_window=2)
    dynamics = TrainingDynamics(N, C, extra_scores=True, snapshot_epochs=(2, 3), **windows)
    feed(dynamics, range(4))
    score = make_data_score(dynamics, None, trajectory()[0])
    for key in ("tdds", "dyn_unc", "dual", "dual_mean_prob", "accumulated_margin_logits"):
        assert score[key].dtype == torch.float32 and f"{key}@3" in score
    assert score["forgetting@3"].dtype == torch.int32 and score["visits@3"].eq(3).all()
    picked = scores_at(score, 3)
    assert "tdds@3" not in picked and torch.equal(picked["el2n"], score["el2n@3"])
    assert torch.equal(picked["targets"], score["targets"])
    # after 2 epochs Dyn-Unc has no complete window (its last one joins an epoch later):
    # neither the snapshot nor a selection by it may fall back on the whole run's value
    assert "dyn_unc@2" not in score and "dyn_unc" not in scores_at(score, 2)
    with pytest.raises(UserError, match=r"--score-epochs 5: .*snapshots: 2, 3"):
        scores_at(score, 5)


def test_authors_logs_give_the_new_scores(tmp_path):
    """Their fp16 log-softmax records replayed: the window scores of exp(values), and the
    logit margin, which a per-row shift (log-softmax) does not change, to fp16 rounding."""
    import pickle

    targets, logits, orders = trajectory()
    records = [
        {"epoch": e, "iteration": i, "idx": idx.clone(),
         "output": torch.log_softmax(logits[e, idx], 1).half()}
        for e in range(EPOCHS) for i, idx in enumerate(orders[e].split(BATCH))
    ]  # fmt: skip
    with open(tmp_path / "td.pickle", "wb") as fh:
        pickle.dump({"data-name": "cifar10", "training_dynamics": records}, fh)
    cfg = CONFIGS["windows differ"]
    got = dynamics_from_logs(str(tmp_path / "td.pickle"), targets, C, extra_scores=True, **cfg)
    got = got.scores()
    stored = torch.zeros(EPOCHS, N, C)
    for r in records:
        stored[r["epoch"], r["idx"]] = r["output"].float()
    for key, value in offline(stored, targets, cfg, EPOCHS).items():
        assert torch.allclose(got[key].double(), value, rtol=1e-4, atol=1e-5), key
    true_margin = offline(logits, targets, cfg, EPOCHS)["accumulated_margin_logits"]
    assert torch.allclose(got["accumulated_margin_logits"].double(), true_margin, atol=0.05)


# ---- DUAL's Beta sampling ---------------------------------------------------------------------


def dual_inputs(n=20000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mean_prob = torch.rand(n, generator=gen)
    scores = 1 + 0.01 * torch.rand(n, generator=gen)  # nearly flat: the Beta decides
    return scores, mean_prob


def test_dual_beta_parameters_by_hand():
    scores = torch.arange(20.0)  # the 10 highest are examples 10..19
    mean_prob = torch.full((20,), 0.9)
    mean_prob[10:] = 0.4
    a, b = dual_beta(mean_prob, scores, ratio=0.3, c_d=4)
    assert b == pytest.approx(15 * (1 - 0.4) * (1 - 0.7**4))
    assert a == pytest.approx(16 - b)


def test_dual_sample_size_distinct_sorted_and_seeded():
    scores, mean_prob = dual_inputs(1000)
    chosen = dual_sample(scores, 0.3, seed=0, mean_prob=mean_prob)
    assert chosen.dtype == torch.int64 and len(chosen) == 300
    assert torch.equal(chosen, chosen.unique())  # distinct and ascending
    assert torch.equal(chosen, dual_sample(scores, 0.3, seed=0, mean_prob=mean_prob))
    assert not torch.equal(chosen, dual_sample(scores, 0.3, seed=1, mean_prob=mean_prob))
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(chosen, dual_sample(scores, 0.3, mean_prob=mean_prob, generator=generator))


def test_dual_sample_follows_the_beta_distribution():
    """Nearly flat scores: the picks' mean probabilities follow Beta(a, b), whose mode moves
    to easy examples as the pruning rate grows (a 10% subset: mode near 0.89)."""
    scores, mean_prob = dual_inputs()
    for ratio in (0.1, 0.5):
        a, b = dual_beta(mean_prob, scores, ratio)
        picked = mean_prob[dual_sample(scores, ratio, seed=0, mean_prob=mean_prob)]
        mode = (a - 1) / (a + b - 2)
        if ratio == 0.1:
            assert mode > 0.85 and picked.mean() > 0.75
        else:
            assert 0.45 < mode < 0.65 and abs(picked.mean().item() - mode) < 0.08
        # the weights are the Beta density: the picks' histogram has scipy's pdf's shape
        hist = torch.histc(picked, bins=20, min=0, max=1).double()
        pdf = torch.from_numpy(scipy.stats.beta.pdf((torch.arange(20) + 0.5) / 20, a, b))
        assert torch.corrcoef(torch.stack([hist, pdf]))[0, 1] > 0.9


def test_dual_sample_scores_weight_the_draw():
    scores, mean_prob = dual_inputs(4000)
    scores[:2000] = 0.001  # the first half nearly never drawn
    chosen = dual_sample(scores, 0.2, seed=0, mean_prob=mean_prob)
    assert (chosen < 2000).float().mean() < 0.05
    zero = torch.zeros(100)
    zero[:5] = 1  # 5 weighted examples, 10 asked for: those 5, then uniform
    picked = dual_sample(zero, 0.1, seed=0, mean_prob=torch.full((100,), 0.5))
    assert len(picked) == 10 and set(range(5)) <= set(picked.tolist())
    with pytest.raises(UserError, match="non-negative"):
        dual_sample(-scores, 0.2, seed=0, mean_prob=mean_prob)


# ---- RS2 --------------------------------------------------------------------------------------


def test_rs2_each_pass_visits_every_example_once():
    n, ratio = 103, 0.1  # 10 per epoch: passes and epochs do not line up
    schedule = RS2Schedule(n, ratio, seed=0)
    epochs = [schedule.indices(e) for e in range(103)]  # 1030 visits: exactly 10 passes
    assert all(len(e) == 10 and torch.equal(e, e.unique()) for e in epochs)
    assert torch.bincount(torch.cat(epochs), minlength=n).eq(10).all()
    first_pass = torch.cat(epochs[:10])  # 100 of the first pass's 103
    assert len(first_pass.unique()) == 100
    assert len(torch.cat(epochs[:11]).unique()) == n  # epoch 10: pass 0's last 3, then pass 1
    # 100 examples, 30 per epoch: 10 epochs are 3 whole passes
    counts = torch.bincount(torch.cat([rs2_epoch_indices(100, 0.3, e, 5) for e in range(10)]))
    assert counts.eq(3).all()


def test_rs2_draws_differ_and_any_epoch_is_reproducible():
    schedule = RS2Schedule(1000, 0.1, seed=3)
    sequential = [schedule.indices(e) for e in range(25)]
    for e in (24, 0, 13, 7):  # out of order, from scratch
        assert torch.equal(rs2_epoch_indices(1000, 0.1, e, 3), sequential[e])
    assert not torch.equal(sequential[0], sequential[10])  # the second pass is a new order
    assert not torch.equal(sequential[0], rs2_epoch_indices(1000, 0.1, 0, 4))
    assert sequential[0].dtype == torch.int64


def test_rs2_class_balanced_keeps_class_proportions():
    targets = torch.tensor([0] * 55 + [1] * 30 + [2] * 18)[torch.randperm(103)]
    schedule = RS2Schedule(103, 0.1, seed=0, targets=targets)
    per_class = []
    for e in range(60):
        chosen = schedule.indices(e)
        assert len(chosen) == 10 and torch.equal(chosen, chosen.unique())
        per_class.append(torch.bincount(targets[chosen], minlength=3))
    # quotas 5.34, 2.91, 1.75 of 10: floors 5, 2, 1, then the largest remainders
    assert all(c.tolist() == [5, 3, 2] for c in per_class)
    # class 2 (18 examples, 2 per epoch): every 9 epochs a whole pass
    seen = torch.cat([schedule.indices(e) for e in range(9)])
    assert sorted(seen[targets[seen] == 2].tolist()) == sorted(
        (targets == 2).nonzero().squeeze(1).tolist()
    )
    with pytest.raises(UserError, match="selects no example"):
        RS2Schedule(5, 0.1, seed=0)
