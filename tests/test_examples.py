import re

import pytest
from conftest import run_script

pytestmark = pytest.mark.slow  # runs the real scripts in subprocesses


def test_own_dataset_example_runs_and_ccs_drops_noisy_labels():
    out = run_script("examples/own_dataset.py").stdout
    match = re.search(r"kept (\d+) of 2000 examples; noisy ones kept: (\d+)", out)
    assert match, out
    assert int(match.group(1)) == 200
    assert int(match.group(2)) < 5  # the hard cut removes mislabeled examples; random keeps ~10
