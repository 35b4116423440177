"""The method registry: derived files in step, parameter checks, settings records."""

import argparse
import os
import subprocess

import pytest
import torch
from conftest import ROOT

from core import cli, methods
from core.coreset import select
from core.errors import UserError
from core.methods import SCORES, Method, Param
from core.settings import RunSettings, Selection


def test_the_scripts_method_table_is_generated_from_the_registry():
    with open(os.path.join(ROOT, "scripts", "methods_table.sh")) as fh:
        assert fh.read() == methods.shell_table(), (
            "run: python -m core.methods shell > scripts/methods_table.sh"
        )


def test_the_readme_method_table_is_generated_from_the_registry():
    with open(os.path.join(ROOT, "README.md")) as fh:
        readme = fh.read()
    table = readme.split("<!-- methods table -->\n")[1].split("<!-- /methods table -->")[0]
    assert table == methods.markdown_table(), "run: python -m core.methods markdown"


def test_method_flags_in_bash_come_from_the_presets():
    script = (
        f"source {ROOT}/scripts/methods.sh; method_flags ccs 0.2; method_flags d2; echo $METHODS"
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    ccs, d2, names = out.stdout.splitlines()
    assert ccs.endswith("--coreset-key accumulated_margin --mis-ratio 0.2")
    assert d2.startswith("--coreset-mode d2") and d2.endswith("--mis-ratio 0.4")
    assert names.split() == [p.name for p in methods.presets("main")]


def test_result_order_starts_with_full_data_and_lists_every_fixed_name():
    order = methods.result_order()
    assert order[0] == "full"
    assert {m.result_name for m in methods.METHODS.values() if m.result_name} <= set(order)


@pytest.mark.parametrize(
    "param,value,message",
    [
        (
            Param("p", 1, "the count", kind=int, low=1, help=""),
            0,
            "--p: the count must be a positive integer, got 0",
        ),
        (Param("p", 1, "the count", kind=int, low=1, help=""), True, "got True"),
        (
            Param("q", 0.5, "a share", low=0.0, high=1.0, help=""),
            1.5,
            "at least 0 and at most 1, got 1.5",
        ),
        (Param("q", 0.5, "a share", low=0.0, low_open=True, help=""), 0.0, "above 0, got 0.0"),
    ],
)
def test_a_parameter_checks_both_bounds_and_names_its_flag(param, value, message):
    with pytest.raises(UserError) as error:
        param.check(value)
    assert message in str(error.value)


def test_a_registered_method_gets_flags_checks_and_a_record(monkeypatch):
    monkeypatch.setattr(methods, "METHODS", dict(methods.METHODS))  # leave the registry as it was

    def lowest(ctx):
        return torch.sort(ctx.score(), stable=True).indices[ctx.selection.params["skip"] :][
            : ctx.budget
        ]

    methods.register(Method("lowest", lowest, "toy", inputs=(SCORES,), default_key="el2n",
                            params=(Param("skip", 0, "the skip", kind=int, low=0, help="h"),)))  # fmt: skip
    parser = argparse.ArgumentParser()
    cli.add_coreset_flags(parser)
    args = parser.parse_args(["--coreset", "--coreset-mode", "lowest", "--coreset-ratio", "0.5",
                              "--data-score-path", "s.pickle", "--skip", "1"])  # fmt: skip
    selection = Selection.from_args(args)
    assert selection.params == {"skip": 1} and selection.key == "el2n"
    assert selection.record()["skip"] == 1 and "d2_neighbors" not in selection.record()
    scores = {"el2n": torch.tensor([0.4, 0.1, 0.3, 0.2])}
    assert select(selection, scores, seed=0).tolist() == [2, 3]  # order 1,3,2,0: skip one
    with pytest.raises(UserError, match="--skip: the skip must be an integer and at least 0"):
        Selection.build("lowest", 0.5, skip=-1)


def test_run_settings_check_once_and_read_back_their_record():
    settings = RunSettings(script="train.py", dataset="cifar10", network="resnet20", base_dir="b",
                           task_name="t", data_dir="d", epochs=3)  # fmt: skip
    again = RunSettings.from_record(settings.record())
    assert again == settings
    with pytest.raises(UserError, match="--task-name"):
        RunSettings(script="train.py", dataset="cifar10", network="resnet20", base_dir="b",
                    task_name="a/b", data_dir="d", epochs=3)  # fmt: skip
    with pytest.raises(UserError, match="exactly one of --epochs and --iterations"):
        RunSettings(script="train.py", dataset="cifar10", network="resnet20", base_dir="b",
                    task_name="t", data_dir="d")  # fmt: skip
    # the flags dict older checkpoints hold reads back the same way
    old = {
        "dataset": "svhn",
        "network": "resnet18",
        "data_dir": "x",
        "train_subset": 5,
        "gpuid": "0",
    }
    assert RunSettings.from_record(old).train_subset == 5
    assert RunSettings.from_record({"image_size": 64, "network": "resnet34"}).imagenet
