"""Device, precision and memory-format choices derived from ``train.*`` (one place, used everywhere)."""
from __future__ import annotations

import functools
from typing import Optional

import torch

from ddpm.config import TrainConfig
from ddpm.errors import ConfigError


# the largest seed every consumer takes (torch generators take 64 bits; 63 keep it a signed int everywhere)
SEED_MAX = 2**63 - 1


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """auto | cpu | cuda | cuda:N as a device this machine has; anything else is a one-line ConfigError."""
    allowed = "auto, cpu, cuda or cuda:N"
    key = f"{key} " if key.startswith("-") else f"{key} = "  # `--device 'x'`, `train.device = 'x'`
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{key}{name!r}: unknown device; valid: {allowed}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{key}{name!r}: unknown device; valid: {allowed}") from None
    if device.type == "cpu" and device.index in (None, 0):
        return torch.device("cpu")
    if device.type != "cuda":
        raise ConfigError(f"{key}{name!r}: not supported here; valid: {allowed}")
    if not torch.cuda.is_available():
        raise ConfigError(f"{key}{name!r}: no CUDA device is available here; use auto or cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{key}{name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return device


@functools.lru_cache(maxsize=None)
def _bf16_runs(device: torch.device) -> Optional[str]:
    """None when a bf16-autocast convolution runs on ``device``, else the reason it does not (probed once
    per device and process)."""
    try:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return f"{torch.cuda.get_device_name(device)} has no bf16 support"
        with torch.autocast(device.type, dtype=torch.bfloat16):
            torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4, device=device), torch.ones(1, 1, 3, 3, device=device))
    except (RuntimeError, AssertionError) as e:  # no driver / no CUDA build / an op bf16 cannot run
        return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    return None


def autocast_dtype(t: TrainConfig, device: torch.device) -> Optional[torch.dtype]:
    """bf16 autocast on the fast path: 'auto' means on CUDA only (CPUs without bf16 units get slower).
    An explicit ``bf16`` the device cannot run is a one-line ConfigError, not a crash mid-training."""
    if t.path == "faithful" or t.precision == "fp32":
        return None
    if t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda"):
        why = _bf16_runs(device)
        if why is not None:
            if t.precision == "auto":
                return None
            raise ConfigError(f"train.precision = 'bf16': cannot run on {device.type} here ({why}); use fp32 or auto")
        return torch.bfloat16
    return None


def memory_format(t: TrainConfig) -> torch.memory_format:
    return torch.channels_last if (t.path == "fast" and t.channels_last) else torch.contiguous_format


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
