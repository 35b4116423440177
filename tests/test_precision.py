"""--precision auto: bf16 where the hardware runs it natively, fp32 elsewhere, and why."""

import torch

from core.training import run


def test_auto_on_cuda_is_bf16():
    assert run.resolve_precision("auto", torch.device("cuda", 0))[0] == "bf16"


def test_auto_on_cpu_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(run, "cpu_has_native_bf16", lambda: True)
    precision, why = run.resolve_precision("auto", torch.device("cpu"))
    assert precision == "bf16" and "native bf16" in why
    monkeypatch.setattr(run, "cpu_has_native_bf16", lambda: False)
    precision, why = run.resolve_precision("auto", torch.device("cpu"))
    assert precision == "fp32" and "without native bf16" in why


def test_an_explicit_flag_wins():
    assert run.resolve_precision("fp32", torch.device("cuda", 0)) == ("fp32", "--precision fp32")
    assert run.resolve_precision("bf16", torch.device("cpu")) == ("bf16", "--precision bf16")


def test_cpuinfo_flags_are_read(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    real_open = open
    monkeypatch.setattr(
        "builtins.open", lambda p, *a, **k: real_open(fake if p == "/proc/cpuinfo" else p, *a, **k)
    )
    assert run.cpu_has_native_bf16()
    fake.write_text("processor: 0\nflags\t\t: fpu sse avx512f\n")
    assert not run.cpu_has_native_bf16()
