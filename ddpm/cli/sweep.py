"""``ddpm sweep``, ``ddpm worker``, ``ddpm studies``, ``ddpm trials``: Optuna studies from sweep YAML."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Optional

from ddpm.cli import Command, number, register_command
from ddpm.errors import ConfigError
from ddpm.formatting import fmt


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help="storage URL: sqlite:///file.db (default runs/<study>/study.db), "
                   "postgresql://user:pw@host/db, journal:path.log")
    p.add_argument("--n-trials", type=number(1, integer=True), help="override the sweep's n_trials (the study's total)")
    p.add_argument("--timeout", type=number(0, low_open=True), help="stop starting trials after this many seconds")
    p.add_argument("--no-wandb", action="store_true", help="same as tracking.wandb=disabled for every trial")


def _load(args: argparse.Namespace, storage: Optional[str] = None):
    from ddpm.sweeps.spec import load_sweep

    spec = load_sweep(args.sweep, storage=storage if storage is not None else args.storage)
    if args.no_wandb:
        spec.overrides["tracking.wandb"] = "disabled"
    if args.n_trials is not None and args.n_trials < 1:
        raise ConfigError(f"--n-trials {args.n_trials}: must be >= 1")
    return spec


@register_command("sweep")
class Sweep(Command):
    """Start or resume an Optuna study from a sweep YAML, e.g.
    ddpm sweep sweeps/quickstart.yaml
    ddpm sweep sweeps/schedules.yaml --workers 2
    ddpm sweep sweeps/schedules.yaml --storage postgresql://user:pw@db-host/optuna
