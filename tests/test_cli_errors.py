"""Bad input ends with one 'error: ...' line, exit code 2, no traceback, nothing written."""

import os
import pickle

import pytest
import torch
from conftest import run_script, tiny_train_argv

pytestmark = pytest.mark.slow  # runs the real scripts in subprocesses


def train(data_dir, base, *extra):
    return run_script(*tiny_train_argv(data_dir, base, "t", *extra), check=False)


def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def score_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scores")
    n = 400
    good = {
        "targets": torch.zeros(n, dtype=torch.int32),
        "el2n": torch.linspace(0, 1, n),
        "accumulated_margin": torch.linspace(-1, 1, n),
        "forgetting": torch.zeros(n, dtype=torch.int32),
    }
    paths = {}
    for name, value in {
        "good": {k: v for k, v in good.items() if k != "targets"},  # any dataset's labels
        "small": {k: v[:300] for k, v in good.items()},
        "nan": {
            **good,
            "accumulated_margin": torch.where(
                torch.arange(n) < 3, float("nan"), good["accumulated_margin"]
            ),
        },
    }.items():
        paths[name] = str(folder / f"{name}.pickle")
        with open(paths[name], "wb") as fh:
            pickle.dump(value, fh)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {folder}/pwned",))

    paths["hostile"] = str(folder / "hostile.pickle")
    with open(paths["hostile"], "wb") as fh:
        pickle.dump({"accumulated_margin": Evil()}, fh)
    paths["pwned"] = str(folder / "pwned")
    return paths


# a D2 coreset run whose flags are fine but for the one each case adds
D2_CORESET = [
    "--iterations",
    "5",
    "--coreset",
    "--coreset-mode",
    "d2",
    "--data-score-path",
    "x.pickle",
    "--coreset-ratio",
    "0.5",
]

