"""A study-level W&B run (job_type ``study``) when a sweep ends: Optuna's optimisation history, a table of
all trials and the parameter importances, in the same group as the study's trial runs."""
from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any, Optional

from ddpm.config import ExperimentConfig, TrackingConfig
from ddpm.progress import console
from ddpm.redact import redact
from ddpm.sweeps.importance import EVALUATOR, param_importances as importances_of
from ddpm.sweeps.record import state_name
from ddpm.tracking.base import RunSpec
from ddpm.tracking.wandb_env import wandb_dir, wandb_entity, wandb_project
from ddpm.tracking.wandb_run import WandbTracker, resolve_mode

STUDY_RUN_ATTR = "wandb_study_run"   # study user attribute: {id, next_step, logged_trials} of the study's W&B run


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
    """Log ``study`` as one W&B run; returns its run id (None when tracking is off or W&B failed).

    One study, one W&B run: its id is kept with the study (user attribute ``wandb_study_run``), so a rerun
    of the sweep resumes that run and adds the trials it has not logged yet, instead of starting a second.
    ``dir``: where W&B writes (else tracking.dir, else WANDB_DIR, else ``<out_dir>/<study>``)."""
    tracking = cfg.tracking if cfg is not None else TrackingConfig()
    mode = resolve_mode(tracking.wandb)
    if mode == "disabled":
        return None
    group = group or study.study_name
    directions = [d.name.lower() for d in study.directions]
    state = _study_run_state(study)
    attrs = {k: v for k, v in study.user_attrs.items() if k != STUDY_RUN_ATTR}
    spec = RunSpec(project=wandb_project(tracking.project), entity=wandb_entity(tracking.entity), job_type="study",
                   name=f"study-{group}", group=group, tags=["study"], mode=mode, step_metric="trial",
                   run_id=state["id"], config=redact({"study": study.study_name, "directions": directions,
                                                      "user_attrs": attrs}))
    tracker = WandbTracker(spec)
    out = (Path(dir) if dir is not None else wandb_dir(tracking.dir)
           or Path(cfg.out_dir if cfg is not None else "runs") / group)
    tracker.start(out)
    if not tracker.active:
        return None
    trials = sorted(study.trials, key=lambda t: t.number)
    step, logged = state["next_step"], set(state["logged_trials"])
    for trial, row in _history_rows(trials, directions):
        if trial not in logged:
            tracker.log(row, step=step)
            step, logged = step + 1, logged | {trial}
    importances = param_importances(study)
    tracker.log(_tables(trials, importances, len(directions) > 1), step=step)
    tracker.log_summary(_summary(study, trials, importances, len(directions) > 1))
    run_id = tracker.run_id
    tracker.finish("complete")
    if run_id is not None:  # W&B took every row: the next call resumes after them
        study.set_user_attr(STUDY_RUN_ATTR, {"id": state["id"], "next_step": step + 1,
                                             "logged_trials": sorted(logged)})
    return run_id


def _study_run_state(study: Any) -> dict[str, Any]:
    """The study run's W&B id, its next ``_step`` and the trials its history holds; a new id (stored with the
    study at once, so even a run that fails to finish is resumed, never duplicated) on the first call."""
    state = study.user_attrs.get(STUDY_RUN_ATTR)
    if isinstance(state, dict) and state.get("id"):
        return {"next_step": 0, "logged_trials": [], **state}
    state = {"id": uuid.uuid4().hex[:16], "next_step": 0, "logged_trials": []}
    study.set_user_attr(STUDY_RUN_ATTR, state)
    return state


def _history_rows(trials: list[Any], directions: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """(trial number, history row) per complete trial: its value(s), the best so far, its numeric params."""
    import optuna

    multi, minimize = len(directions) > 1, directions[0] == "minimize"
    best: Optional[float] = None
    rows = []
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
        rows.append((t.number, row))
    return rows


def _tables(trials: list[Any], importances: dict[str, float], multi: bool) -> dict[str, Any]:
    import wandb

    data: dict[str, Any] = {"study/trials": _trials_table(trials, multi)}
    if importances:
        imp = wandb.Table(columns=["param", "importance"], data=[[k, v] for k, v in importances.items()])
        data["study/param_importances"] = wandb.plot.bar(imp, "param", "importance",
                                                         title=f"parameter importance ({EVALUATOR})")
    return data


def _summary(study: Any, trials: list[Any], importances: dict[str, float], multi: bool) -> dict[str, Any]:
    import optuna

    states = [state_name(t.state) for t in trials]
    summary: dict[str, Any] = {f"n_{s}": states.count(s) for s in ("complete", "pruned", "failed")}
    summary["n_trials"] = len(trials)
    if not multi and any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
        bt = study.best_trial
        summary.update({"best/value": bt.value, "best/trial": bt.number, "best/params": redact(dict(bt.params))})
    summary.update({f"importance/{k}": v for k, v in importances.items()})
    return summary


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
