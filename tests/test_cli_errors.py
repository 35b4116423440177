"""Bad input ends with one 'error: ...' line, exit code 2, no traceback, nothing written.

Mistakes in the flags alone are found before anything is touched, by train.py's parser or by
its settings (RunSettings.from_args): those cases are checked in this process, the way
train.py runs them. The rest run the real script: a few flag cases for the whole path, and
the mistakes found in files (score files, checkpoints, data).
"""

import os
import pickle

import pytest
import torch
from conftest import coreset_flags, run_script, score_argv, train_argv

import train
from core.settings import RunSettings
from core.training.distributed import run_entry_point

slow = pytest.mark.slow  # runs the real scripts in subprocesses


def train_script(data_dir, base, **flags):
    return run_script(*train_argv(data_dir, base, "t", **flags), check=False)


def assert_user_error(proc, *fragments):
    assert_error_line(proc.returncode, proc.stdout + proc.stderr, proc.stderr, *fragments)


def assert_error_line(code, output, stderr, *fragments):
    assert code == 2, output
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def run_settings_only(argv):
    """train.py up to its settings: the parser, then RunSettings.from_args as train.main
    builds them, under the scripts' entry point (UserError -> one line, exit code 2)."""

    def main(args):
        RunSettings.from_args(args, "train.py", scheduler="cosine")
        raise AssertionError(f"{argv} was accepted")

    run_entry_point(main, train.get_args_parser().parse_args(argv[1:]))


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
D2_CORESET = dict(iterations=5, **coreset_flags("d2", 0.5, data_score_path="x.pickle"))

# (flags, fragments of the error line); checked in this process
FLAG_CASES = {
    "lr nan": (dict(epochs=1, lr="nan"), ["--lr", "nan"]),
    "empty task name": (dict(epochs=1, task_name=""), ["--task-name"]),
    "both lengths": (dict(epochs=1, iterations=5), ["--epochs", "--iterations"]),
    "no length": ({}, ["--epochs"]),
    "unknown dataset": (dict(epochs=1, dataset="mnist"), ["--dataset", "mnist"]),
    "ratio above 1": (
        dict(iterations=5, **coreset_flags("random", 1.5)),
        ["--coreset-ratio", "1.5"],
    ),
    "ratio zero": (dict(iterations=5, **coreset_flags("random", 0)), ["--coreset-ratio"]),
    "mis-ratio": (
        dict(
            iterations=5,
            **coreset_flags(
                "stratified",
                0.5,
                coreset_key="accumulated_margin",
                data_score_path="x.pickle",
                mis_ratio=0.6,
            ),
        ),
        ["--mis-ratio"],
    ),
    "d2 neighbours": (dict(D2_CORESET, d2_neighbors=0), ["--d2-neighbors", "got 0"]),
    "d2 reverse gamma": (
        dict(D2_CORESET, d2_reverse_gamma=-0.1),
        ["--d2-reverse-gamma", "-0.1"],
    ),
    "kcenter without a score file": (
        dict(iterations=5, **coreset_flags("kcenter", 0.5)),
        ["--coreset-mode kcenter needs --data-score-path"],
    ),
}

# through the real script: a settings mistake end to end (nothing written, not even outside
# --base-dir), and two found only once the run has started (the data, the score file)
SCRIPT_CASES = {
    "task name escaping base dir": (dict(epochs=1, task_name="../escape"), ["../escape"]),
    "negative train subset": (dict(epochs=1, train_subset=-3), ["--train-subset", "-3"]),
    "missing score file": (
        dict(
            iterations=5,
            **coreset_flags(
                "coreset", 0.5, coreset_key="el2n", data_score_path="/nonexistent.pickle"
            ),
        ),
        ["/nonexistent.pickle"],
    ),
}


@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_flag_errors_in_process(tiny_cifar10, tmp_path, capsys, case):
    flags, fragments = FLAG_CASES[case]
    with pytest.raises(SystemExit) as stop:
        run_settings_only(train_argv(tiny_cifar10, str(tmp_path / "runs"), "t", **flags))
    captured = capsys.readouterr()
    assert_error_line(stop.value.code, captured.out + captured.err, captured.err, *fragments)
    assert not os.path.exists(tmp_path / "runs")  # nothing written


@slow
@pytest.mark.parametrize("case", sorted(SCRIPT_CASES))
def test_flag_errors(tiny_cifar10, tmp_path, case):
    flags, fragments = SCRIPT_CASES[case]
    proc = train_script(tiny_cifar10, str(tmp_path / "runs"), **flags)
    assert_user_error(proc, *fragments)
    assert not os.path.exists(tmp_path / "runs")  # nothing written


