"""core.score_io: the reference pickle format round-trips; hostile files run nothing."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION

from core import safe_pickle
from core.errors import UserError
from core.score_io import load_data_score, save_data_score


def reference_scores(n=7):
    return {
        "targets": torch.arange(n, dtype=torch.int32) % 3,
        "forgetting": torch.arange(n, dtype=torch.int32),
        "accumulated_margin": torch.linspace(-1, 1, n),
        "el2n": torch.rand(n),
    }


def test_save_writes_a_plain_pickle_of_cpu_tensors(tmp_path):
    path = str(tmp_path / "data-score-all-data.pickle")
    save_data_score(path, reference_scores())
    with open(path, "rb") as fh:
        plain = pickle.load(fh)  # what the authors' scripts do
    loaded = load_data_score(path)
    for name, value in reference_scores().items():
        assert plain[name].dtype == loaded[name].dtype == value.dtype
        assert torch.equal(loaded[name], plain[name])
    assert loaded["targets"].tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert [f for f in os.listdir(tmp_path)] == ["data-score-all-data.pickle"]  # no temp left


def test_saving_a_view_stores_only_the_view(tmp_path):
    big = torch.zeros(2, 1_000_000)
    save_data_score(str(tmp_path / "s.pickle"), {"el2n": big[1, :10]})
    assert os.path.getsize(tmp_path / "s.pickle") < 10_000


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_loads_numpy_and_tensor_pickles_of_any_protocol(tmp_path, protocol):
    path = tmp_path / "s.pickle"
    data = {
        "el2n": np.arange(4, dtype=np.float32),
        "targets": torch.arange(6)[::2],
        "loss": torch.ones(3, dtype=torch.float16),
    }
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=protocol)
    loaded = load_data_score(str(path))
    assert loaded["el2n"].tolist() == [0, 1, 2, 3] and loaded["el2n"].dtype == torch.float32
    assert loaded["targets"].tolist() == [0, 2, 4]
    assert loaded["loss"].dtype == torch.float16


@pytest.mark.parametrize("name", ["scores.pt", "scores-zip.pickle", "no-suffix"])
@pytest.mark.parametrize("zip_format", [True, False])
def test_loads_torch_save_files_by_content_not_name(tmp_path, name, zip_format):
    path = tmp_path / name
    torch.save(reference_scores(), path, _use_new_zipfile_serialization=zip_format)
    loaded = load_data_score(str(path))
    assert torch.equal(loaded["forgetting"], reference_scores()["forgetting"])


def test_a_plain_pickle_named_pt_loads(tmp_path):
    # what the authors' generate_importance_score_imagenet.py writes: pickle.dump to a .pt name
    score = reference_scores()
    loaded = load_data_score(write(tmp_path / "imagenet-data-score.pt", score))
    assert all(torch.equal(loaded[k], score[k]) for k in score)


class Evil:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvilStorage:
    """Pickles as the storage call of a tensor, with a hostile legacy torch.save inside."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        sys_info = {
            "protocol_version": PROTOCOL_VERSION,
            "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4},
        }
        payload = b"".join(
            pickle.dumps(x, protocol=2)
            for x in (MAGIC_NUMBER, PROTOCOL_VERSION, sys_info, Evil(self.marker))
        )
        return (torch.storage._load_from_bytes, (payload,))


def write(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)
    return str(path)


def hostile_files(tmp_path, marker):
    """Hostile plain pickles, under the reference's .pickle name and the ImageNet .pt name."""
    files = {}
    for suffix in (".pickle", ".pt"):
        files[f"top level{suffix}"] = write(tmp_path / f"top{suffix}", Evil(marker))
        files[f"nested{suffix}"] = write(
            tmp_path / f"nested{suffix}", {**reference_scores(), "el2n": Evil(marker)}
        )
        files[f"in storage bytes{suffix}"] = write(
            tmp_path / f"storage{suffix}", {"el2n": torch.ones(2), "loss": EvilStorage(marker)}
        )
    return files


def test_the_hostile_files_are_real(tmp_path):
    marker = tmp_path / "pwned"
    for path in hostile_files(tmp_path, marker).values():
        with open(path, "rb") as fh:
            try:
                pickle.load(fh)
            except Exception:
                pass
        assert marker.exists(), path
        marker.unlink()


