"""The README's CIFAR10 seed commands, run as written on a tiny CIFAR10 (lengths shortened,
--network resnet20 for CPU speed, --data-dir pointing at the tiny data)."""

import json
import os
import pickle

import pytest
import torch
from authors_format import authors_log, reference_dynamics
from conftest import coreset_flags, run_script, score_argv, train_argv

pytestmark = pytest.mark.slow  # runs the real scripts in subprocesses

EPOCHS = 5


def seed_commands(data_dir, base):
    """The seven seed commands of the original README, shortened."""
    score = f"{base}/all-data/data-score-all-data.pickle"

    def coreset_run(name, mode, **flags):
        return train_argv(
            data_dir,
            f"{base}/{name}",
            f"{name}-0.1",
            iterations=12,
            gpuid=0,
            **coreset_flags(mode, 0.1, **flags),
        )

    return {
        "full": train_argv(data_dir, base, "all-data", gpuid=0, epochs=EPOCHS, lr=0.1),
        "scores": score_argv(base, "all-data", gpuid=0),
        "ccs": coreset_run(
            "ccs",
            "stratified",
            data_score_path=score,
            coreset_key="accumulated_margin",
            mis_ratio=0.3,
        ),
        "random": coreset_run("random", "random"),
        "forgetting": coreset_run(
            "forgetting",
            "coreset",
            data_score_path=score,
            coreset_key="forgetting",
            data_score_descending=1,
        ),
        "aum": coreset_run(
            "accumulated_margin",
            "coreset",
            data_score_path=score,
            coreset_key="accumulated_margin",
            data_score_descending=0,
        ),
        "el2n": coreset_run(
            "el2n", "coreset", data_score_path=score, coreset_key="el2n", data_score_descending=1
        ),
    }


@pytest.fixture(scope="module")
def pipeline(tiny_cifar10, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("runs") / "cifar10")
    commands = seed_commands(tiny_cifar10, base)
    outputs = {name: run_script(*argv) for name, argv in commands.items()}
    return base, outputs


def test_full_data_run_writes_its_files(pipeline):
    base, outputs = pipeline
    run = f"{base}/all-data"
    for name in (
        "ckpt-last.pt",
        "ckpt-best.pt",
        "log-train-all-data.log",
        "td-all-data.pt",
        "metrics.json",
    ):
        assert os.path.isfile(f"{run}/{name}"), name
    metrics = json.load(open(f"{run}/metrics.json"))
    assert metrics["method"] == "full" and metrics["pruning_rate"] == 0.0
    assert metrics["train_size"] == metrics["coreset_size"] == 400
    assert metrics["epochs"] == EPOCHS and metrics["iterations"] == EPOCHS * 7  # ceil(400/64)
    assert 0.0 <= metrics["last_acc"] <= metrics["best_acc"] <= 1.0
    for key in ("wall_time_s", "images_per_s", "seed", "device", "args", "versions", "git_commit"):
        assert key in metrics, key
    # the log mirrors what was printed
    log = open(f"{run}/log-train-all-data.log").read()
    assert f"epoch {EPOCHS}/{EPOCHS}" in log and "done: best acc" in log
    # output to a pipe: plain lines, no progress bar's carriage returns
    for proc in outputs.values():
        assert "\r" not in proc.stdout + proc.stderr


def test_tiny_data_is_learned(pipeline):
    base, _ = pipeline
    metrics = json.load(open(f"{base}/all-data/metrics.json"))
    assert metrics["best_acc"] > 0.25  # 10 classes: chance is 0.1


def test_dynamics_visit_every_example_once_per_epoch(pipeline):
    base, _ = pipeline
    td = torch.load(f"{base}/all-data/td-all-data.pt", weights_only=True)
    assert td["epochs"] == EPOCHS
    assert torch.equal(td["scores"]["visits"], torch.full((400,), EPOCHS, dtype=torch.int32))
    # O(N): the file holds a handful of N-vectors, whatever the epochs and classes
    assert os.path.getsize(f"{base}/all-data/td-all-data.pt") < 400 * 4 * 12 + 20_000


