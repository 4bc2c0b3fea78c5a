"""``ddpm sweep FILE --dry-run``: what a sweep would run, computed without a study or a training step.

The file is checked as ``ddpm sweep`` checks it; the first trials are drawn from a throwaway in-memory
Optuna study built as the real one is (same sampler and seed, the grid or the baseline and ``enqueue:``
points first), so nothing is created, trained or written. Later proposals of an adaptive sampler (TPE,
CMA-ES) depend on the trials' results, which a dry run does not have.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

import optuna
import yaml

from ddpm.config import _flat
from ddpm.io import portable_path
from ddpm.sweeps.grid import enqueue_grid
from ddpm.sweeps.record import TrialRecord
from ddpm.sweeps.samplers import make_optuna_sampler
from ddpm.sweeps.space import suggest_params
from ddpm.sweeps.spec import SweepSpec, trial_config
from ddpm.sweeps.storage import default_storage_url, redact_url


def budget_line(spec: SweepSpec, n_trials: Optional[int], timeout: Optional[float]) -> str:
    n, limit = n_trials or spec.n_trials, timeout or spec.timeout
    parts = [f"grid of {spec.grid_size()} point(s)"] if spec.sampler == "grid" else []
    parts.append(f"n_trials {n}" if n else "no trial limit")
    if limit:
        parts.append(f"timeout {limit:g}s")
    return "budget: " + ", ".join(parts)


def throwaway_study(spec: SweepSpec) -> optuna.Study:
    """An in-memory study with the sweep's sampler (seed as a new study's) and its enqueued trials."""
    sampler = make_optuna_sampler(spec.sampler, dict(spec.sampler_kwargs), spec.space, len(spec.objectives))
    study = optuna.create_study(sampler=sampler, directions=spec.directions)
    if spec.sampler == "grid":
        enqueue_grid(study, spec)
        return study
    if spec.enqueue_baseline:
        study.enqueue_trial(spec.baseline_params(), user_attrs=TrialRecord(baseline=True).to_user_attrs())
    for params in spec.enqueue:
        study.enqueue_trial(params, skip_if_exists=True)
    return study


def first_trials(spec: SweepSpec, count: int) -> list[tuple[int, dict[str, Any], dict[str, Any], bool]]:
    """(number, params, the trial config's other values that differ from the base config, baseline?) of the
    first ``count`` trials; a config the trial would reject shows as {"error": ...}."""
    base = _flat(spec.base_config().to_dict())
    study, out = throwaway_study(spec), []
    if spec.sampler == "grid":  # a grid study runs its enqueued points only
        count = min(count, len(study.get_trials(deepcopy=False)))
    for _ in range(count):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask()
            params = suggest_params(spec.space, trial)
        try:
            flat = _flat(trial_config(spec, params, f"trial-{trial.number}").to_dict())
            changed = {k: v for k, v in flat.items() if base.get(k, object()) != v and k not in params}
        except Exception as e:  # the trial would fail with this message; the sweep itself is valid
            changed = {"error": str(e)}
        out.append((trial.number, params, changed, TrialRecord.from_trial(trial).baseline))
    return out


def dry_run_lines(spec: SweepSpec, n_trials: Optional[int] = None, timeout: Optional[float] = None,
                  show: int = 3) -> list[str]:
    """The dry run's report, line by line."""
    url = spec.storage or default_storage_url(spec.out_dir, spec.study)
    objectives = ", ".join(f"{m.name} ({d})" for m, d in spec.objectives)
    lines = [f"{spec.path}: valid (dry run: no study created, nothing trained or written)",
             f"study: {spec.study}  storage: {redact_url(url)}  runs: {spec.study_dir}/trial-N",
             f"objectives: {objectives}",
             f"sampler: {spec.sampler} {spec.sampler_kwargs or ''}  pruner: {spec.pruner} {spec.pruner_kwargs or ''}",
             budget_line(spec, n_trials, timeout),
             f"base config ({portable_path(spec.base)} + the sweep's overrides):"]
    lines += ["  " + ln for ln in yaml.safe_dump(spec.base_config().to_dict(), sort_keys=False).splitlines()]
    lines.append("space:" if spec.space else "space: (empty: every trial runs the base config)")
    for key, searched in spec.space.items():
        when = f"  when {searched.describe_when()}" if searched.when else ""
        lines.append(f"  {key}: {searched.describe()}{when}")
    n = n_trials or spec.n_trials
    trials = first_trials(spec, min(show, n) if n else show)
    lines.append(f"first {len(trials)} trial(s) as a new study would start them (each trial's config is the base "
                 f"config with these values):")
    for number, params, changed, baseline in trials:
        values = {**params, **changed}
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
        lines.append(f"  trial {number}{' (baseline)' if baseline else ''}: {shown}")
    return lines