Each trial trains with the same train() as `ddpm train` into runs/<study>/trial-<n>/, then scores its
guidance grid. Ctrl-C stops cleanly; running the same command again resumes the study."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("sweep", help="sweep YAML (sweeps/*.yaml)")
        _add_common(p)
        p.add_argument("--workers", type=number(1, integer=True), default=1, help="worker processes on this machine (default 1)")
        p.add_argument("--no-report", action="store_true", help="skip the report even if the sweep asks for one")
        p.add_argument("--no-confirm", action="store_true", help="skip the sweep's confirm: stage (re-scoring on the test split)")
        p.add_argument("--threads", type=number(1, integer=True), help="torch CPU threads per worker (default: cores / workers)")

    def take_action(self, args: argparse.Namespace) -> int:
        import time

        from ddpm.progress import console
        from ddpm.sweeps.runner import run_study, storage_url
        from ddpm.sweeps.storage import reading, redact_url

        if args.workers < 1:
            raise ConfigError(f"--workers {args.workers}: must be >= 1")
        spec = _load(args)
        url = storage_url(spec)
        if args.threads and args.workers == 1:
            import torch

            torch.set_num_threads(args.threads)
        extra = ("--no-wandb",) if args.no_wandb else ()
        start = time.time()
        try:
            with reading(url):
                study = run_study(spec, url, workers=args.workers, n_trials=args.n_trials, timeout=args.timeout,
                                  extra_worker_args=extra, threads=args.threads)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted: the study is saved in {redact_url(url)}; run "
                          f"`ddpm sweep {args.sweep}` again to resume it[/]", soft_wrap=True)
            return 130
        with reading(url):
            print_trials(study, title=f"study {spec.study}  ({time.time() - start:.0f}s)")
        _log_study(study, spec, console)
        why = no_trial_completed(study, spec.storage)
        if why:
            # no report then: it would only replace reports/<study>/ (maybe an earlier good one) with a
            # report that has no best config; `ddpm trials` shows the failures, `ddpm report` still works
            console.print(f"ddpm sweep: {why}", style="red", markup=False, highlight=False, soft_wrap=True)
            return 1
        if spec.confirm is not None and not args.no_confirm:
            from ddpm.sweeps.confirm import run_confirmation

            with reading(url):
                run_confirmation(study, spec, log=lambda line: console.print(line, markup=False, soft_wrap=True))
        if spec.report and not args.no_report:
            _write_report(spec.study, url, console)
        return 0


def no_trial_completed(study: Any, storage: Optional[str] = None) -> Optional[str]:
    """None when the study has a completed trial; else one line saying why not (for exit code 1)."""
    import optuna

    TS = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TS.COMPLETE for t in trials):
        return None
    failed = [t for t in trials if t.state == TS.FAIL]
    pruned = sum(t.state == TS.PRUNED for t in trials)
    first = ""
    if failed:
        reason = failed[0].user_attrs.get("failure_reason") or failed[0].system_attrs.get("fail_reason") or "no reason recorded"
        first = f" (trial {failed[0].number}: {' '.join(str(reason).split())[:200]})"
    others = "".join(f", {n} {name}" for n, name in ((sum(t.state == TS.RUNNING for t in trials), "still running"),
                                                     (sum(t.state == TS.WAITING for t in trials), "waiting")) if n)
    where = " --storage URL" if storage else ""
    return (f"no trial completed: {len(failed)} failed{first}, {pruned} pruned{others}; "
            f"see `ddpm trials {study.study_name}{where}`")


def _log_study(study: Any, spec: Any, console: Any) -> None:
    """One study-level W&B run (optimisation history, importances) when tracking is on."""
    from ddpm.tracking import log_study

    cfg = spec.base_config()
    if cfg.tracking.wandb == "disabled":
        return
    try:
        log_study(study, group=spec.study, cfg=cfg)
    except Exception as e:  # tracking never turns a finished study into an error
        console.print(f"[yellow]warning: could not log the study to W&B: {e}[/]", soft_wrap=True)


def _write_report(study: str, url: str, console: Any) -> None:
    from ddpm.report import default_report_dir, write_report

    out = default_report_dir(study)
    path = write_report(study, url, out)
    console.print(f"report: {path or out}", soft_wrap=True)


@register_command("worker")
class Worker(Command):
    """Join a running study as one more worker (on this or another machine), e.g.
    ddpm worker sweeps/schedules.yaml --storage postgresql://user:pw@db-host/optuna
The URL may also come from the DDPM_SWEEP_STORAGE environment variable (keeps the password out of `ps`)."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("sweep", help="sweep YAML (the same file the study was started from)")
        _add_common(p)
        p.add_argument("--threads", type=number(1, integer=True), help="torch CPU threads for this worker")
        p.add_argument("--worker-id", type=number(0, integer=True), help=argparse.SUPPRESS)

    def take_action(self, args: argparse.Namespace) -> int:
        from ddpm.sweeps.runner import STORAGE_ENV, run_worker, storage_url
        from ddpm.sweeps.storage import reading

        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        spec = _load(args, storage=args.storage or os.environ.get(STORAGE_ENV))
        try:
            worker = int(args.worker_id) if args.worker_id is not None else None
            with reading(storage_url(spec)):
                run_worker(spec, storage_url(spec), n_trials=args.n_trials, timeout=args.timeout, worker=worker)
        except KeyboardInterrupt:
            return 130
        return 0


def _study_storages(storage: Optional[str], out_dir: str) -> list[str]:
    if storage:
        return [storage]
    from ddpm.sweeps.storage import local_study_storages

    return local_study_storages(out_dir)


@register_command("studies")
class Studies(Command):
    """List the studies in a storage (default: every runs/*/study.db) with their trial counts and best values."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--storage", help="storage URL (default: every runs/<study>/study.db)")
        p.add_argument("--out-dir", default="runs", help="where default storages live (default runs)")

    def take_action(self, args: argparse.Namespace) -> int:
        import optuna
        from rich.table import Table

        from ddpm.progress import console
        from ddpm.sweeps.storage import open_storage_readonly, reading, redact_url

        urls = _study_storages(args.storage, args.out_dir)
        if not urls:
            console.print(f"no studies under {args.out_dir}/ (start one with `ddpm sweep sweeps/quickstart.yaml`)", soft_wrap=True)
            return 0
        table = Table(title="studies")
        for col in ("study", "trials", "best", "started", "storage"):
            table.add_column(col)
        TS = optuna.trial.TrialState
        for url in urls:
            storage = open_storage_readonly(url)
            with reading(url):
                for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
                    study = optuna.load_study(study_name=s.study_name, storage=storage)
                    trials = study.get_trials(deepcopy=False)
                    counts = [(sum(t.state == st for t in trials), st.name.lower())
                              for st in (TS.COMPLETE, TS.PRUNED, TS.FAIL, TS.RUNNING, TS.WAITING)]
                    table.add_row(s.study_name, ", ".join(f"{n} {name}" for n, name in counts if n) or "none",
                                  _best(study), f"{s.datetime_start:%Y-%m-%d %H:%M}" if s.datetime_start else "-",
                                  redact_url(url))
        console.print(table)
        return 0


def _best(study: Any) -> str:
    try:
        best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    except ValueError:
        return "-"
    if len(best) != 1:
        return f"{len(best)} on the Pareto front"
    t = best[0]
    return f"#{t.number}: " + ", ".join(f"{v:.4g}" for v in t.values)


