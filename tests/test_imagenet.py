"""The README's ImageNet seed commands, run as written on a tiny ImageFolder (lengths shortened,
--image-size 32 and --workers for CPU speed; --gpuid 0,1 kept: without CUDA it trains in one
process), plus the ImageNet loader's order, sharding and resume."""

import json
import os
import pickle

import pytest
import torch
from authors_format import authors_log, reference_dynamics
from conftest import coreset_flags, imagenet_argv, run_script, score_argv

pytestmark = pytest.mark.slow  # runs the real scripts in subprocesses

CLASSES, TRAIN_PER_CLASS = 8, 8
N_TRAIN = CLASSES * TRAIN_PER_CLASS
EPOCHS = 2


def seed_commands(data_dir, base, score_path):
    """The three seed commands of the original README (the CCS one at 90% and 80%)."""
    readme = dict(lr=0.1, scheduler="cosine", network="resnet34", batch_size=256, gpuid="0,1")

    def coreset(task, ratio, mis_ratio):
        return imagenet_argv(
            data_dir,
            f"{base}/ccs",
            task,
            iterations=4,
            iterations_per_testing=2,
            **readme,
            **coreset_flags(
                "stratified",
                ratio,
                data_score_path=score_path,
                coreset_key="accumulated_margin",
                mis_ratio=mis_ratio,
                data_score_descending=1,
                ignore_td=True,
            ),
        )

    return {
        "full": imagenet_argv(
            data_dir,
            base,
            "ICLR2023-ImageNet",
            epochs=EPOCHS,
            **readme,
            workers=2,
            iterations_per_testing=1,
        ),
        "scores": score_argv(
            base, "ICLR2023-ImageNet", imagenet=True, data_dir=data_dir, data_score_path=score_path
        ),
        "ccs-0.1": coreset("aum-s-0.1", "0.1", "0.3"),
        "ccs-0.2": coreset("aum-s-0.2", "0.2", "0.2"),
    }


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory):
    from tinydata import write_tiny_imagefolder

    return write_tiny_imagefolder(
        str(tmp_path_factory.mktemp("imagenet")),
        num_classes=CLASSES,
        n_train_per_class=TRAIN_PER_CLASS,
        n_val_per_class=3,
    )


@pytest.fixture(scope="module")
def pipeline(imagefolder, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("work") / "imagenet")
    commands = seed_commands(imagefolder, base, f"{base}/imagenet-data-score.pt")
    return base, {name: run_script(*argv) for name, argv in commands.items()}


def test_full_data_run(pipeline):
    base, outputs = pipeline
    run = f"{base}/ICLR2023-ImageNet"
    assert "CUDA is not available; training in one process" in outputs["full"].stdout
    for name in (
        "ckpt-last.pt",
        "ckpt-best.pt",
        "log-train-ICLR2023-ImageNet.log",
        "metrics.json",
        "td-ICLR2023-ImageNet.pt",
    ):
        assert os.path.isfile(f"{run}/{name}"), name
    metrics = json.load(open(f"{run}/metrics.json"))
    assert metrics["dataset"] == "imagenet" and metrics["network"] == "resnet34"
    assert metrics["method"] == "full" and metrics["train_size"] == N_TRAIN
    assert metrics["epochs"] == EPOCHS and metrics["iterations"] == EPOCHS  # one batch of 256
    history = metrics["history"]
    assert len(history) == EPOCHS
    for entry in history:
        top1, top5 = entry["acc"]
        assert 0.0 <= top1 <= top5 <= 1.0
    assert "top5" in open(f"{run}/log-train-ICLR2023-ImageNet.log").read()


def read_score(path):
    with open(path, "rb") as fh:
        return pickle.load(fh)  # as the authors' train_imagenet.py reads imagenet-data-score.pt


