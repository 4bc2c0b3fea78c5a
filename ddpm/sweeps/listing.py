"""What ``ddpm studies`` and ``ddpm trials`` show, as data: the studies in storages with their trial
counts and best values, and one study's trial table (state, params, objective values with intervals,
best omega, duration, notes) with its verdict line. The CLI only renders these (``ddpm.cli.sweep``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import TrialState

from ddpm.errors import ConfigError
from ddpm.formatting import fmt, web_url
from ddpm.sweeps.record import TrialRecord, retried_as, state_name
from ddpm.sweeps.storage import default_storage_url, local_study_storages, open_storage_readonly, reading, redact_url

COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)


# ----------------------------------------------------------------------------------------------
# ddpm studies


@dataclass
class StudyListing:
    """One row of ``ddpm studies``."""

    study: str
    trials: str          # "3 complete, 1 failed" ("none" without trials)
    best: str            # "#2: 0.0412", "3 on the Pareto front", "-"
    started: str         # "2024-05-01 12:00" or "-"
    storage: str         # redacted URL


def study_storages(storage: Optional[str], out_dir: str | Path) -> list[str]:
    """``[storage]`` when given, else the default storage of every study under ``out_dir`` (``<study>/study.db``)."""
    if storage:
        return [storage]
    return local_study_storages(out_dir)


def list_studies(urls: list[str]) -> list[StudyListing]:
    """Every study in each storage, opened read-only."""
    out = []
    for url in urls:
        storage = open_storage_readonly(url)
        with reading(url):
            for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
                study = optuna.load_study(study_name=s.study_name, storage=storage)
                trials = study.get_trials(deepcopy=False)
                counts = [(sum(t.state == st for t in trials), state_name(st)) for st in COUNTED_STATES]
                out.append(StudyListing(s.study_name, ", ".join(f"{n} {name}" for n, name in counts if n) or "none",
                                        best_summary(study),
                                        f"{s.datetime_start:%Y-%m-%d %H:%M}" if s.datetime_start else "-",
                                        redact_url(url)))
    return out


def best_summary(study: optuna.Study) -> str:
    """``#3: 0.041`` (the best trial and its values), ``2 on the Pareto front``, or ``-`` before any completes."""
    try:
        best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    except ValueError:
        return "-"
    if len(best) != 1:
        return f"{len(best)} on the Pareto front"
    t = best[0]
    return f"#{t.number}: " + ", ".join(f"{v:.4g}" for v in t.values)


# ----------------------------------------------------------------------------------------------
# ddpm trials (and the table `ddpm sweep` prints when it ends)


@dataclass
class Column:
    name: str
    justify: str = "left"
    no_wrap: bool = False


@dataclass
class TrialRow:
    cells: list[str]
    style: Optional[str] = None      # "green" for a completed trial
    links: dict[int, str] = field(default_factory=dict)   # cell index -> URL (the W&B run's page)


@dataclass
class TrialTable:
    title: str
    columns: list[Column]
    rows: list[TrialRow] = field(default_factory=list)
    caption: Optional[str] = None    # throughput
    verdict: Optional[str] = None    # the best trial against the baseline, once a trial completed
    run_urls: list[str] = field(default_factory=list)   # "#3 https://wandb.ai/..." per trial with a W&B URL


def objective_names(study: optuna.Study) -> list[str]:
    """The objectives' metric names as the sweep recorded them; for a study made elsewhere its Optuna metric
    names, else ``value<i>``."""
    return ([o["metric"] for o in study.user_attrs.get("objectives", [])] or study.metric_names
            or [f"value{i}" for i in range(len(study.directions))])


