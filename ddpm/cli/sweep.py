"""``ddpm sweep``, ``ddpm worker``, ``ddpm studies``, ``ddpm trials``: Optuna studies from sweep YAML."""
from __future__ import annotations

import argparse
import os
from typing import Any, Optional

from ddpm.cli import Command, number, register_command
from ddpm.errors import ConfigError


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help="storage URL: sqlite:///file.db (default runs/<study>/study.db), "
                   "postgresql://user:pw@host/db, journal:path.log")
    p.add_argument("--n-trials", type=number(1, integer=True), help="override the sweep's n_trials (the study's total)")
    p.add_argument("--timeout", type=number(0, low_open=True), help="stop starting trials after this many seconds")
    p.add_argument("--no-wandb", action="store_true", help="same as tracking.wandb=disabled for every trial")
    p.add_argument("--artifacts", metavar="PATH", help="Optuna artifact store for the trials' outputs: checkpoints, "
                   "metrics, grids (what a retry on another machine and ddpm report read; default: the sweep's "
                   "artifacts key, else runs/<study>/artifacts)")


def _load(args: argparse.Namespace, storage: Optional[str] = None):
    from ddpm.sweeps.spec import load_sweep

    spec = load_sweep(args.sweep, storage=storage if storage is not None else args.storage)
    if args.no_wandb:
        spec.overrides["tracking.wandb"] = "disabled"
    if args.artifacts is not None:
        from ddpm.sweeps.spec import check_artifact_location

        spec.artifacts = check_artifact_location(args.artifacts, "--artifacts")
    if args.n_trials is not None and args.n_trials < 1:
        raise ConfigError(f"--n-trials {args.n_trials}: must be >= 1")
    return spec


@register_command("sweep")
class Sweep(Command):
    """Start or resume an Optuna study from a sweep YAML, e.g.
    ddpm sweep sweeps/quickstart.yaml
    ddpm sweep sweeps/schedules.yaml --dry-run      # check it, show the first trials, run nothing
    ddpm sweep sweeps/schedules.yaml --workers 2
    ddpm sweep sweeps/schedules.yaml --storage postgresql://user:pw@db-host/optuna
    ddpm sweep sweeps/schedules.yaml --storage postgresql://... --launcher ray --address auto --workers 8
    ddpm sweep sweeps/schedules.yaml --storage postgresql://... --launcher slurm --workers 8 --partition gpu --time 240
Each trial trains with the same train() as `ddpm train` into runs/<study>/trial-<n>/, then scores its
guidance grid. Ctrl-C stops cleanly; running the same command again resumes the study."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("sweep", help="sweep YAML (sweeps/*.yaml)")
        _add_common(p)
        p.add_argument("--workers", type=number(1, integer=True), default=1,
                       help="worker processes (default 1): on this machine, or started by --launcher")
        _add_launcher(p)
        p.add_argument("--no-report", action="store_true", help="skip the report even if the sweep asks for one")
        p.add_argument("--no-confirm", action="store_true", help="skip the sweep's confirm: stage (re-scoring on the test split)")
        p.add_argument("--threads", type=number(1, integer=True), help="torch CPU threads per worker (default: cores / workers)")
        p.add_argument("--dry-run", action="store_true", help="check the file; print the base config, the space, "
                       "the budget and the first trials' configs; create, train and write nothing")

    def take_action(self, args: argparse.Namespace) -> int:
        import time

        if args.dry_run:
            from ddpm.sweeps.dry_run import dry_run_lines

            spec = _load(args)
            print("\n".join(dry_run_lines(spec, args.n_trials, args.timeout)))
            if args.launcher == "slurm":
                print(_sbatch_preview(spec, _launcher_options(args, spec), args.workers))
            return 0

        from ddpm.progress import console
        from ddpm.sweeps.finish import finish_study
        from ddpm.sweeps.runner import run_study, storage_url
        from ddpm.sweeps.storage import reading, redact_url

        if args.workers < 1:
            raise ConfigError(f"--workers {args.workers}: must be >= 1")
        spec = _load(args)
        if spec.report and not args.no_report:  # fail now, not after the trials
            from ddpm.cli.report import require_report_libraries

            require_report_libraries()
        url = storage_url(spec)
        launcher = _launcher(args, spec, url)  # checked and connected before the study is touched
        if args.threads and args.workers == 1:
            import torch

            torch.set_num_threads(args.threads)
        extra = (("--no-wandb",) if args.no_wandb else ()) + (("--artifacts", args.artifacts) if args.artifacts else ())
        start = time.time()
        try:
            with reading(url):
                study = run_study(spec, url, workers=args.workers, n_trials=args.n_trials, timeout=args.timeout,
                                  extra_worker_args=extra, threads=args.threads, launcher=launcher)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted: the study is saved in {redact_url(url)}; run "
                          f"`ddpm sweep {args.sweep}` again to resume it[/]", soft_wrap=True)
            return 130
        finally:
            if launcher is not None:
                launcher.close()
        with reading(url):
            print_trials(study, title=f"study {spec.study}  ({time.time() - start:.0f}s)")
        why = finish_study(study, spec, url, confirm=not args.no_confirm, report=not args.no_report)
        if why:
            console.print(f"ddpm sweep: {why}", style="red", markup=False, highlight=False, soft_wrap=True)
            return 1
        return 0


# --launcher flags: each overrides the sweep file's launcher: key of the same name (ddpm.sweeps.launchers.options)
_LAUNCHER_FLAGS = {"address": "--address", "partition": "--partition", "time": "--time",
                   "cpus_per_worker": "--cpus-per-worker", "gpus_per_worker": "--gpus-per-worker", "mem_gb": "--mem-gb"}


def _add_launcher(p: argparse.ArgumentParser) -> None:
    p.add_argument("--launcher", default="local", help="who starts the workers: local (default: processes on this "
                   "machine), ray (Ray tasks), slurm (a SLURM job array through submitit)")
    p.add_argument("--address", help="ray: the cluster (auto, host:port, ray://host:10001; default: this machine)")
    p.add_argument("--partition", help="slurm: partition (default: the sweep's launcher.partition)")
    p.add_argument("--time", type=number(1, integer=True), help="slurm: minutes per worker job (default 60)")
    p.add_argument("--cpus-per-worker", type=number(1, integer=True), help="ray/slurm: CPUs (and torch threads) per worker")
    p.add_argument("--gpus-per-worker", type=number(0), help="ray/slurm: GPUs per worker (ray: a fraction shares "
                   "a GPU; default 1 when the cluster has GPUs)")
    p.add_argument("--mem-gb", type=number(0, low_open=True), help="slurm: memory per worker job (GB)")


def _launcher_options(args: argparse.Namespace, spec: Any) -> Any:
    """The sweep file's launcher: section with the flags given on top; a flag another launcher reads is refused."""
    import dataclasses

    from ddpm.sweeps.launchers import LAUNCHERS

    LAUNCHERS.lookup(args.launcher, "--launcher")
    uses = LAUNCHERS.meta[args.launcher]["uses"]
    given = {k: getattr(args, k) for k in _LAUNCHER_FLAGS if getattr(args, k) is not None}
    for k in given:
        if k not in uses:
            users = [n for n in LAUNCHERS if k in LAUNCHERS.meta[n]["uses"]]
            raise ConfigError(f"{_LAUNCHER_FLAGS[k]}: only with --launcher {' or '.join(users)} "
                              f"(this sweep uses --launcher {args.launcher})")
    if args.threads and args.launcher != "local":
        raise ConfigError(f"--threads: only with --launcher local; with --launcher {args.launcher} use --cpus-per-worker")
    return dataclasses.replace(spec.launcher, **given)


