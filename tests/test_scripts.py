"""The reproduction scripts: every command they would run parses with the real scripts' flags."""

import importlib
import os
import shlex
import subprocess

import pytest
from conftest import ROOT

# rates x methods (6 besides ccs: random, 4 score orders, moderate; plus the peers d2 and
# kcenter), plus the ccs betas: cifar10 and imagenet publish beta at 90% (imagenet at 80% too)
# and sweep it at the other rates; the others sweep it everywhere: 0, 0.1, ..., 0.5 where it
# fits beside the coreset, so 4 betas at 30% and 6 at each other rate. The CIFAR family also
# runs the four recent baselines (tdds, dyn_unc, dual, rs2) at every rate; ImageNet does not.
RECENT = 5 * 4
SWEPT_EVERYWHERE = 5 * 8 + 4 + 6 * 4 + RECENT
EXPECTED_CORESET_RUNS = {
    "cifar10": 5 * 8 + 4 + 6 + 6 + 6 + 1 + RECENT,
    "cifar100": SWEPT_EVERYWHERE,
    "svhn": SWEPT_EVERYWHERE,
    "cinic10": SWEPT_EVERYWHERE,
    "imagenet": 5 * 8 + 4 + 6 + 6 + 1 + 1,
}


def dry_run(*argv):
    proc = subprocess.run(
        ["bash", *argv, "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]


def parse_with_script(argv):
    """Parse a printed command with the parser of the script it names."""
    script = argv[1]
    assert argv[0] == "python"
    if script == "-m":
        assert argv[2] == "core.report"
        return None
    module = importlib.import_module(script[: -len(".py")])
    return module.get_args_parser().parse_args(argv[2:])


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "svhn", "cinic10", "imagenet"])
def test_reproduce_dry_run_commands_parse(dataset):
    commands = dry_run(f"scripts/reproduce_{dataset}.sh")
    coreset_runs = [parse_with_script(c) for c in commands if "--coreset" in c]
    assert len(coreset_runs) == EXPECTED_CORESET_RUNS[dataset]
    for args in coreset_runs:
        assert args.coreset and 0 < args.coreset_ratio < 1
        assert args.iterations == (300000 if dataset == "imagenet" else 40000)
        if args.coreset_mode == "stratified":
            assert args.coreset_ratio + args.mis_ratio <= 1 + 1e-9
    full = parse_with_script(commands[0])
    assert full.epochs == (60 if dataset == "imagenet" else 200)
    assert commands[-1][:3] == ["python", "-m", "core.report"]


def test_short_budget_keeps_every_method_at_two_rates():
    commands = dry_run("scripts/reproduce_cifar10.sh", "--budget", "short")
    runs = [parse_with_script(c) for c in commands if "--coreset" in c]
    assert len(runs) == 26  # 13 methods at 2 rates
    assert {round(1 - a.coreset_ratio, 3) for a in runs} == {0.5, 0.9}
    modes = {"random", "coreset", "stratified", "moderate", "d2", "kcenter", "dual", "rs2"}
    assert {a.coreset_mode for a in runs} == modes


def test_paper_beta_for_cifar10_at_90_percent():
    commands = dry_run("scripts/reproduce_cifar10.sh")
    ccs = [parse_with_script(c) for c in commands if "stratified" in c]
    at_90 = [a for a in ccs if abs(a.coreset_ratio - 0.1) < 1e-9]
    assert [a.mis_ratio for a in at_90] == [0.3]
    assert all(a.coreset_key == "accumulated_margin" for a in ccs)


def test_d2_hard_cut_fits_beside_the_coreset():
    """The D2 authors' hard cut 0.4, lowered to the pruning rate where 0.4 would not fit."""
    commands = dry_run("scripts/reproduce_cifar10.sh")
    d2 = [parse_with_script(c) for c in commands if "d2" in c]
    cut = {round(1 - a.coreset_ratio, 3): a.mis_ratio for a in d2}
    assert cut == {0.3: 0.3, 0.5: 0.4, 0.7: 0.4, 0.8: 0.4, 0.9: 0.4}
    assert all(a.coreset_key == "forgetting" and a.class_balanced == 1 for a in d2)
    assert all(a.data_score_descending == 1 and a.d2_neighbors == 5 for a in d2)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--rates", "abc"], "--rates: 'abc' is not a number between 0 and 1"),
        (["--rates", "0.9,1"], "--rates: '1' must be above 0 and below 1"),
        (["--seeds", "0,x"], "--seeds: 'x' is not a whole number"),
        (["--beta", "0.3,1.5"], "--beta: '1.5' is not a number between 0 and 1"),
        (["--profile"], "--profile needs a value"),
        (["--profile", "tiny"], "--profile must be cpu, gpu or smoke, got tiny"),
        (["--methods", "random,foo"], "--methods: unknown method 'foo'"),
        (["--methods", "ccs,ccs"], "--methods: 'ccs' is named twice"),
        (["--label-noise", "2"], "--label-noise: '2' is not a number between 0 and 1"),
        (["--frobnicate"], "unknown argument --frobnicate"),
    ],
)
def test_quickstart_rejects_bad_flags_before_running_anything(tmp_path, argv, says):
    """One error line, exit 2, and nothing written where the user stands."""
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "quickstart.sh"), *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {says}"), lines
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []
