"""Read what a report needs, offline: the Optuna study (storage) and each trial's run folder.

Nothing here needs W&B or a network: each trial's stored record (``ddpm.sweeps.record.TrialRecord``:
``run_dir``, ``guidance``, ``best_omega``, ``config``, ``failure_reason``, ``duration_s``), study user attributes
(``spec``, ``objectives``, ``base_experiment``, ``baseline_trial``) and the run folder files
(``config.yaml``, ``metrics.jsonl``, ``eval.json``, ``grids/``). A file this machine does not hold is read from the
study's artifact store (``ddpm.sweeps.trial_outputs``), downloaded once into a cache folder, when ``collect`` is
given one.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from ddpm.errors import DDPMError
from ddpm.io import read_jsonl
from ddpm.redact import redact_url, secrets_of
from ddpm.sweeps.record import TrialRecord, state_name
from ddpm.sweeps.trial_outputs import StoreCache, TrialFiles
from ddpm.sweeps.storage import (default_storage_url, local_storage_file, local_study_storages, open_storage_readonly,
                                  reading)


class StudyNotFound(DDPMError):
    """The study is not in the storage (the message lists the studies that are)."""


# ----------------------------------------------------------------------------------------------
# storage URLs (the sweep's rules: ddpm.sweeps.storage; secrets: ddpm.redact)


def default_storage(study_name: str) -> str:
    """The sweep's default storage of ``study_name`` (a SQLite file under ``runs/<study>/``)."""
    return default_storage_url("runs", study_name)


def _open_storage(url: str, study_name: str) -> Any:
    """An Optuna storage for ``url``; a report never creates one (a missing file is StudyNotFound)."""
    file = local_storage_file(url)
    if file is not None and not file.is_file():
        raise StudyNotFound(f"no study '{study_name}': storage {redact_url(url)} does not exist"
                            f"{_studies_hint(_sqlite_neighbours(), 'under runs/')}")
    return open_storage_readonly(url)


def _sqlite_neighbours() -> list[str]:
    """Study names found in the default per-study SQLite files under runs/ (for the error hint)."""
    names: list[str] = []
    for url in local_study_storages("runs"):
        try:
            names += [s.study_name for s in open_storage_readonly(url).get_all_studies()]
        except Exception:
            continue
    return sorted(set(names))


def _studies_hint(names: list[str], where: str = "there") -> str:
    return f"; studies {where}: {', '.join(names)}" if names else f"; no studies {where}"


def find_study(study_name: str, storage: Optional[str] = None) -> tuple[optuna.Study, str]:
    """(study, storage URL) of an existing study, opened read-only (never created); a missing study is a
    one-line ``StudyNotFound`` naming those present."""
    url = storage or default_storage(study_name)
    store = _open_storage(url, study_name)
    with reading(url):
        names = [s.study_name for s in store.get_all_studies()]
        if study_name not in names:
            raise StudyNotFound(f"no study '{study_name}' in {redact_url(url)}{_studies_hint(sorted(names))}")
        return optuna.load_study(study_name=study_name, storage=store), url


# ----------------------------------------------------------------------------------------------
# what the report reads


@dataclass
class Objective:
    metric: str
    direction: str            # "minimize" | "maximize"

    @property
    def arrow(self) -> str:
        return "lower is better" if self.direction == "minimize" else "higher is better"


@dataclass
class TrialData:
    trial: FrozenTrial
    run_dir: Optional[Path]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    guidance: list[dict[str, Any]] = field(default_factory=list)
    config: Optional[dict[str, Any]] = None
    files: Optional[TrialFiles] = None     # the run folder's files, from the artifact store where it is not here

    @property
    def number(self) -> int:
        return self.trial.number

    @cached_property
    def record(self) -> TrialRecord:
        return TrialRecord.from_trial(self.trial)

    @property
    def state(self) -> str:
        return state_name(self.trial.state)

    @property
    def params(self) -> dict[str, Any]:
        return self.trial.params

    @property
    def values(self) -> Optional[list[float]]:
        return self.trial.values

    @property
    def duration_s(self) -> Optional[float]:
        if self.record.duration_s is not None:
            return float(self.record.duration_s)
        return self.trial.duration.total_seconds() if self.trial.duration is not None else None

    @property
    def best_omega(self) -> Optional[float]:
        return self.record.best_omega

    @property
    def failure_reason(self) -> Optional[str]:
        return self.record.reason(self.trial.state)

    def file(self, rel: str) -> Optional[Path]:
        """The trial's file at run-folder path ``rel`` (the run folder's, else the artifact store's copy), or None."""
        if self.files is not None:
            return self.files.path(rel)
        path = self.run_dir / rel if self.run_dir is not None else None
        return path if path is not None and path.is_file() else None

    def last(self, key: str) -> Optional[float]:
        for rec in reversed(self.metrics):
            if isinstance(rec.get(key), (int, float)):
                return float(rec[key])
        return None

    def guidance_row(self, omega: Optional[float]) -> Optional[dict[str, Any]]:
        for row in self.guidance:
            if omega is not None and math.isclose(float(row.get("omega", math.nan)), float(omega)):
                return row
        return None