def _launcher(args: argparse.Namespace, spec: Any, url: str) -> Any:
    from ddpm.sweeps.launchers import LAUNCHERS

    options = _launcher_options(args, spec)
    return LAUNCHERS[args.launcher](options).connect(url)


def _sbatch_preview(spec: Any, options: Any, workers: int) -> str:
    """The job script `--launcher slurm` would submit (rendered in a scratch folder: the dry run writes nothing)."""
    import tempfile
    from pathlib import Path

    from ddpm.sweeps.launchers import sbatch_script

    folder = str(Path(options.folder or spec.study_dir / "slurm").absolute())
    with tempfile.TemporaryDirectory() as scratch:
        text = sbatch_script(options, scratch, spec.study, workers).replace(scratch, folder)
    return f"sbatch script ({workers} worker(s), one array task each):\n{text}"


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


@register_command("studies")
class Studies(Command):
    """List the studies in a storage (default: every runs/*/study.db) with their trial counts and best values."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--storage", help="storage URL (default: every runs/<study>/study.db)")
        p.add_argument("--out-dir", default="runs", help="where default storages live (default runs)")

    def take_action(self, args: argparse.Namespace) -> int:
        from rich.table import Table

        from ddpm.progress import console
        from ddpm.sweeps.listing import list_studies, study_storages

        urls = study_storages(args.storage, args.out_dir)
        if not urls:
            console.print(f"no studies under {args.out_dir}/ (start one with `ddpm sweep sweeps/quickstart.yaml`)", soft_wrap=True)
            return 0
        table = Table(title="studies")
        for col in ("study", "trials", "best", "started", "storage"):
            table.add_column(col)
        for s in list_studies(urls):
            table.add_row(s.study, s.trials, s.best, s.started, s.storage)
        console.print(table)
        return 0


def print_trials(study: Any, title: Optional[str] = None) -> None:
    """Print the study's trial table (``ddpm.sweeps.listing.trial_table``) and its verdict line."""
    from ddpm.sweeps.listing import trial_table

    _print_trial_table(trial_table(study, title))


def _print_trial_table(data: Any) -> None:
    from rich.style import Style
    from rich.table import Table
    from rich.text import Text

    from ddpm.progress import console

    table = Table(title=data.title, caption=data.caption)
    for c in data.columns:
        table.add_column(c.name, justify=c.justify, no_wrap=c.no_wrap)
    for row in data.rows:  # a W&B run id is a link to its page in terminals that support links
        table.add_row(*[Text(c, style=Style(link=row.links[i])) if i in row.links else c
                        for i, c in enumerate(row.cells)], style=row.style)
    console.print(table)
    for line in data.run_urls:  # the URLs themselves, for logs and terminals without links
        console.print(f"W&B run {line}", soft_wrap=True, markup=False, highlight=False)
    if data.verdict is not None:
        console.print(f"verdict: {data.verdict}", soft_wrap=True)


@register_command("trials")
class Trials(Command):
    """Show every trial of a study: state, params, objective values, best omega, duration, failure reason."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("study", help="study name")
        p.add_argument("--storage", help="storage URL (default runs/<study>/study.db)")
        p.add_argument("--out-dir", default="runs", help="where the default storage lives (default runs)")

    def take_action(self, args: argparse.Namespace) -> int:
        from ddpm.sweeps.listing import stored_trial_table

        _print_trial_table(stored_trial_table(args.study, args.storage, args.out_dir))
        return 0