def test_score_file(pipeline):
    base, outputs = pipeline
    score = read_score(f"{base}/imagenet-data-score.pt")
    for key in ("targets", "correctness", "forgetting", "last_correctness", "visits"):
        assert score[key].dtype == torch.int32 and score[key].shape == (N_TRAIN,), key
    for key in ("accumulated_margin", "el2n", "entropy", "loss", "moderate_distance"):
        assert score[key].dtype == torch.float32 and score[key].shape == (N_TRAIN,), key
        assert torch.isfinite(score[key]).all(), key
    assert torch.equal(score["visits"], torch.full((N_TRAIN,), EPOCHS, dtype=torch.int32))
    labels = torch.arange(N_TRAIN) // TRAIN_PER_CLASS  # ImageFolder order: class by class
    assert torch.equal(score["targets"].long(), labels)
    assert "wrote" in outputs["scores"].stdout


@pytest.mark.parametrize("task,ratio,mis_ratio", [("aum-s-0.1", 0.1, 0.3), ("aum-s-0.2", 0.2, 0.2)])
def test_ccs_runs(pipeline, task, ratio, mis_ratio):
    base, _ = pipeline
    run = f"{base}/ccs/{task}"
    metrics = json.load(open(f"{run}/metrics.json"))
    assert metrics["method"] == "ccs" and metrics["pruning_rate"] == pytest.approx(1 - ratio)
    assert metrics["coreset_size"] == int(ratio * N_TRAIN) and metrics["iterations"] == 4
    # one batch per epoch, 4 epochs, tested every 2 from epoch 0 and after the last: 0, 2, 3
    assert [entry["epoch"] for entry in metrics["history"]] == [1, 3, 4]
    assert not os.path.exists(f"{run}/td-{task}.pt")  # --ignore-td
    chosen = torch.load(f"{run}/coreset-indices.pt", weights_only=True)
    score = read_score(f"{base}/imagenet-data-score.pt")
    cut = score["accumulated_margin"].argsort(stable=True)[: int(mis_ratio * N_TRAIN)]
    assert not set(cut.tolist()) & set(chosen.tolist())


def test_rerunning_a_finished_run_does_nothing(pipeline, imagefolder):
    base, _ = pipeline
    argv = seed_commands(imagefolder, base, f"{base}/imagenet-data-score.pt")["ccs-0.1"]
    before = os.path.getmtime(f"{base}/ccs/aum-s-0.1/ckpt-last.pt")
    assert "already finished" in run_script(*argv).stdout
    assert os.path.getmtime(f"{base}/ccs/aum-s-0.1/ckpt-last.pt") == before


# ---- errors: one line, exit 2, nothing written -------------------------------------------
def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def train(data_dir, base, **flags):
    return run_script(*imagenet_argv(data_dir, base, "t", **flags), check=False)


def test_missing_data_dir(tmp_path):
    proc = train(str(tmp_path / "nodata"), str(tmp_path / "runs"), epochs=1)
    assert_user_error(proc, "--data-dir", "train")
    assert not os.path.exists(tmp_path / "runs")


