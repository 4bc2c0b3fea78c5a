"""Device, precision and memory-format choices derived from ``train.*`` (one place, used everywhere)."""
from __future__ import annotations

from typing import Any, Optional

import torch

from ddpm.config import TrainConfig
from ddpm.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda': no CUDA device is available here; use auto or cpu")
    return torch.device(name)


def autocast_dtype(t: TrainConfig, device: torch.device) -> Optional[torch.dtype]:
    """bf16 autocast on the fast path: 'auto' means on CUDA only (CPUs without bf16 units get slower)."""
    if t.path == "faithful" or t.precision == "fp32":
        return None
    if t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def memory_format(t: TrainConfig) -> torch.memory_format:
    return torch.channels_last if (t.path == "fast" and t.channels_last) else torch.contiguous_format


# images per network pass when sampling on a CPU: 200-image guided passes at width 16-128 took 10-34% less
# time as 64-image pieces (2-core AMD EPYC, reports/benchmarks/cpu-knobs-2026-11-30.md)
CPU_SAMPLE_CHUNK = 64


def sampling_options(t: TrainConfig, device: torch.device) -> dict[str, Any]:
    """Keyword arguments of ``Sampler.sample`` for the configured path (one place for every caller)."""
    fast = t.path == "fast"
    chunk = t.sample_chunk if t.sample_chunk is not None else (CPU_SAMPLE_CHUNK if device.type == "cpu" else None)
    return {"autocast_dtype": autocast_dtype(t, device), "memory_format": memory_format(t),
            "fold_batchnorm": fast and t.fold_batchnorm, "chunk": chunk if fast else None}


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