@dataclass
class StudyData:
    study: optuna.Study
    storage: str                           # redacted URL, safe to print
    secrets: list[str]                     # the storage password, raw and decoded: never in a report
    objectives: list[Objective]
    trials: list[TrialData]
    spec: dict[str, Any]
    base_experiment: Optional[str]
    baseline_trial: Optional[int]

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def completed(self) -> list[TrialData]:
        return [t for t in self.trials if t.trial.state == TrialState.COMPLETE and t.values is not None]

    def by_number(self, number: Optional[int]) -> Optional[TrialData]:
        return next((t for t in self.trials if t.number == number), None) if number is not None else None

    def ranked(self) -> list[TrialData]:
        """Completed trials, best first by the first objective (ties: later objectives, then number)."""
        def key(t: TrialData) -> tuple:
            vals = [v if o.direction == "minimize" else -v for o, v in zip(self.objectives, t.values or [])]
            return (*[v if math.isfinite(v) else math.inf for v in vals], t.number)
        return sorted(self.completed, key=key)

    @property
    def confirmation(self) -> Optional[dict[str, Any]]:
        """The confirmation stage's record (``ddpm.sweeps.confirm``), when the study ran one."""
        rec = self.study.user_attrs.get("confirmation")
        return rec if isinstance(rec, dict) and rec.get("trials") else None

    def best(self) -> Optional[TrialData]:
        """The confirmed winner when the study ran a confirmation stage (re-scored on the test split);
        else, single objective: Optuna's best trial; several: the Pareto-optimal trial best on the first."""
        ranked = self.ranked()
        if not ranked:
            return None
        winner = (self.confirmation or {}).get("winner")
        if isinstance(winner, int) and any(t.number == winner for t in ranked):
            return self.by_number(winner)
        if not self.multi_objective:
            return self.by_number(self.study.best_trial.number) or ranked[0]
        front = {t.number for t in self.study.best_trials}
        return next((t for t in ranked if t.number in front), ranked[0])

    def wall_time_s(self) -> Optional[float]:
        starts = [t.trial.datetime_start for t in self.trials if t.trial.datetime_start]
        ends = [t.trial.datetime_complete for t in self.trials if t.trial.datetime_complete]
        if not starts or not ends:
            return None
        return (max(ends) - min(starts)).total_seconds()

    def time_span(self) -> tuple[Optional[datetime], Optional[datetime]]:
        starts = [t.trial.datetime_start for t in self.trials if t.trial.datetime_start]
        ends = [t.trial.datetime_complete for t in self.trials if t.trial.datetime_complete]
        return (min(starts) if starts else None, max(ends) if ends else None)


def _objectives(study: optuna.Study) -> list[Objective]:
    dirs = [d.name.lower() for d in study.directions]
    declared = study.user_attrs.get("objectives")
    names = study.metric_names or [None] * len(dirs)
    out = []
    for i, direction in enumerate(dirs):
        metric = None
        if isinstance(declared, list) and i < len(declared) and isinstance(declared[i], dict):
            metric = declared[i].get("metric")
        out.append(Objective(str(metric or names[i] or f"objective {i}"), direction))
    return out


def _resolve_run_dir(raw: Any, storage_url: str) -> Optional[Path]:
    """``run_dir`` as stored; relative paths are tried from here, then beside a SQLite storage file."""
    if not raw:
        return None
    path = Path(str(raw))
    if path.is_absolute() or path.is_dir():
        return path
    db = local_storage_file(storage_url)
    if db is not None:
        for base in (db.parent, *db.parent.parents):
            if (base / path).is_dir():
                return base / path
    return path


def _read_trial(trial: FrozenTrial, storage_url: str, store: Optional[StoreCache] = None) -> TrialData:
    record = TrialRecord.from_trial(trial)
    run_dir = _resolve_run_dir(record.run_dir, storage_url)
    files = TrialFiles(run_dir, record.outputs, store)
    guidance: Optional[list[Any]] = record.guidance
    config = record.config
    metrics_file = files.path("metrics.jsonl")
    metrics = read_jsonl(metrics_file) if metrics_file is not None else []
    if not guidance and (eval_file := files.path("eval.json")) is not None:
        try:
            ev = json.loads(eval_file.read_text())
        except (OSError, json.JSONDecodeError):
            ev = None
        rows = ev.get("rows") if isinstance(ev, dict) else None
        guidance = rows if isinstance(rows, list) else None
    if config is None and (config_file := files.path("config.yaml")) is not None:
        from ddpm.config import read_yaml

        config = read_yaml(config_file)
    rows = [r for r in (guidance or []) if isinstance(r, dict) and "omega" in r]
    rows.sort(key=lambda r: float(r["omega"]))
    return TrialData(trial, run_dir, metrics, rows, config if isinstance(config, dict) else None, files)


def _shown_path(raw: Any) -> Optional[str]:
    """A stored path as a report shows it: relative to here or under ~ (studies before this stored absolute ones)."""
    from ddpm.io import portable_path

    return portable_path(raw) if isinstance(raw, str) and raw else raw


def collect(study_name: str, storage: Optional[str] = None, cache: Optional[Path] = None) -> StudyData:
    """The study and its trials' files; with ``cache``, a file no run folder here holds is downloaded from the
    study's artifact store into ``cache`` (once: a cached artifact is reused)."""
    study, url = find_study(study_name, storage)
    with reading(url):
        location = study.user_attrs.get("artifact_store")
        store = StoreCache(location if isinstance(location, str) else None, cache) if cache is not None else None
        trials = [_read_trial(t, url, store) for t in study.get_trials(deepcopy=False)]
        spec = study.user_attrs.get("spec")
        baseline = study.user_attrs.get("baseline_trial")
    return StudyData(
        study=study, storage=redact_url(url), secrets=secrets_of(url),
        objectives=_objectives(study), trials=trials, spec=spec if isinstance(spec, dict) else {},
        base_experiment=_shown_path(study.user_attrs.get("base_experiment")),
        baseline_trial=int(baseline) if isinstance(baseline, (int, float)) else None,
    )