def test_hostile_files_are_refused_and_run_nothing(tmp_path):
    marker = tmp_path / "pwned"
    system = f"{os.system.__module__}.system"  # posix.system here
    for case, path in hostile_files(tmp_path, marker).items():
        with pytest.raises(UserError) as refused:
            load_data_score(path)
        message = str(refused.value)
        assert path in message and "\n" not in message, case
        assert f"refusing score file {path}: it names the global {system}" == message
        assert not marker.exists(), case


def test_other_globals_are_refused(tmp_path):
    path = write(tmp_path / "s.pickle", {"el2n": torch.ones(2), "odd": {1, 2}})
    # sets pickle as an opcode, not a global: read, then refused as a value
    with pytest.raises(UserError, match="'odd' is a set, not a tensor or array"):
        load_data_score(path)
    path = write(tmp_path / "t.pickle", {"el2n": torch.nn.Linear(1, 1)})
    with pytest.raises(UserError, match="names the global torch.nn.modules.linear.Linear"):
        load_data_score(path)


def test_missing_file_and_wrong_contents(tmp_path):
    with pytest.raises(UserError, match="score file not found: /nonexistent.pickle"):
        load_data_score("/nonexistent.pickle")
    with pytest.raises(UserError, match="holds a list, not a dict"):
        load_data_score(write(tmp_path / "l.pickle", [torch.ones(2)]))
    with pytest.raises(UserError, match="'el2n' is a list, not a tensor or array"):
        load_data_score(write(tmp_path / "v.pickle", {"el2n": [1.0, 2.0]}))
    (tmp_path / "junk.pickle").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="cannot read score file .*junk.pickle"):
        load_data_score(str(tmp_path / "junk.pickle"))
    with pytest.raises(UserError, match="must be a dict of tensors"):
        save_data_score(str(tmp_path / "x.pickle"), {"el2n": [1.0]})


@pytest.mark.parametrize("name", ["s.pt", "s.pickle"])
@pytest.mark.parametrize("zip_format", [True, False])
def test_hostile_torch_save_file_is_refused(tmp_path, name, zip_format):
    marker = tmp_path / "pwned"
    torch.save({"el2n": Evil(marker)}, tmp_path / name, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UserError, match=rf"{name}: it names the global posix.system"):
        load_data_score(str(tmp_path / name))
    assert not marker.exists()


def test_a_pt_path_is_written_as_the_reference_pickle(tmp_path):
    path = str(tmp_path / "imagenet-data-score.pt")
    score = {"el2n": torch.tensor([0.5, 1.5]), "targets": torch.tensor([1, 0], dtype=torch.int32)}
    save_data_score(path, score)
    assert not zipfile.is_zipfile(path)  # not torch.save: the authors read it with pickle.load
    with open(path, "rb") as fh:
        plain = pickle.load(fh)
    loaded = load_data_score(path)
    for got in (plain, loaded):
        assert set(got) == set(score) and all(torch.equal(got[k], score[k]) for k in score)


def test_the_one_unpickler_reads_python2_style_and_container_pickles():
    # what the CIFAR reader needs: bytes keys and numpy arrays, protocol 2, latin1 or bytes
    batch = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"labels": [1, 0]}
    blob = pickle.dumps(batch, protocol=2)
    for encoding in ("latin1", "bytes"):
        loaded = safe_pickle.load(io.BytesIO(blob), encoding=encoding)
        assert loaded[b"labels"] == [1, 0] and loaded[b"data"].tolist() == [[0, 1, 2], [3, 4, 5]]
    containers = {"s": {1, 2}, "b": bytearray(b"ab"), "e": b"", "t": torch.ones(2)}
    loaded = safe_pickle.load(io.BytesIO(pickle.dumps(containers, protocol=2)))
    assert loaded["s"] == {1, 2} and loaded["b"] == b"ab" and loaded["e"] == b""
    assert torch.equal(loaded["t"], torch.ones(2))


def test_the_one_unpickler_refuses_by_name(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(safe_pickle.RefusedGlobal) as refused:
        safe_pickle.load(io.BytesIO(pickle.dumps(Evil(marker), protocol=2)), encoding="latin1")
    assert refused.value.name == f"{os.system.__module__}.system" and not marker.exists()
