"""A study-level W&B run (job_type ``study``) when a sweep ends: Optuna's optimisation history, a table of
all trials and the parameter importances, in the same group as the study's trial runs."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from ddpm.config import ExperimentConfig, TrackingConfig
from ddpm.progress import console
from ddpm.redact import redact
from ddpm.sweeps.importance import EVALUATOR, param_importances as importances_of
from ddpm.sweeps.record import state_name
from ddpm.tracking.base import RunSpec
from ddpm.tracking.wandb_run import WandbTracker, resolve_mode


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def param_importances(study: Any) -> dict[str, float]:
    """The report's importances (``ddpm.sweeps.importance``, same evaluator); {} when fewer than two trials
    completed or the study is multi-objective."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2 or len(study.directions) != 1 or not any(t.params for t in complete):
        return {}
    try:
        return importances_of(study)
    except (RuntimeError, ValueError) as e:  # e.g. every trial has the same params
        console.print(f"[yellow]warning: no parameter importances for study {study.study_name}: {e}[/]")
        return {}


def log_study(study: Any, group: Optional[str] = None, cfg: Optional[ExperimentConfig] = None,
              dir: Optional[str | Path] = None) -> Optional[str]:
    """Log ``study`` as one W&B run; returns its run id (None when tracking is off or W&B failed)."""
    import optuna

    tracking = cfg.tracking if cfg is not None else TrackingConfig()
    mode = resolve_mode(tracking.wandb)
    if mode == "disabled":
        return None
    group = group or study.study_name
    multi = len(study.directions) > 1
    directions = [d.name.lower() for d in study.directions]
    spec = RunSpec(project=tracking.project, entity=tracking.entity, job_type="study", name=f"study-{group}",
                   group=group, tags=["study"], mode=mode, step_metric="trial",
                   config=redact({"study": study.study_name, "directions": directions,
                                  "user_attrs": dict(study.user_attrs)}))
    tracker = WandbTracker(spec)
    out = Path(dir) if dir is not None else Path(cfg.out_dir if cfg is not None else "runs") / group
    tracker.start(out)
    if not tracker.active:
        return None
    import wandb

    trials = sorted(study.trials, key=lambda t: t.number)
    best: Optional[float] = None
    minimize = directions[0] == "minimize"
    for t in trials:
        if t.state != optuna.trial.TrialState.COMPLETE or t.values is None:
            continue
        row: dict[str, Any] = {"trial": t.number}
        if multi:
            row.update({f"value_{i}": v for i, v in enumerate(t.values)})
        elif _finite(t.value):
            best = t.value if best is None else (min(best, t.value) if minimize else max(best, t.value))
            row.update({"value": t.value, "best_value": best})
        row.update({f"params/{k}": v for k, v in t.params.items() if _finite(v)})
        tracker.log(row)

    data: dict[str, Any] = {"study/trials": _trials_table(trials, multi)}
    importances = param_importances(study)
    if importances:
        imp = wandb.Table(columns=["param", "importance"], data=[[k, v] for k, v in importances.items()])
        data["study/param_importances"] = wandb.plot.bar(imp, "param", "importance",
                                                         title=f"parameter importance ({EVALUATOR})")
    tracker.log(data)

    states = [state_name(t.state) for t in trials]
    summary: dict[str, Any] = {f"n_{s}": states.count(s) for s in ("complete", "pruned", "failed")}
    summary["n_trials"] = len(trials)
    if not multi and any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
        bt = study.best_trial
        summary.update({"best/value": bt.value, "best/trial": bt.number, "best/params": redact(dict(bt.params))})
    summary.update({f"importance/{k}": v for k, v in importances.items()})
    tracker.log_summary(summary)
    run_id = tracker.run_id
    tracker.finish("complete")
    return run_id


def _trials_table(trials: list[Any], multi: bool) -> Any:
    """One W&B table row per trial: number, state, value(s), seconds and every searched parameter."""
    import wandb

    param_keys = sorted({k for t in trials for k in t.params})
    table = wandb.Table(columns=["trial", "state", "value", "seconds", *param_keys])
    for t in trials:
        value = (list(t.values) if multi else t.values[0]) if t.values else None
        seconds = t.duration.total_seconds() if t.duration is not None else None
        table.add_data(t.number, state_name(t.state), value, seconds, *[_cell(t.params.get(k)) for k in param_keys])
    return table


def _cell(v: Any) -> Any:
    return v if v is None or isinstance(v, (int, float, str, bool)) else str(v)