def test_unsorted_val_folder(imagefolder, tmp_path):
    data = tmp_path / "flat"
    (data / "val").mkdir(parents=True)
    os.symlink(os.path.join(imagefolder, "train"), data / "train")
    (data / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    proc = train(str(data), str(tmp_path / "runs"), epochs=1)
    assert_user_error(proc, "valprep")
    assert not os.path.exists(tmp_path / "runs")


def test_both_lengths(imagefolder, tmp_path):
    proc = train(imagefolder, str(tmp_path / "runs"), epochs=1, iterations=3)
    assert_user_error(proc, "--epochs", "--iterations")


def test_scoring_a_run_without_dynamics(pipeline):
    base, _ = pipeline
    proc = run_script(*score_argv(f"{base}/ccs", "aum-s-0.1", imagenet=True), check=False)
    assert_user_error(proc, "td-aum-s-0.1.pt")


def test_an_authors_imagenet_run_folder_is_scored_from_its_per_epoch_logs(imagefolder, tmp_path):
    """Their train_imagenet.py's training-dynamics/td-<task>-epoch-<i>.pickle (file i holds
    epoch i-1): scored one file at a time into their keys; entropy and loss only once their
    ckpt-last.pt is there (their own ImageNet scoring computes neither)."""
    from core.data.imagenet import load_imagefolder
    from core.models import build_model

    targets = load_imagefolder(imagefolder).train.targets
    run = tmp_path / "imagenet" / "theirs"
    (run / "training-dynamics").mkdir(parents=True)
    log = authors_log(N_TRAIN, 12, 20, num_classes=CLASSES)
    for epoch in range(12):
        with open(run / "training-dynamics" / f"td-theirs-epoch-{epoch + 1}.pickle", "wb") as fh:
            records = [r for r in log if r["epoch"] == epoch]
            pickle.dump({"data-name": "imagenet", "training_dynamics": records}, fh)
    score_path = str(tmp_path / "imagenet-data-score.pt")
    argv = score_argv(
        str(tmp_path / "imagenet"),
        "theirs",
        imagenet=True,
        data_dir=imagefolder,
        data_score_path=score_path,
        image_size=32,
        workers=0,
    )
    assert "scored the authors' training dynamics" in run_script(*argv).stdout
    score = read_score(score_path)
    counts, aum, el2n = reference_dynamics(log, targets)  # EL2N: epochs 0..9, files 1..10
    # the reference's keys, visits, and the recent baselines' scores (issue 22: the authors'
    # logs give them too)
    recent = {"tdds", "dyn_unc", "dual", "dual_mean_prob", "accumulated_margin_logits"}
    assert (
        set(score)
        == {
            "targets",
            "correctness",
            "forgetting",
            "last_correctness",
            "accumulated_margin",
            "el2n",
            "visits",
        }
        | recent
    )
    assert torch.equal(score["correctness"], counts["correctness"])
    assert torch.equal(score["forgetting"], counts["forgetting"])
    assert torch.allclose(score["accumulated_margin"], aum, atol=1e-2)
    assert torch.allclose(score["el2n"], el2n, atol=1e-2)

    model = build_model("resnet34", CLASSES, imagenet=True)
    theirs = {f"module.{k}": v for k, v in model.state_dict().items()}  # nn.DataParallel
    torch.save({"model_state_dict": theirs, "epoch": 11}, run / "ckpt-last.pt")
    run_script(*argv)
    score = read_score(score_path)
    assert {"entropy", "loss", "moderate_distance"} <= set(score)
    assert torch.isfinite(score["entropy"]).all() and (score["loss"] > 0).all()


# ---- the loader ----------------------------------------------------------------------------
def loader(imagefolder, **options):
    from core.data.imagenet import ImageFolderLoader, load_imagefolder

    data = load_imagefolder(imagefolder)
    settings = dict(
        batch_size=10,
        image_size=16,
        mean=data.mean,
        std=data.std,
        augment=True,
        shuffle=True,
        seed=3,
        device="cpu",
    )
    settings.update(options)
    return ImageFolderLoader(data.train, **settings)


def test_ranks_share_each_epoch_without_duplicates(imagefolder):
    ranks = [loader(imagefolder, rank=r, world_size=3) for r in range(3)]
    assert len({len(shard) for shard in ranks}) == 1  # the same batch count on every rank
    for epoch in (0, 1):
        seen = [p for shard in ranks for batch in shard.batches(epoch) for p, _ in batch]
        assert sorted(seen) == list(range(N_TRAIN))
    subset = torch.arange(0, N_TRAIN, 2)
    shards = [loader(imagefolder, rank=r, world_size=2, indices=subset) for r in range(2)]
    seen = [p for shard in shards for batch in shard.batches(0) for p, _ in batch]
    assert sorted(seen) == subset.tolist()
    assert ranks[0].batches(0) != ranks[0].batches(1)  # a new order every epoch


def test_resumed_epoch_and_worker_count_give_the_same_batches(imagefolder):
    whole = list(loader(imagefolder).epoch(2))
    resumed = list(loader(imagefolder, workers=2).epoch(2, start_batch=3))
    assert len(whole) == 7 and len(resumed) == 4  # 64 examples: 6 batches of 10, one of 4
    for (i1, x1, y1), (i2, x2, y2) in zip(whole[3:], resumed, strict=True):
        assert torch.equal(i1, i2) and torch.equal(x1, x2) and torch.equal(y1, y2)
    index, images, targets = whole[0]
    assert images.dtype == torch.float32 and images.shape == (10, 3, 16, 16)
    assert torch.equal(targets, index // TRAIN_PER_CLASS)
