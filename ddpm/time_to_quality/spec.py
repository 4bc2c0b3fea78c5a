"""The time-to-quality benchmark file: typed like an experiment config (``ddpm.config``), every error one line
naming the file, the key and the value.

    budget_s: 600          # wall-clock TRAINING seconds per entry (scoring excluded), the same for all
    every_s: 150           # score every every_s training seconds (mid-epoch too), and once at the budget
    n: 500                 # images per score; the same sampler, steps, eta, omegas, seed and split for all
    sampler: ddim
    steps: 10
    eta: 1.0
    omegas: [2.0, 4.0]     # each point scores every omega and reports the best
    seed: 0
    split: val
    entries:               # the first entry is the reference of the ratios
      - {label: seed-fast, config: ../experiments/seed.yaml, overrides: [train.path=fast], every_s: 300}

``config`` is relative to the benchmark file (as a sweep file's ``base``). Every entry trains with W&B off and
without per-epoch sample grids (``train.grid_every=0``): the benchmark times training, not its display aids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ddpm.config import ExperimentConfig, _from_dict, _show, _unknown_in_section, load_config, read_yaml
from ddpm.errors import ConfigError

FORCED = ["tracking.wandb=disabled", "train.grid_every=0"]


@dataclass
class EntryFile:
    label: str
    config: str
    overrides: list[str] = field(default_factory=list)
    every_s: Optional[float] = None     # this entry's scoring interval (default: the file's)


@dataclass
class BenchFile:
    entries: list[Any]
    budget_s: float
    every_s: float
    n: int = 500
    sampler: str = "ddim"
    steps: Optional[int] = 10
    eta: float = 1.0
    omegas: list[float] = field(default_factory=lambda: [2.0])
    seed: int = 0
    split: str = "val"


@dataclass
class Entry:
    label: str
    config: ExperimentConfig
    config_path: str                    # as written in the file
    overrides: list[str]
    every_s: float


@dataclass
class Benchmark:
    path: Path
    budget_s: float
    n: int
    sampler: str
    steps: Optional[int]
    eta: float
    omegas: list[float]
    seed: int
    split: str
    entries: list[Entry]

    def scoring(self) -> dict[str, Any]:
        """The settings every point is scored with (a rerun into the same folder must match them)."""
        return {"n": self.n, "sampler": self.sampler, "steps": self.steps, "eta": self.eta, "split": self.split,
                "seed": self.seed, "omegas": list(self.omegas)}


def _positive(value: float, where: str) -> None:
    if not value > 0:
        raise ConfigError(f"{where} = {value!r}: must be > 0 seconds")


def load_benchmark(path: str | Path) -> Benchmark:
    """Read and check a benchmark file; every entry's config is loaded (and its sampler settings checked)
    before anything trains."""
    from ddpm.evaluation.guidance import reference_split
    from ddpm.sampling import Sampling

    path = Path(path)
    src = str(path)
    f: BenchFile = _from_dict(BenchFile, read_yaml(path), "", src, _unknown_in_section)
    _positive(f.budget_s, f"{src}: budget_s")
    _positive(f.every_s, f"{src}: every_s")
    if f.n < 2:
        raise ConfigError(f"{src}: n = {f.n}: must be >= 2 (FID needs two samples)")
    if not f.omegas or not all(math.isfinite(w) for w in f.omegas):
        raise ConfigError(f"{src}: omegas = {_show(f.omegas)}: give at least one finite guidance weight")
    if not f.entries:
        raise ConfigError(f"{src}: entries = {_show(f.entries)}: give at least one entry")
    entries: list[Entry] = []
    for i, raw in enumerate(f.entries):
        e: EntryFile = _from_dict(EntryFile, raw, f"entries[{i}].", src, _unknown_in_section)
        where = f"{src}: entries[{i}]"
        if not e.label or "," in e.label or "\n" in e.label or any(x.label == e.label for x in entries):
            raise ConfigError(f"{where}.label = {e.label!r}: must be a unique non-empty name without commas")
        every = e.every_s if e.every_s is not None else f.every_s
        _positive(every, f"{where}.every_s")
        cfg_path = (path.parent / e.config).resolve()
        if not cfg_path.is_file():
            raise ConfigError(f"{where}.config = {e.config!r}: no such file ({cfg_path})")
        try:  # the entry's config, and the file's sampler settings and split for it
            cfg = load_config(cfg_path, list(e.overrides) + FORCED)
            Sampling.from_config(cfg, "cpu", sampler=f.sampler, steps=f.steps, eta=f.eta, steps_key="steps")
            reference_split(cfg, f.split)
        except ConfigError as err:
            raise ConfigError(f"{where} ({e.label}): {err}") from None
        entries.append(Entry(e.label, cfg, e.config, list(e.overrides), every))
    return Benchmark(path, f.budget_s, f.n, f.sampler, f.steps, f.eta, list(f.omegas), f.seed, f.split, entries)
