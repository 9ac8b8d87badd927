"""Where training runs: the device, the processes of a ``torchrun`` job, number formats, random state.

Both training engines and the evaluation code ask this module which device
``"auto"`` means, what precision a device can actually run, and how to save
and restore every random generator, so those answers are given once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import random
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "Processes",
    "resolve_device",
    "setup_processes",
    "world_size",
    "run_precision",
    "tf32_matmuls",
    "rng_state",
    "set_rng_state",
    "seed_everything",
    "describe_machine",
]


def resolve_device(name: str) -> str:
    """``"auto"`` becomes ``"cuda"``, else ``"mps"`` (Apple silicon), else ``"cpu"``; other names pass through.

    The first time ``"auto"`` is resolved in a process, one line says what it chose.
    """
    return _auto_device() if name == "auto" else name


@functools.cache
def _auto_device() -> str:
    if torch.cuda.is_available():
        device, why = "cuda", f"CUDA GPU {torch.cuda.get_device_name(0)}"
    elif torch.backends.mps.is_available():
        device, why = "mps", "Apple-silicon GPU (MPS)"
    else:
        device, why = "cpu", "no CUDA or MPS GPU"
    print(f"device auto: {device} ({why})", flush=True)
    return device


def world_size() -> int:
    """How many processes ``torchrun`` started (1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class Processes:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one) and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all processes, in place."""
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor


def setup_processes(device: str) -> Processes:
    """One process, or one of ``torchrun``'s (nccl on GPUs, gloo on CPUs), on its device."""
    world, rank = world_size(), int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device)
    if device == "cuda" and world > 1:
        device = f"cuda:{local}"
    dev = torch.device(device)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Processes(rank, world, dev)


def run_precision(requested: str, device: torch.device, loss: str = "full") -> str:
    """The number format that can actually run.

    CUDA GPUs run what is asked (``auto``: bf16 where supported). Apple's
    MPS runs fp32 (no loss scaler, no fused kernels). CPUs run fp32, with one
    exception: ``bf16`` with the chunked loss, on a CPU that multiplies bf16
    natively (AVX-512 BF16 or AMX), computes the output layer and its
    cross-entropy in bf16 (fp32 softmax and accumulation) and leaves the
    blocks in fp32. That layer is most of a CPU step and its products run
    1.6-3x faster in bf16, while autocasting the small blocks makes them slower.
    """
    if device.type == "mps":
        return "fp32"
    if device.type != "cuda":
        native = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
        return "bf16" if requested == "bf16" and loss == "chunked" and native else "fp32"
    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return requested


@contextlib.contextmanager
def tf32_matmuls(enabled: bool, device: torch.device) -> Iterator[None]:
    """TensorFloat-32 products on a GPU while a run lasts, then the process-wide flags as they were.

    A notebook kernel keeps running after a training run, so the flags must
    not stay changed behind the user's back.
    """
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def rng_state() -> dict:
    """Every random generator a training step draws from (Python, NumPy, torch, CUDA or MPS)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Put back what :func:`rng_state` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch at once, as ``transformers.set_seed`` does."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def describe_machine(device: str | None = None) -> dict[str, Any]:
    """The machine a time was measured on, named: a time means nothing without it."""
    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    except OSError:  # not Linux: the platform's own name for the processor
        pass
    gpu = torch.cuda.get_device_name(device) if device and device.startswith("cuda") else None
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "device": device,
            "torch": torch.__version__, "python": platform.python_version()}
