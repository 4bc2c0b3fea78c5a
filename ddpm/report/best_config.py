"""``best_config.yaml``: the best trial's full resolved experiment config, rerunnable as is.

It is the trial's own config (the sweep stores it with the best guidance weight as ``sample.omega``),
renamed ``<study>-best`` so that ``ddpm train best_config.yaml`` writes a fresh run folder.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import yaml

from ddpm.config import ExperimentConfig, config_from_dict, set_dotted
from ddpm.errors import ConfigError
from ddpm.io import atomic_write_text
from ddpm.report.collect import StudyData, TrialData


def best_config(data: StudyData, best: TrialData) -> ExperimentConfig:
    """The best trial's config, validated; ``sample.omega`` = its best omega; name ``<study>-best``."""
    if best.config is None:
        raise ConfigError(f"study '{data.name}': trial {best.number} stored no config and its run folder "
                          f"{best.run_dir} has no config.yaml")
    raw: dict[str, Any] = copy.deepcopy(best.config)
    if isinstance(best.best_omega, (int, float)):
        set_dotted(raw, "sample.omega", float(best.best_omega))
    raw["name"] = f"{data.name}-best".replace("/", "-")
    raw["out_dir"] = "runs"
    return config_from_dict(raw, source=f"study '{data.name}' trial {best.number} config")


def best_config_text(data: StudyData, best: TrialData, cfg: ExperimentConfig) -> str:
    values = ", ".join(f"{o.metric} = {v:.6g}" for o, v in zip(data.objectives, best.values or []))
    head = (f"# Best config of study '{data.name}': trial {best.number} ({values}).\n"
            f"# Full resolved experiment config; sample.omega is the trial's best guidance weight.\n"
            f"# Rerun: ddpm train best_config.yaml\n")
    return head + yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def write_best_config(path: Path, data: StudyData, best: Optional[TrialData]) -> Optional[str]:
    """Write ``path`` and return its text; None (and no file) when no trial has completed."""
    if best is None:
        if path.exists():
            path.unlink()
        return None
    text = best_config_text(data, best, best_config(data, best))
    atomic_write_text(path, text)
    return text