CASES = {
    "lr nan": (["--epochs", "1", "--lr", "nan"], ["--lr", "nan"]),
    "negative train subset": (["--epochs", "1", "--train-subset", "-3"], ["--train-subset", "-3"]),
    "empty task name": (["--epochs", "1", "--task-name", ""], ["--task-name"]),
    "task name escaping base dir": (["--epochs", "1", "--task-name", "../escape"], ["../escape"]),
    "both lengths": (["--epochs", "1", "--iterations", "5"], ["--epochs", "--iterations"]),
    "no length": ([], ["--epochs"]),
    "unknown dataset": (["--epochs", "1", "--dataset", "mnist"], ["--dataset", "mnist"]),
    "ratio above 1": (
        ["--iterations", "5", "--coreset", "--coreset-mode", "random", "--coreset-ratio", "1.5"],
        ["--coreset-ratio", "1.5"],
    ),
    "ratio zero": (
        ["--iterations", "5", "--coreset", "--coreset-mode", "random", "--coreset-ratio", "0"],
        ["--coreset-ratio"],
    ),
    "mis-ratio": (
        [
            "--iterations",
            "5",
            "--coreset",
            "--coreset-mode",
            "stratified",
            "--coreset-key",
            "accumulated_margin",
            "--data-score-path",
            "x.pickle",
            "--coreset-ratio",
            "0.5",
            "--mis-ratio",
            "0.6",
        ],
        ["--mis-ratio"],
    ),
    "d2 neighbours": (
        [*D2_CORESET, "--d2-neighbors", "0"],
        ["--d2-neighbors", "got 0"],
    ),
    "d2 reverse gamma": (
        [*D2_CORESET, "--d2-reverse-gamma", "-0.1"],
        ["--d2-reverse-gamma", "-0.1"],
    ),
    "kcenter without a score file": (
        ["--iterations", "5", "--coreset", "--coreset-mode", "kcenter", "--coreset-ratio", "0.5"],
        ["--coreset-mode kcenter needs --data-score-path"],
    ),
    "missing score file": (
        [
            "--iterations",
            "5",
            "--coreset",
            "--coreset-mode",
            "coreset",
            "--coreset-key",
            "el2n",
            "--data-score-path",
            "/nonexistent.pickle",
            "--coreset-ratio",
            "0.5",
        ],
        ["/nonexistent.pickle"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_flag_errors(tiny_cifar10, tmp_path, case):
    extra, fragments = CASES[case]
    proc = train(tiny_cifar10, str(tmp_path / "runs"), *extra)
    assert_user_error(proc, *fragments)
    assert not os.path.exists(tmp_path / "runs")  # nothing written


def coreset_flags(path, key="accumulated_margin"):
    return [
        "--iterations",
        "5",
        "--coreset",
        "--coreset-mode",
        "coreset",
        "--coreset-key",
        key,
        "--data-score-path",
        path,
        "--coreset-ratio",
        "0.5",
    ]


def test_unknown_key_lists_the_keys(tiny_cifar10, tmp_path, score_files):
    proc = train(tiny_cifar10, str(tmp_path / "runs"), *coreset_flags(score_files["nan"], "aum"))
    assert_user_error(proc, "aum", "accumulated_margin", "forgetting")
    assert not os.path.exists(tmp_path / "runs")


def test_score_file_of_another_size(tiny_cifar10, tmp_path, score_files):
    proc = train(tiny_cifar10, str(tmp_path / "runs"), *coreset_flags(score_files["small"]))
    assert_user_error(proc, "300", "400", "add --train-subset 300")


def test_score_file_with_nans(tiny_cifar10, tmp_path, score_files):
    proc = train(tiny_cifar10, str(tmp_path / "runs"), *coreset_flags(score_files["nan"]))
    assert_user_error(proc, "3")


def test_hostile_score_file_runs_nothing(tiny_cifar10, tmp_path, score_files):
    proc = train(tiny_cifar10, str(tmp_path / "runs"), *coreset_flags(score_files["hostile"]))
    assert_user_error(proc, score_files["hostile"])
    assert not os.path.exists(score_files["pwned"])


def test_missing_features_file_says_how_it_is_made(tiny_cifar10, tmp_path, score_files):
    flags = coreset_flags(score_files["good"])
    flags[flags.index("coreset")] = "d2"
    proc = train(tiny_cifar10, str(tmp_path / "runs"), *flags)
    beside = os.path.join(os.path.dirname(score_files["good"]), "features-")
    assert_user_error(
        proc, "features file not found", beside, "generate_importance_score.py", "--features-path"
    )
    assert not os.path.exists(tmp_path / "runs")


def test_missing_data_says_where(tmp_path):
    proc = train(str(tmp_path / "nodata"), str(tmp_path / "runs"), "--epochs", "1", "--no-download")
    assert_user_error(proc, "cifar-10-batches-py")
    assert not os.path.exists(tmp_path / "runs")


def test_failed_run_leaves_an_existing_run_untouched(tiny_cifar10, tmp_path):
    base = str(tmp_path / "runs")
    os.makedirs(f"{base}/t")
    with open(f"{base}/t/metrics.json", "w") as fh:
        fh.write('{"best_acc": 0.5}')
    proc = train(tiny_cifar10, base, "--epochs", "1", "--iterations", "3")
    assert_user_error(proc)
    assert open(f"{base}/t/metrics.json").read() == '{"best_acc": 0.5}'


def test_scoring_an_unfinished_or_missing_run(tmp_path):
    proc = run_script(
        "generate_importance_score.py",
        "--base-dir",
        str(tmp_path),
        "--task-name",
        "nope",
        check=False,
    )
    assert_user_error(proc, "ckpt-last.pt")


def test_uncreatable_base_dir_is_one_line(tiny_cifar10):
    proc = train(tiny_cifar10, "/proc/no/such/runs", "--epochs", "1")
    assert_user_error(proc, "/proc/no/such/runs")


def test_hostile_checkpoint_gets_our_refusal(tiny_cifar10, tmp_path):
    base = tmp_path / "runs"
    os.makedirs(base / "t")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path}/pwned",))

    torch.save({"position": Evil()}, base / "t" / "ckpt-last.pt")
    proc = train(tiny_cifar10, str(base), "--epochs", "1")
    assert_user_error(proc, "ckpt-last.pt", "refusing")
    assert "weights_only" not in proc.stderr and len(proc.stderr) < 300
    assert not os.path.exists(tmp_path / "pwned")


def test_gpuid_without_cuda_says_it_uses_the_cpu(tiny_cifar10, tmp_path):
    proc = train(tiny_cifar10, str(tmp_path / "runs"), "--epochs", "1", "--gpuid", "0")
    assert proc.returncode == 0, proc.stderr
    assert "--gpuid 0: CUDA is not available; training on the CPU" in proc.stdout
    quiet = train(tiny_cifar10, str(tmp_path / "runs2"), "--epochs", "1")
    assert "CUDA is not available" not in quiet.stdout