def coreset_run(path, key="accumulated_margin", mode="coreset"):
    return dict(iterations=5, **coreset_flags(mode, 0.5, coreset_key=key, data_score_path=path))


@slow
def test_unknown_key_lists_the_keys(tiny_cifar10, tmp_path, score_files):
    proc = train_script(
        tiny_cifar10, str(tmp_path / "runs"), **coreset_run(score_files["nan"], "aum")
    )
    assert_user_error(proc, "aum", "accumulated_margin", "forgetting")
    assert not os.path.exists(tmp_path / "runs")


@slow
def test_score_file_of_another_size(tiny_cifar10, tmp_path, score_files):
    proc = train_script(tiny_cifar10, str(tmp_path / "runs"), **coreset_run(score_files["small"]))
    assert_user_error(proc, "300", "400", "add --train-subset 300")


@slow
def test_score_file_with_nans(tiny_cifar10, tmp_path, score_files):
    proc = train_script(tiny_cifar10, str(tmp_path / "runs"), **coreset_run(score_files["nan"]))
    assert_user_error(proc, "3")


@slow
def test_hostile_score_file_runs_nothing(tiny_cifar10, tmp_path, score_files):
    proc = train_script(tiny_cifar10, str(tmp_path / "runs"), **coreset_run(score_files["hostile"]))
    assert_user_error(proc, score_files["hostile"])
    assert not os.path.exists(score_files["pwned"])


@slow
def test_missing_features_file_says_how_it_is_made(tiny_cifar10, tmp_path, score_files):
    flags = coreset_run(score_files["good"], mode="d2")
    proc = train_script(tiny_cifar10, str(tmp_path / "runs"), **flags)
    beside = os.path.join(os.path.dirname(score_files["good"]), "features-")
    assert_user_error(
        proc, "features file not found", beside, "generate_importance_score.py", "--features-path"
    )
    assert not os.path.exists(tmp_path / "runs")


@slow
def test_missing_data_says_where(tmp_path):
    proc = train_script(
        str(tmp_path / "nodata"), str(tmp_path / "runs"), epochs=1, no_download=True
    )
    assert_user_error(proc, "cifar-10-batches-py")
    assert not os.path.exists(tmp_path / "runs")


@slow
def test_failed_run_leaves_an_existing_run_untouched(tiny_cifar10, tmp_path):
    base = str(tmp_path / "runs")
    os.makedirs(f"{base}/t")
    with open(f"{base}/t/metrics.json", "w") as fh:
        fh.write('{"best_acc": 0.5}')
    proc = train_script(tiny_cifar10, base, epochs=1, iterations=3)
    assert_user_error(proc)
    assert open(f"{base}/t/metrics.json").read() == '{"best_acc": 0.5}'


@slow
def test_scoring_an_unfinished_or_missing_run(tmp_path):
    proc = run_script(*score_argv(str(tmp_path), "nope"), check=False)
    assert_user_error(proc, "ckpt-last.pt")


@slow
def test_uncreatable_base_dir_is_one_line(tiny_cifar10):
    proc = train_script(tiny_cifar10, "/proc/no/such/runs", epochs=1)
    assert_user_error(proc, "/proc/no/such/runs")


@slow
def test_hostile_checkpoint_gets_our_refusal(tiny_cifar10, tmp_path):
    base = tmp_path / "runs"
    os.makedirs(base / "t")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path}/pwned",))

    torch.save({"position": Evil()}, base / "t" / "ckpt-last.pt")
    proc = train_script(tiny_cifar10, str(base), epochs=1)
    assert_user_error(proc, "ckpt-last.pt", "refusing")
    assert "weights_only" not in proc.stderr and len(proc.stderr) < 300
    assert not os.path.exists(tmp_path / "pwned")


@slow
def test_gpuid_without_cuda_says_it_uses_the_cpu(tiny_cifar10, tmp_path):
    proc = train_script(tiny_cifar10, str(tmp_path / "runs"), epochs=1, gpuid=0)
    assert proc.returncode == 0, proc.stderr
    assert "--gpuid 0: CUDA is not available; training on the CPU" in proc.stdout
    quiet = train_script(tiny_cifar10, str(tmp_path / "runs2"), epochs=1)
    assert "CUDA is not available" not in quiet.stdout
