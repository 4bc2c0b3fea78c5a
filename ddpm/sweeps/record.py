"""What a sweep stores with each trial, as one typed record: written by the objective, read everywhere else.

``TrialRecord`` names every trial user attribute the sweep writes (``ddpm.sweeps.objective``), the
enqueue steps set (``baseline``, ``grid_id``) and Optuna's own retry bookkeeping (system attribute
``retry_history``; ``fail_reason`` of a trial that raised outside the objective; ``artifacts:<id>``, the
files uploaded to the study's artifact store for optuna-dashboard). ``outputs`` maps each run-folder file kept in
the store (checkpoints, metrics, grids, eval.json) to its artifact id. The stored keys are
the field names, as earlier versions wrote them, so studies already on disk read as before; a trial
written before a key existed reads that field's default.

A running trial's attributes are written field by field as the trial goes (``TrialRecord.write``):
what was stored before a worker died stays readable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Optional

from optuna.trial import TrialState

Row = dict[str, Any]


def state_name(state: TrialState) -> str:
    """A trial state as the product writes it: complete, pruned, failed, running, waiting.

    Optuna's name for a failed trial is FAIL; every console line, table, report and W&B summary says
    ``failed`` (the word the trackers' run states use)."""
    return "failed" if state == TrialState.FAIL else state.name.lower()


@dataclass
class TrialRecord:
    """A trial's stored attributes. Defaults are what a trial that never wrote the key reads."""

    run_dir: Optional[str] = None                 # runs/<study>/trial-<n>[-v<k>]
    config: Optional[dict[str, Any]] = None       # the resolved config (sample.omega = best omega when scored)
    guidance: list[Row] = field(default_factory=list)   # the guidance grid's rows (``json_row``)
    guidance_split: Optional[str] = None          # the split the rows were scored on: val, or test without one
    best_omega: Optional[float] = None
    failure_reason: Optional[str] = None          # why it failed or was pruned (None: it did not, or a retry cleared it)
    interrupted: bool = False                     # stopped by Ctrl-C: the next sweep requeues it
    duration_s: Optional[float] = None
    retry_of: Optional[int] = None                # the trial whose run folder this retry copied and resumed
    resumed_from_epoch: Optional[int] = None
    host: Optional[str] = None
    pid: Optional[int] = None
    baseline: bool = False                        # runs the sweep's base config (set when enqueued)
    grid_id: Optional[int] = None                 # a grid study's point index (set when enqueued)
    wandb_run_id: Optional[str] = None            # the trial's W&B run (written when its tracker starts)
    wandb_run_path: Optional[str] = None          # entity/project/run id (online only)
    wandb_url: Optional[str] = None               # the run's page (online only)
    wandb_dir: Optional[str] = None               # the run's local W&B folder (offline: what `wandb sync` uploads)
    outputs: dict[str, str] = field(default_factory=dict)  # run-folder path -> artifact id (ddpm.sweeps.trial_outputs)
    # Optuna's system attributes (read only)
    retry_history: list[int] = field(default_factory=list)   # the failed trials this one retries, oldest first
    optuna_fail_reason: Optional[str] = None
    artifacts: dict[str, str] = field(default_factory=dict)  # file name -> id in the study's artifact store

    @classmethod
    def from_attrs(cls, user_attrs: dict[str, Any], system_attrs: Optional[dict[str, Any]] = None) -> "TrialRecord":
        """Read stored attributes; a missing key (an older trial) or a value of the wrong kind reads the default."""
        system_attrs = system_attrs or {}
        a = user_attrs
        guidance = a.get("guidance")
        config = a.get("config")
        history = system_attrs.get("retry_history")
        return cls(
            run_dir=str(a["run_dir"]) if a.get("run_dir") else None,
            config=config if isinstance(config, dict) else None,
            guidance=[r for r in guidance if isinstance(r, dict)] if isinstance(guidance, list) else [],
            guidance_split=_str(a.get("guidance_split")),
            best_omega=_number(a.get("best_omega")),
            failure_reason=_str(a.get("failure_reason")),
            interrupted=a.get("interrupted") is True,
            duration_s=_number(a.get("duration_s")),
            retry_of=_int(a.get("retry_of")),
            resumed_from_epoch=_int(a.get("resumed_from_epoch")),
            host=_str(a.get("host")),
            pid=_int(a.get("pid")),
            baseline=bool(a.get("baseline")),
            grid_id=_int(a.get("grid_id")),
            wandb_run_id=_str(a.get("wandb_run_id")),
            wandb_run_path=_str(a.get("wandb_run_path")),
            wandb_url=_str(a.get("wandb_url")),
            wandb_dir=_str(a.get("wandb_dir")),
            outputs=_str_dict(a.get("outputs")),
            retry_history=[int(n) for n in history if _int(n) is not None] if isinstance(history, list) else [],
            optuna_fail_reason=_str(system_attrs.get("fail_reason")),
            artifacts=_artifacts(system_attrs),
        )

    @classmethod
    def from_trial(cls, trial: Any) -> "TrialRecord":
        """The record of an Optuna ``FrozenTrial`` (or anything with ``user_attrs``/``system_attrs``)."""
        return cls.from_attrs(dict(getattr(trial, "user_attrs", None) or {}),
                              dict(getattr(trial, "system_attrs", None) or {}))

    def to_user_attrs(self) -> dict[str, Any]:
        """The user attributes that hold this record: every field not at its default (Optuna's system
        attributes excluded), under the keys the sweep has always stored."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in SYSTEM_FIELDS:
                continue
            value = getattr(self, f.name)
            default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
            if value != default:
                out[f.name] = value
        return out

    @staticmethod
    def write(trial: Any, **values: Any) -> None:
        """Store these fields on a running trial now (``trial.set_user_attr`` per field). A name that is
        not a field is a programming error (TypeError): the stored keys are this class's fields."""
        for name, value in values.items():
            if name not in USER_FIELDS:
                raise TypeError(f"TrialRecord has no field {name!r} (fields: {', '.join(USER_FIELDS)})")
            trial.set_user_attr(name, value)

    @staticmethod
    def write_run_link(trial: Any, link: Any) -> None:
        """Store a tracker's ``RunLink`` (``ddpm.tracking.base``) on a running trial: the parts it has (offline:
        no path or URL). None clears the fields (a retry inherits its predecessor's attributes, not its W&B run)."""
        values = {"wandb_run_id": getattr(link, "run_id", None), "wandb_run_path": getattr(link, "path", None),
                  "wandb_url": getattr(link, "url", None), "wandb_dir": getattr(link, "dir", None)}
        TrialRecord.write(trial, **{k: v for k, v in values.items() if v is not None or link is None})

    # ---- what readers ask of it

    @property
    def retried_trial(self) -> Optional[int]:
        """The failed trial this one retries (the last of Optuna's retry history), or None."""
        return self.retry_history[-1] if self.retry_history else None

    def reason(self, state: Optional[TrialState] = None) -> Optional[str]:
        """Why the trial did not complete: the sweep's reason; for a failed trial without one, Optuna's."""
        if self.failure_reason is not None:
            return self.failure_reason
        return self.optuna_fail_reason if state is None or state == TrialState.FAIL else None

    def best_row(self) -> Optional[Row]:
        """The guidance row at the best omega (None when there is none)."""
        return self.row_at(self.best_omega)

    def row_at(self, omega: Optional[float]) -> Optional[Row]:
        if omega is None:
            return None
        for row in self.guidance:
            if math.isclose(float(row.get("omega", math.nan)), float(omega)):
                return row
        return None


SYSTEM_FIELDS = ("retry_history", "optuna_fail_reason", "artifacts")
USER_FIELDS = tuple(f.name for f in fields(TrialRecord) if f.name not in SYSTEM_FIELDS)


def retried_numbers(trials: Iterable[Any]) -> set[int]:
    """Numbers of the failed trials that a later trial retries (they no longer count toward the budget)."""
    return {n for t in trials for n in TrialRecord.from_trial(t).retry_history}


def retried_as(trials: Iterable[Any]) -> dict[int, int]:
    """Failed trial number -> the number of the trial that retried it."""
    out: dict[int, int] = {}
    for t in trials:
        before = TrialRecord.from_trial(t).retried_trial
        if before is not None:
            out[before] = t.number
    return out


def _artifacts(system_attrs: dict[str, Any]) -> dict[str, str]:
    """Optuna's artifact records (``artifacts:<id>`` -> JSON meta, written by ``optuna.artifacts.upload_artifact``)."""
    import json

    out: dict[str, str] = {}
    for key, value in system_attrs.items():
        if not key.startswith("artifacts:"):
            continue
        try:
            meta = json.loads(value) if isinstance(value, str) else value
            out[str(meta["filename"])] = str(meta["artifact_id"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _str_dict(v: Any) -> dict[str, str]:
    return {k: x for k, x in v.items() if isinstance(k, str) and isinstance(x, str)} if isinstance(v, dict) else {}


def _number(v: Any) -> Optional[float]:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> Optional[int]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return int(v)


def _str(v: Any) -> Optional[str]:
    return str(v) if v is not None else None