def test_score_file_has_the_reference_keys(pipeline):
    base, _ = pipeline
    with open(f"{base}/all-data/data-score-all-data.pickle", "rb") as fh:
        score = pickle.load(fh)  # the authors' scripts read it this way
    int_keys = ("targets", "correctness", "forgetting", "last_correctness", "visits")
    float_keys = ("accumulated_margin", "el2n", "entropy", "loss", "moderate_distance")
    for key in int_keys:
        assert score[key].dtype == torch.int32 and score[key].shape == (400,), key
    for key in float_keys:
        assert score[key].dtype == torch.float32 and score[key].shape == (400,), key
        assert torch.isfinite(score[key]).all(), key
    assert (score["correctness"] <= EPOCHS).all() and (score["forgetting"] <= EPOCHS // 2).all()
    assert (score["accumulated_margin"].abs() <= EPOCHS).all()
    features = torch.load(f"{base}/all-data/features-all-data.pt", weights_only=True)
    assert features["features"].shape == (400, 64)


@pytest.mark.parametrize(
    "method,folder,task",
    [
        ("ccs", "ccs", "ccs-0.1"),
        ("random", "random", "random-0.1"),
        ("forgetting", "forgetting", "forgetting-0.1"),
        ("accumulated_margin", "accumulated_margin", "accumulated_margin-0.1"),
        ("el2n", "el2n", "el2n-0.1"),
    ],
)
def test_coreset_runs(pipeline, method, folder, task):
    base, _ = pipeline
    run = f"{base}/{folder}/{task}"
    metrics = json.load(open(f"{run}/metrics.json"))
    assert metrics["method"] == method
    assert metrics["pruning_rate"] == pytest.approx(0.9)
    assert metrics["coreset_size"] == 40 and metrics["iterations"] == 12
    indices = torch.load(f"{run}/coreset-indices.pt", weights_only=True)
    assert indices.numel() == 40 and indices.unique().numel() == 40
    td = torch.load(f"{run}/td-{task}.pt", weights_only=True)
    visited = td["scores"]["visits"] > 0
    assert torch.equal(visited.nonzero().flatten(), indices.sort().values)


def test_score_ranked_coresets_keep_the_right_end(pipeline):
    base, _ = pipeline
    with open(f"{base}/all-data/data-score-all-data.pickle", "rb") as fh:
        score = pickle.load(fh)
    chosen = torch.load(f"{base}/el2n/el2n-0.1/coreset-indices.pt", weights_only=True)
    rest = torch.ones(400, dtype=torch.bool)
    rest[chosen] = False
    assert score["el2n"][chosen].min() >= score["el2n"][rest].max()  # descending: the largest
    chosen = torch.load(
        f"{base}/accumulated_margin/accumulated_margin-0.1/coreset-indices.pt", weights_only=True
    )
    rest = torch.ones(400, dtype=torch.bool)
    rest[chosen] = False
    aum = score["accumulated_margin"]
    assert aum[chosen].max() <= aum[rest].min()  # ascending: the smallest margins


def test_ccs_skips_the_hard_cut(pipeline):
    base, _ = pipeline
    with open(f"{base}/all-data/data-score-all-data.pickle", "rb") as fh:
        score = pickle.load(fh)
    chosen = torch.load(f"{base}/ccs/ccs-0.1/coreset-indices.pt", weights_only=True)
    cut = score["accumulated_margin"].argsort()[:120]  # int(0.3 * 400) lowest AUM
    assert not set(cut.tolist()) & set(chosen.tolist())


def test_rerunning_a_finished_run_does_nothing(pipeline, tiny_cifar10):
    base, _ = pipeline
    before = os.path.getmtime(f"{base}/random/random-0.1/ckpt-last.pt")
    out = run_script(*seed_commands(tiny_cifar10, base)["random"])
    assert "already finished" in out.stdout
    assert os.path.getmtime(f"{base}/random/random-0.1/ckpt-last.pt") == before


def test_scoring_a_coreset_run_is_refused_unless_allowed(pipeline):
    base, _ = pipeline
    score = score_argv(f"{base}/random", "random-0.1", data_score_path=f"{base}/random/s.pickle")
    refused = run_script(*score, check=False)
    assert refused.returncode == 2 and "never visited" in refused.stderr
    assert "--allow-unvisited" in refused.stderr and "Traceback" not in refused.stderr
    assert not os.path.exists(f"{base}/random/s.pickle")
    run_script(*score, "--allow-unvisited")
    assert os.path.isfile(f"{base}/random/s.pickle")


@pytest.mark.parametrize(
    "mode,flags",
    [
        (
            "d2",
            dict(
                coreset_key="forgetting",
                data_score_descending=1,
                class_balanced=1,
                mis_ratio=0.3,
                d2_neighbors=5,
            ),
        ),
        ("kcenter", dict(mis_ratio=0.3)),
    ],
)
def test_feature_space_peers_run_from_the_scored_run(pipeline, tiny_cifar10, mode, flags):
    """--coreset-mode d2 / kcenter read features-all-data.pt beside the score file."""
    base, _ = pipeline
    score_path = f"{base}/all-data/data-score-all-data.pickle"
    argv = train_argv(
        tiny_cifar10,
        f"{base}/{mode}",
        f"{mode}-0.1",
        iterations=12,
        **coreset_flags(mode, 0.1, data_score_path=score_path, **flags),
    )
    run_script(*argv)
    run = f"{base}/{mode}/{mode}-0.1"
    metrics = json.load(open(f"{run}/metrics.json"))
    assert metrics["method"] == mode and metrics["coreset_size"] == 40
    assert metrics["coreset"]["features_path"].endswith("all-data/features-all-data.pt")
    chosen = torch.load(f"{run}/coreset-indices.pt", weights_only=True)
    assert chosen.numel() == 40 and chosen.unique().numel() == 40
    with open(score_path, "rb") as fh:
        score = pickle.load(fh)
    cut = score["accumulated_margin"].argsort(stable=True)[:120]
    assert not set(cut.tolist()) & set(chosen.tolist())
    if mode == "d2":  # equal shares of 40 over the 10 classes
        assert torch.bincount(score["targets"][chosen].long(), minlength=10).tolist() == [4] * 10
    assert "already finished" in run_script(*argv).stdout


def test_a_plain_pickle_named_pt_drives_a_coreset_run(tiny_cifar10, tmp_path):
    """A score file as the authors' scripts write it (pickle.dump, here under a .pt name, as
    their ImageNet script names its own) selects the coreset: read by content, not by name."""
    from core.data import load_dataset

    targets = load_dataset("cifar10", tiny_cifar10, download=False).train.targets
    el2n = torch.randperm(400, generator=torch.Generator().manual_seed(1)).float()
    score = {"el2n": el2n, "targets": targets.to(torch.int32)}
    with open(tmp_path / "x.pt", "wb") as fh:
        pickle.dump(score, fh)
    run_script(
        *train_argv(
            tiny_cifar10,
            str(tmp_path),
            "el2n-x",
            iterations=2,
            **coreset_flags(
                "coreset",
                0.1,
                data_score_path=str(tmp_path / "x.pt"),
                coreset_key="el2n",
                data_score_descending=1,
            ),
        )
    )
    chosen = torch.load(tmp_path / "el2n-x" / "coreset-indices.pt", weights_only=True)
    assert torch.equal(chosen, el2n.argsort(descending=True)[:40].sort().values)


def reference_entropy_and_loss(model, images, targets):
    """The authors' post_training_metrics on ToTensor() inputs: x / 255, no normalisation."""
    model.eval()
    with torch.no_grad():
        logits = model(images.float() / 255)
    prob = torch.nn.Softmax(dim=1)(logits)
    entropy = torch.sum(-1 * prob * torch.log(prob + 1e-10), dim=1)
    loss = torch.nn.CrossEntropyLoss(reduction="none")(logits, targets)
    return entropy, loss


def test_entropy_and_loss_are_the_reference_pass_of_the_final_model(pipeline, tiny_cifar10):
    from core.data import load_dataset
    from core.models import build_model

    base, _ = pipeline
    state = torch.load(f"{base}/all-data/ckpt-last.pt", weights_only=True)
    model = build_model("resnet20", 10)
    model.load_state_dict(state["model"])
    data = load_dataset("cifar10", tiny_cifar10, download=False)
    entropy, loss = reference_entropy_and_loss(model, data.train.images, data.train.targets)
    with open(f"{base}/all-data/data-score-all-data.pickle", "rb") as fh:
        score = pickle.load(fh)
    assert torch.allclose(score["entropy"], entropy, atol=1e-4)
    assert torch.allclose(score["loss"], loss, atol=1e-4)

    # --normalized-scoring-inputs: the pass on the images the model was trained on
    out = f"{base}/all-data/normalised.pickle"
    run_script(*score_argv(base, "all-data", data_score_path=out, normalized_scoring_inputs=True))
    with open(out, "rb") as fh:
        normalised = pickle.load(fh)
    assert not torch.allclose(normalised["entropy"], entropy, atol=1e-2)  # they differ
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model((data.train.images.float() / 255 - mean) / std)
    assert torch.allclose(
        normalised["loss"],
        torch.nn.functional.cross_entropy(logits, data.train.targets, reduction="none"),
        atol=1e-4,
    )
    # features (Moderate-DS) come from the normalised images either way
    assert torch.equal(normalised["moderate_distance"], score["moderate_distance"])
    for key in ("forgetting", "accumulated_margin", "el2n"):
        assert torch.equal(normalised[key], score[key]), key


def test_an_authors_run_folder_is_scored_by_the_readme_command(tiny_cifar10, tmp_path):
    """Their train.py's folder: ckpt-last.pt ({'model_state_dict'} with `linear.` keys) and
    td-all-data.pickle. The README's scoring command turns it into their score file."""
    from core.data import load_dataset
    from core.models import build_model

    data = load_dataset("cifar10", tiny_cifar10, download=False)
    run = tmp_path / "cifar10" / "all-data"
    run.mkdir(parents=True)
    torch.manual_seed(0)
    model = build_model("resnet18", 10)
    theirs = {k.replace("fc.", "linear.", 1): v for k, v in model.state_dict().items()}
    torch.save({"model_state_dict": theirs, "epoch": 2}, run / "ckpt-last.pt")
    log = authors_log(400, 3, 128)
    with open(run / "td-all-data.pickle", "wb") as fh:
        pickle.dump({"data-name": "cifar10", "training_dynamics": log}, fh)
    proc = run_script(
        *score_argv(str(tmp_path / "cifar10"), "all-data", gpuid=0, data_dir=tiny_cifar10)
    )
    assert "scored the authors' training dynamics" in proc.stdout
    with open(run / "data-score-all-data.pickle", "rb") as fh:
        score = pickle.load(fh)
    counts, aum, el2n = reference_dynamics(log, data.train.targets)
    assert torch.equal(score["correctness"], counts["correctness"])
    assert torch.equal(score["forgetting"], counts["forgetting"])
    assert torch.equal(score["last_correctness"], counts["last"])
    assert torch.allclose(score["accumulated_margin"], aum, atol=1e-2)
    assert torch.allclose(score["el2n"], el2n, atol=1e-2)
    assert torch.equal(score["visits"], torch.full((400,), 3, dtype=torch.int32))
    entropy, loss = reference_entropy_and_loss(model, data.train.images, data.train.targets)
    assert torch.allclose(score["entropy"], entropy, atol=1e-4)
    assert torch.allclose(score["loss"], loss, atol=1e-4)


def test_a_method_added_in_examples_runs_through_train_py_and_the_report(
    pipeline, tiny_cifar10, tmp_path
):
    """examples/toy_method.py registers one function and one entry; train.py's flags, the
    selection and the report take it from there."""
    base, _ = pipeline
    score = f"{base}/all-data/data-score-all-data.pickle"
    out = str(tmp_path / "kth")

    def toy(offset):
        return train_argv(
            tiny_cifar10,
            out,
            "kth",
            script="examples/toy_method.py",
            iterations=7,
            **coreset_flags("every_kth", 0.25, data_score_path=score, every_kth_offset=offset),
        )

    run_script(*toy(1))
    metrics = json.load(open(f"{out}/kth/metrics.json"))
    assert metrics["method"] == "every_kth" and metrics["coreset_size"] == 100
    assert metrics["coreset"]["every_kth_offset"] == 1
    # every 4th along the AUM order, from position 1
    aum = pickle.load(open(score, "rb"))["accumulated_margin"]
    expected = aum.argsort(stable=True)[1::4].sort().values
    assert torch.equal(torch.load(f"{out}/kth/coreset-indices.pt"), expected)
    bad = run_script(*toy(-1), check=False)
    assert bad.returncode == 2 and "--every-kth-offset" in bad.stderr
    report = run_script("-m", "core.report", out, "--out", str(tmp_path / "report"))
    assert "every_kth" in report.stdout