def trial_table(study: optuna.Study, title: Optional[str] = None) -> TrialTable:
    """Every trial of the study: number, state, params, objective values (95% intervals where the guidance
    row has them), best omega, duration in seconds, its W&B run id (when any trial has one; a link to the run
    when online), and a note (best, tie, failure reason, omega at the edge of the grid, retried as)."""
    from ddpm.sweeps.metrics import omega_at_edge, throughput_text
    from ddpm.sweeps.verdict import objective_score, study_verdict, ties

    names = objective_names(study)
    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    records = {t.number: TrialRecord.from_trial(t) for t in trials}
    wandb = any(r.wandb_run_id for r in records.values())
    columns = ([Column("#", "right"), Column("state")] + [Column(k.split(".")[-1], "right") for k in keys]
               + [Column(n, "right", no_wrap=True) for n in names]   # "240 [221, 262]" stays on one line
               + [Column("omega", "right"), Column("s", "right")]
               + ([Column("W&B run", no_wrap=True)] if wandb else []) + [Column("note")])
    table = TrialTable(title or f"study {study.study_name}", columns, caption=throughput_text(trials))
    try:
        best = {t.number for t in study.best_trials}
    except ValueError:
        best = set()
    # the winner: single objective, Optuna's best; several, the Pareto trial best on the first objective
    ranked = sorted((t for t in trials if t.number in best and t.values),
                    key=lambda t: t.values[0] if study.directions[0].name == "MINIMIZE" else -t.values[0])
    winner_trial = ranked[0] if ranked else None
    winner = objective_score(winner_trial, 0, names[0]) if winner_trial is not None else None
    retries = retried_as(trials)
    for t in trials:
        record = records[t.number]
        state = state_name(t.state)
        if record.baseline:
            state += " (baseline)"
        if record.retried_trial is not None:
            state += f" (retry of {record.retried_trial})"
        complete = t.state == TrialState.COMPLETE
        scores = [objective_score(t, i, n) if complete else None for i, n in enumerate(names)]
        note = "best" if t.number in best else (record.failure_reason or "")
        if t.number not in best and complete and ties(winner, scores[:1])[0]:
            note = "tie (overlaps best)"
        edge = omega_at_edge(record.guidance, record.best_omega) if complete else None
        note = "; ".join(x for x in (note, edge) if x)
        if t.number in retries:
            note = f"{note or 'worker stopped sending heartbeats'}; retried as #{retries[t.number]}"
        dur = record.duration_s
        run = [record.wandb_run_id or "-"] if wandb else []
        row = TrialRow([str(t.number), state, *[_cell(t.params.get(k)) for k in keys],
                        *[s.text() if s is not None else "-" for s in scores],
                        _cell(record.best_omega), f"{dur:.0f}" if dur is not None else "-", *run, str(note)[:80]],
                       style="green" if complete else None)
        if wandb and web_url(record.wandb_url):
            row.links[len(row.cells) - 2] = str(record.wandb_url)
            table.run_urls.append(f"#{t.number} {record.wandb_url}")
        table.rows.append(row)
    if complete_any := [t for t in trials if t.state == TrialState.COMPLETE]:
        objectives = list(zip(names, [d.name.lower() for d in study.directions]))
        table.verdict = study_verdict(complete_any, objectives, study.user_attrs.get("baseline_trial"),
                                      winner_trial.number if winner_trial is not None else None)
    return table


def stored_trial_table(study_name: str, storage: Optional[str], out_dir: str | Path) -> TrialTable:
    """The trial table of an existing study (``ddpm trials``), opened read-only: its default storage
    ``<out_dir>/<study>/study.db`` unless ``storage`` is given. A missing storage or study is a ConfigError."""
    url, study = load_stored_study(study_name, storage, out_dir)
    with reading(url):
        return trial_table(study)


def load_stored_study(study_name: str, storage: Optional[str], out_dir: str | Path) -> tuple[str, optuna.Study]:
    """(storage URL, study) of an existing study, opened read-only: its default storage
    ``<out_dir>/<study>/study.db`` unless ``storage`` is given. A missing storage or study is a ConfigError."""
    url = storage or default_storage_url(str(out_dir), study_name)
    if not storage and not Path(url.split(":///", 1)[1]).is_file():
        raise ConfigError(f"no study {study_name!r} under {out_dir}/ (no {url.split(':///', 1)[1]}); "
                          f"pass --storage for studies stored elsewhere")
    store = open_storage_readonly(url)
    with reading(url):
        names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
        if study_name not in names:
            raise ConfigError(f"study {study_name!r} is not in {redact_url(url)}; studies there: "
                              f"{', '.join(names) or 'none'}")
        return url, optuna.load_study(study_name=study_name, storage=store)


def no_trial_completed(study: optuna.Study, storage: Optional[str] = None) -> Optional[str]:
    """None when the study has a completed trial; else one line saying why not (for exit code 1)."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.COMPLETE for t in trials):
        return None
    failed = [t for t in trials if t.state == TrialState.FAIL]
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    first = ""
    if failed:
        reason = TrialRecord.from_trial(failed[0]).reason() or "no reason recorded"
        first = f" (trial {failed[0].number}: {' '.join(str(reason).split())[:200]})"
    others = "".join(f", {n} {name}" for n, name in ((sum(t.state == TrialState.RUNNING for t in trials), "still running"),
                                                     (sum(t.state == TrialState.WAITING for t in trials), "waiting")) if n)
    where = " --storage URL" if storage else ""
    return (f"no trial completed: {len(failed)} failed{first}, {pruned} pruned{others}; "
            f"see `ddpm trials {study.study_name}{where}`")


def _cell(v: Any) -> str:
    return fmt(v, digits=3, missing="-")