def print_trials(study: Any, title: Optional[str] = None) -> None:
    import optuna
    from rich.table import Table

    from ddpm.progress import console
    from ddpm.sweeps.metrics import omega_at_edge

    names = [o["metric"] for o in study.user_attrs.get("objectives", [])] or \
        [f"value{i}" for i in range(len(study.directions))]
    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    table = Table(title=title or f"study {study.study_name}")
    table.add_column("#", justify="right")
    table.add_column("state")
    for k in keys:
        table.add_column(k.split(".")[-1], justify="right")
    for n in names:
        table.add_column(n, justify="right", no_wrap=True)   # "240 [221, 262]" stays on one line
    table.add_column("omega", justify="right")
    table.add_column("s", justify="right")
    table.add_column("note")
    best = set()
    try:
        best = {t.number for t in study.best_trials}
    except ValueError:
        pass
    from ddpm.sweeps.verdict import objective_score, study_verdict, ties

    # the winner: single objective, Optuna's best; several, the Pareto trial best on the first objective
    ranked = sorted((t for t in trials if t.number in best and t.values),
                    key=lambda t: t.values[0] if study.directions[0].name == "MINIMIZE" else -t.values[0])
    winner_trial = ranked[0] if ranked else None
    winner = objective_score(winner_trial, 0, names[0]) if winner_trial is not None else None
    retried_as = {n: t.number for t in trials for n in t.system_attrs.get("retry_history", [])[-1:]}
    for t in trials:
        state = t.state.name.lower()
        if t.user_attrs.get("baseline"):
            state += " (baseline)"
        if t.system_attrs.get("retry_history"):
            state += f" (retry of {t.system_attrs['retry_history'][-1]})"
        complete = t.state == optuna.trial.TrialState.COMPLETE
        scores = [objective_score(t, i, n) if complete else None for i, n in enumerate(names)]
        values = [s.text() if s is not None else "-" for s in scores]
        dur = t.user_attrs.get("duration_s")
        note = "best" if t.number in best else (t.user_attrs.get("failure_reason") or "")
        if t.number not in best and complete and ties(winner, scores[:1])[0]:
            note = "tie (overlaps best)"
        edge = omega_at_edge(t.user_attrs.get("guidance") or [], t.user_attrs.get("best_omega")) if complete else None
        note = "; ".join(x for x in (note, edge) if x)
        if t.number in retried_as:
            note = f"{note or 'worker stopped sending heartbeats'}; retried as #{retried_as[t.number]}"
        style = "green" if t.state == optuna.trial.TrialState.COMPLETE else None
        table.add_row(str(t.number), state, *[_fmt(t.params.get(k)) for k in keys], *values,
                      _fmt(t.user_attrs.get("best_omega")), f"{dur:.0f}" if isinstance(dur, (int, float)) else "-",
                      str(note)[:80], style=style)
    from ddpm.sweeps.metrics import throughput_text

    table.caption = throughput_text(trials)
    console.print(table)
    if complete_any := [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]:
        objectives = list(zip(names, [d.name.lower() for d in study.directions]))
        line = study_verdict(complete_any, objectives, study.user_attrs.get("baseline_trial"),
                             winner_trial.number if winner_trial is not None else None)
        console.print(f"verdict: {line}", soft_wrap=True)


def _fmt(v: Any) -> str:
    return fmt(v, digits=3, missing="-")


@register_command("trials")
class Trials(Command):
    """Show every trial of a study: state, params, objective values, best omega, duration, failure reason."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("study", help="study name")
        p.add_argument("--storage", help="storage URL (default runs/<study>/study.db)")
        p.add_argument("--out-dir", default="runs", help="where the default storage lives (default runs)")

    def take_action(self, args: argparse.Namespace) -> int:
        import optuna

        from ddpm.sweeps.storage import default_storage_url, open_storage_readonly, reading, redact_url

        url = args.storage or default_storage_url(args.out_dir, args.study)
        if not args.storage and not Path(url.split(":///", 1)[1]).is_file():
            raise ConfigError(f"no study {args.study!r} under {args.out_dir}/ (no {url.split(':///', 1)[1]}); "
                              f"pass --storage for studies stored elsewhere")
        storage = open_storage_readonly(url)
        with reading(url):
            names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
            if args.study not in names:
                raise ConfigError(f"study {args.study!r} is not in {redact_url(url)}; studies there: "
                                  f"{', '.join(names) or 'none'}")
            print_trials(optuna.load_study(study_name=args.study, storage=storage))
        return 0
