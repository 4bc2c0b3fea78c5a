"""What machine this is: the CPU model and flags, cores, threads, GPU, load (for bench JSON and reports)."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Optional

import torch


def _cpuinfo() -> tuple[str, str]:
    """(CPU model name, its flags line) from /proc/cpuinfo; the platform's processor name elsewhere."""
    cpu, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine(), platform.processor()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    return cpu, flags


def load_avg() -> Optional[list[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info(device: torch.device) -> dict[str, Any]:
    cpu, flags = _cpuinfo()
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                            "interop_threads": torch.get_num_interop_threads(),
                            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
                            "torch": torch.__version__, "device": device.type,
                            "host": platform.node(), "load_avg": load_avg()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_text() -> str:
    """``a CPU machine (<model>, 16 cores, no GPU)`` or ``a GPU machine (<gpu>, 16 CPU cores)``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info = machine_info(device)
    if "gpu" in info:
        return f"a GPU machine ({info['gpu']}, {info['cores']} CPU cores)"
    return f"a CPU machine ({info['cpu']}, {info['cores']} cores, no GPU)"
