"""Bench results on disk (``ddpm bench``): where they go, how one is written (JSON plus a markdown table
beside it, both atomically, after every stage of a run), and how earlier result files are merged into one.

The measurements themselves live in ``ddpm.bench``.
"""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ddpm.bench import FORMAT, BenchSettings, markdown, merge_results, run_bench
from ddpm.config import ExperimentConfig
from ddpm.errors import ConfigError
from ddpm.io import atomic_write_json, atomic_write_text
from ddpm.runtime import resolve_device


def default_path(device: torch.device) -> Path:
    """``reports/benchmarks/<device type>-<date>.json``."""
    return Path(f"reports/benchmarks/{device.type}-{date.today().isoformat()}.json")


def write_result(out: str | Path, result: dict[str, Any]) -> Path:
    """``result`` as ``out`` (JSON) and its markdown table beside it (``out`` with suffix .md)."""
    out = Path(out)
    atomic_write_json(out, result)
    atomic_write_text(out.with_suffix(".md"), markdown(result))
    return out


def read_result(path: str | Path, flag: str = "--merge") -> dict[str, Any]:
    """A bench result file; a ConfigError naming ``flag`` and the file when it is unreadable or not one."""
    try:
        res = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{flag} {path}: not a readable JSON file ({e})") from None
    if not isinstance(res, dict) or res.get("format") != FORMAT:
        raise ConfigError(f"{flag} {path}: not a ddpm bench result (format {FORMAT} expected)")
    return res


def merge_files(paths: list[str | Path], out: Optional[str | Path]) -> tuple[dict[str, Any], Path]:
    """Merge earlier result files (``ddpm.bench.merge_results``: rows in order, the last ablation and quality
    curve) into ``out``; every input is checked before anything is written. Returns (merged, out)."""
    results = [read_result(p) for p in paths]
    if not out:
        raise ConfigError("--merge needs --out PATH for the merged JSON")
    merged = merge_results(results)
    return merged, write_result(out, merged)


def run_to_file(base: ExperimentConfig, settings: BenchSettings, out: Optional[str | Path], command: str,
                log: Callable[[str], None] = lambda m: None, **options: Any) -> tuple[dict[str, Any], Path]:
    """``ddpm.bench.run_bench`` (``options``: ablate_width, checkpoint, quality_n, omega, quality_settings),
    writing the partial result to ``out`` (default ``default_path``) after every stage, so a long run that
    stops keeps what it measured; ``command`` is stored with it. Returns (result, out)."""
    path = Path(out) if out else default_path(resolve_device(base.train.device))

    def save(result: dict[str, Any]) -> None:
        result["command"] = command
        write_result(path, result)

    return run_bench(base, settings, log=log, on_update=save, **options), path
