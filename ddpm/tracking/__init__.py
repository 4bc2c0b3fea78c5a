"""Experiment tracking: one tracked run per training run or sweep trial (``ddpm.tracking.wandb_run``).

    tracker = tracker_callback(cfg, job_type="trial", group=study_name, name=f"trial-{n}",
                               extra_config={"trial": {...}}, finish_on_train_end=False)
    train(cfg, run_dir=..., callbacks=[tracker, ...])
    tracker.log_guidance(rows, out_dir); tracker.finish("complete")

Backends are a registry (``TRACKERS``: ``wandb``, ``none``); ``cfg.tracking.wandb`` (auto / online / offline
/ disabled, and env WANDB_MODE=disabled) picks the mode, and the mode the backend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ddpm.config import ExperimentConfig
from ddpm.redact import redact
from ddpm.tracking.base import TRACKERS, RunLink, RunSpec, Tracker, register_tracker
from ddpm.tracking.wandb_env import wandb_dir, wandb_entity, wandb_project
from ddpm.tracking.wandb_run import WandbTracker, configured_mode, has_credentials, resolve_mode, wandb_unreachable

__all__ = ["TRACKERS", "RunLink", "RunSpec", "Tracker", "WandbTracker", "configured_mode", "has_credentials",
           "log_study", "register_tracker", "resolve_mode", "run_tags", "tracker_callback", "wandb_unreachable"]

# resolved mode -> tracker backend
BACKEND_OF_MODE: dict[str, str] = {"online": "wandb", "offline": "wandb", "disabled": "none"}


def run_tags(cfg: ExperimentConfig) -> list[str]:
    """Dashboard filters: schedule, width, sampler, T."""
    return [cfg.diffusion.schedule, f"width-{cfg.model.num_feat}", cfg.sample.sampler, f"T-{cfg.diffusion.T}"]


def tracker_callback(cfg: ExperimentConfig, job_type: str, group: Optional[str] = None, name: Optional[str] = None,
                     extra_config: Optional[dict[str, Any]] = None, tags: Optional[list[str]] = None,
                     finish_on_train_end: bool = True, log_checkpoint: bool = False,
                     dir: Optional[str | Path] = None) -> Tracker:
    """The tracker for one run: W&B config = the resolved experiment config | ``extra_config`` (redacted).
    ``dir``: where W&B writes (else tracking.dir, else WANDB_DIR, else the run folder).
    The best checkpoint is uploaded as a model artifact when ``log_checkpoint`` or ``tracking.log_model``."""
    mode = resolve_mode(cfg.tracking.wandb)
    dir = dir if dir is not None else wandb_dir(cfg.tracking.dir)
    spec = RunSpec(project=wandb_project(cfg.tracking.project), entity=wandb_entity(cfg.tracking.entity),
                   job_type=job_type, name=name or cfg.name, group=group, tags=run_tags(cfg) + list(tags or []),
                   config=redact(cfg.to_dict() | dict(extra_config or {})), mode=mode,
                   dir=Path(dir) if dir is not None else None,
                   log_checkpoint=log_checkpoint or cfg.tracking.log_model)
    return TRACKERS[BACKEND_OF_MODE[mode]](spec, finish_on_train_end)


def log_study(study: Any, group: Optional[str] = None, cfg: Optional[ExperimentConfig] = None,
              dir: Optional[str | Path] = None) -> Optional[str]:
    """A study-level run (job_type ``study``): Optuna's optimisation history and parameter importances."""
    from ddpm.tracking.study import log_study as _log_study

    return _log_study(study, group=group, cfg=cfg, dir=dir)
