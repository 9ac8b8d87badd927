"""Device choice and every CUDA- or MPS-only branch, with the availability checks patched (no GPU here)."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_profile
from helpers import devices
from helpers.model import build_model
from helpers.optim import build_optimizer


@pytest.fixture
def fresh_auto():
    devices._auto_device.cache_clear()
    yield
    devices._auto_device.cache_clear()


@pytest.mark.parametrize("cuda, mps, chosen, why", [
    (True, True, "cuda", "CUDA GPU Fake H200"),
    (False, True, "mps", "Apple-silicon GPU (MPS)"),
    (False, False, "cpu", "no CUDA or MPS GPU"),
])
def test_auto_picks_cuda_then_mps_then_cpu_and_says_which(cuda, mps, chosen, why, monkeypatch, capsys, fresh_auto):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Fake H200")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert devices.resolve_device("auto") == chosen
    assert devices.resolve_device("auto") == chosen
    assert capsys.readouterr().out == f"device auto: {chosen} ({why})\n"  # said once per process
    assert devices.resolve_device("cpu") == "cpu" and devices.resolve_device("cuda:1") == "cuda:1"


def test_number_formats_per_device(monkeypatch):
    mps, cuda, cpu = torch.device("mps"), torch.device("cuda", 0), torch.device("cpu")
    for requested in ("auto", "fp32", "bf16", "fp16"):
        assert devices.run_precision(requested, mps, "chunked") == "fp32"  # no scaler, no half types on MPS
        assert devices.run_precision(requested, cuda, "chunked") == (requested if requested != "auto" else
                                                                      devices.run_precision("auto", cuda))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert devices.run_precision("auto", cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert devices.run_precision("auto", cuda) == "fp32"
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert devices.run_precision("bf16", cpu, "chunked") == ("bf16" if native else "fp32")
    assert devices.run_precision("bf16", cpu, "full") == devices.run_precision("fp16", cpu, "chunked") == "fp32"


def test_fused_adamw_only_on_cuda():
    model = build_model(tiny_profile().model, seed=0)
    cfg = tiny_profile().pretrain
    assert build_optimizer(model, cfg, torch.device("cuda", 0)).defaults["fused"] is True
    for device in ("mps", "cpu"):
        assert not build_optimizer(model, cfg, torch.device(device)).defaults["fused"]


def test_random_state_includes_the_gpu_generators_when_there_are_some(monkeypatch):
    saved = devices.rng_state()
    assert set(saved) == {"python", "numpy", "torch"}  # no GPU here
    calls = []
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: calls.append("get") or torch.zeros(1))
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state: calls.append("set"))
    state = devices.rng_state()
    assert "mps" in state
    devices.set_rng_state(state)
    assert calls == ["get", "set"]
    devices.set_rng_state(saved)


def test_tf32_flags_are_restored_after_a_run():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        with pytest.raises(KeyError):
            with devices.tf32_matmuls(True, torch.device("cuda")):
                assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
                raise KeyError("a run that fails halfway")
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
        with devices.tf32_matmuls(True, torch.device("mps")):  # only CUDA has TensorFloat-32
            assert not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
