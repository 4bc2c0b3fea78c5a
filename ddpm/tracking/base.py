"""The tracker extension point: a ``Tracker`` is a training ``Callback`` that mirrors one run somewhere.

Backends register a factory under a name (``@register_tracker("wandb")``); ``tracker_callback`` picks one
from ``cfg.tracking``. Every tracker accepts the same calls, so training, ``ddpm eval`` and sweep trials
never check which backend is on. The local run record (metrics.jsonl, grids/, checkpoints/) is written by
``train()`` whatever the tracker does; a tracker only mirrors it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ddpm.registry import Registry
from ddpm.train import Callback, TrainState


@dataclass
class RunSpec:
    """Who a tracked run is: where it goes, how the dashboard groups it, and its resolved config."""

    project: str                         # resolved: tracking.project, else WANDB_PROJECT, else ddpm-sweeps
    entity: Optional[str]
    job_type: str                        # train / trial / eval / study
    name: str                            # trial-<n>, or the run's name
    group: Optional[str] = None          # the study name: one W&B group per study
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)   # already redacted
    mode: str = "offline"                # online | offline | disabled (resolved, never auto)
    dir: Optional[Path] = None           # where the backend writes its files; None = the run folder
    log_checkpoint: bool = False         # upload best.pt as a model artifact at the end
    step_metric: str = "epoch"           # the x axis of every chart (a study run uses "trial")
    run_id: Optional[str] = None         # a fixed W&B run id, resumed when it exists (the study run of a rerun)


@dataclass
class RunLink:
    """Where a tracked run can be found again: its id always; online, its path (entity/project/id) and URL;
    its local folder (what ``wandb sync`` uploads) in either mode."""

    run_id: str
    path: Optional[str] = None           # entity/project/id (online only)
    url: Optional[str] = None            # the run's page (online only)
    dir: Optional[str] = None            # the backend's local run folder (portable path)


class Tracker(Callback):
    """A tracker that tracks nothing (the ``none`` backend), and the interface every backend implements.

    ``finish_on_train_end=False`` keeps the run open after ``train()`` returns, so a sweep can still add the
    guidance table and summary; it then calls ``finish(state, reason)`` itself.
    """

    def __init__(self, spec: RunSpec, finish_on_train_end: bool = True) -> None:
        self.spec = spec
        self.finish_on_train_end = finish_on_train_end

    def start(self, run_dir: Path) -> None:
        """Open the run (``on_train_start`` calls this; ``ddpm eval`` may call it without training)."""

    def on_train_start(self, run: TrainState) -> None:
        self.start(run.run_dir)

    def log_guidance(self, rows: list[dict[str, Any]], out_dir: str | Path) -> None:
        """The guidance sweep of a trained model: one row per omega (omega, fid, floor, accuracy, diversity,
        seconds, grid = image path relative to ``out_dir``)."""

    def log_summary(self, values: dict[str, Any]) -> None:
        """Add values to the run summary (best values, final state, ...)."""

    def log(self, values: dict[str, Any], step: Optional[int] = None) -> None:
        """One history row (include the step metric, e.g. ``epoch``, so charts line up); ``step`` fixes W&B's
        own ``_step`` (a resumed run continues it)."""

    def finish(self, state: str = "complete", reason: Optional[str] = None) -> None:
        """Close the run with its final state (``train()`` passes complete, pruned, failed or interrupted);
        safe to call twice."""

    @property
    def active(self) -> bool:
        return False

    @property
    def link(self) -> Optional[RunLink]:
        """The open (or last opened) run's link; None when nothing is tracked."""
        return None


TrackerFactory = Callable[[RunSpec, bool], Tracker]
TRACKERS: Registry[TrackerFactory] = Registry("tracker")
register_tracker: Callable[[str], Callable[[TrackerFactory], TrackerFactory]] = TRACKERS.register


register_tracker("none")(Tracker)
