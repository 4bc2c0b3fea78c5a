"""Run a study: create or resume it, then work through trials in one or several worker processes.

Budget: ``n_trials`` counts every trial of the study (complete, pruned, failed, running, waiting),
except failed trials that were retried (the retry takes their place), so a rerun after Ctrl-C runs
only what is left. A grid study (``sampler: grid``) enqueues all its points when it is created
(``ddpm.sweeps.grid``); there ``n_trials`` counts the trials started, and a worker only ever starts a
waiting trial. When the budget is used up a worker waits for trials still running elsewhere, failing
and retrying those whose heartbeat stopped, so the study ends with no trial lost.

Every check-then-write step is taken under the study lock (``ddpm.sweeps.locks``): creating the study
and enqueueing its trials, re-queueing interrupted trials, failing stale ones, and "is there budget
left?" up to the moment the started trial is claimed. So concurrent workers never enqueue a point
twice, never start one waiting trial twice, and never overshoot ``n_trials``.
"""
from __future__ import annotations

import copy
import os
import secrets
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import optuna
from optuna.trial import TrialState

from ddpm.errors import ConfigError
from ddpm.progress import StudyProgress, console
from ddpm.redact import redact, secrets_of
from ddpm.sweeps.artifacts import artifact_scheme, open_artifact_store, record_artifact_location
from ddpm.sweeps.grid import enqueue_grid
from ddpm.sweeps.locks import StudyLock, study_lock
from ddpm.sweeps.pruners import make_pruner
from ddpm.sweeps.record import TrialRecord, retried_numbers, state_name
from ddpm.sweeps.samplers import make_optuna_sampler
from ddpm.sweeps.spec import SweepSpec
from ddpm.sweeps.storage import Heartbeat, check_storage_file, default_storage_url, open_storage, redact_url, \
                                 scheme_of, uses_heartbeat

STORAGE_ENV = "DDPM_SWEEP_STORAGE"  # how `ddpm sweep --workers N` hands the URL to its workers (not argv: ps shows argv)


def storage_url(spec: SweepSpec) -> str:
    return spec.storage or default_storage_url(spec.out_dir, spec.study)


def _heartbeat(spec: SweepSpec, url: str) -> Optional[Heartbeat]:
    if not uses_heartbeat(url):
        return None
    return spec.heartbeat


def redacted_spec(spec: SweepSpec) -> dict[str, Any]:
    """The sweep file as stored with the study: URL passwords (the storage's wherever it recurs) masked."""
    storage = spec.raw.get("storage")
    return redact(spec.raw, secrets_of(storage) if isinstance(storage, str) else ())


def worker_seed(seed: Optional[int], worker: Optional[int]) -> Optional[int]:
    """Worker k of a sweep samples with seed + k: seeded workers with one seed would propose the same
    points. A worker started by hand (no index) adds a random 32-bit offset (its process id would repeat
    across machines and containers, which would then propose the same points)."""
    if seed is None or worker == 0:
        return seed
    return seed + (worker if worker is not None else 1_000_000 + secrets.randbits(32))


def _warn_local_store(url: str, location: str) -> None:
    """A study on a database server is meant for many machines; a folder store is on this machine's disk."""
    if scheme_of(url) in ("postgresql", "postgres", "mysql") and artifact_scheme(location) == "file":
        console.print(f"note: trial outputs go to the folder {location} on this machine; workers on other machines "
                      f"need a folder all of them mount at that path, or --artifacts s3://bucket/prefix",
                      soft_wrap=True, markup=False)


def open_sweep_study(spec: SweepSpec, url: Optional[str] = None, create: bool = True,
                     worker: Optional[int] = 0) -> optuna.Study:
    """The sweep's study in its storage: created (with its attributes and enqueued trials) if new.

    Runs under the study lock, so processes that start at once create it and enqueue its trials once."""
    url = url or storage_url(spec)
    check_storage_file(url)  # a damaged SQLite file is reported before a lock file is made beside it
    with study_lock(url, spec.study):
        return _open_sweep_study(spec, url, create, worker)


def _open_sweep_study(spec: SweepSpec, url: str, create: bool, worker: Optional[int]) -> optuna.Study:
    storage = open_storage(url, _heartbeat(spec, url))
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    kwargs = dict(spec.sampler_kwargs)
    if kwargs.get("seed") is not None and spec.sampler != "grid":  # a grid's seed orders its points, same everywhere
        # a resumed study must not replay the first run's random proposals: offset by the trials so far
        done = existing[spec.study].n_trials if spec.study in existing else 0
        kwargs["seed"] = worker_seed(kwargs["seed"], worker) + 1000 * done
    sampler = make_optuna_sampler(spec.sampler, kwargs, spec.space, len(spec.objectives))
    pruner = make_pruner(spec.pruner, spec.pruner_kwargs)
    if spec.study in existing:
        have = [d.name.lower() for d in existing[spec.study].directions]
        if have != spec.directions:
            raise ConfigError(f"{spec.path}: study {spec.study!r} already exists in {redact_url(url)} with directions "
                              f"{have}, the sweep file asks {spec.directions}; rename the study")
    elif not create:
        raise ConfigError(f"study {spec.study!r} is not in {redact_url(url)}; start it with `ddpm sweep {spec.path}`")
    if spec.artifacts and spec.study not in existing:
        open_artifact_store(spec.artifacts, create=True)  # a bad store (s3://: unreachable, denied) fails before the study exists
    study = optuna.create_study(study_name=spec.study, storage=storage, sampler=sampler, pruner=pruner,
                                directions=spec.directions, load_if_exists=True)
    note = spec.pin_base(study)  # trials start from the base config stored with the study
    location = record_artifact_location(study, spec.artifacts, spec.out_dir)  # one store per study (trial outputs)
    if spec.study not in existing and STORAGE_ENV not in os.environ:
        _warn_local_store(url, location)
    if note and STORAGE_ENV not in os.environ:  # workers started by `ddpm sweep --workers N` leave it to the parent
        console.print(f"note: {note}", soft_wrap=True, markup=False)
    if spec.sampler == "grid":
        enqueue_grid(study, spec)  # the points it does not hold yet (all of them when new)
    if "spec" not in study.user_attrs:
        study.set_user_attr("spec", redacted_spec(spec))
        study.set_user_attr("objectives", spec.objective_summary())
        from ddpm.io import portable_path  # no machine's absolute path in a study (reports show these)

        study.set_user_attr("base_experiment", portable_path(spec.base))
        study.set_user_attr("sweep_file", portable_path(spec.path))
        if spec.enqueue_baseline and spec.sampler != "grid":  # a grid enqueues the baseline's point first
            study.enqueue_trial(spec.baseline_params(), user_attrs=TrialRecord(baseline=True).to_user_attrs(),
                                skip_if_exists=True)
            waiting = [t for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                       if TrialRecord.from_trial(t).baseline]
            if waiting:
                study.set_user_attr("baseline_trial", waiting[0].number)
        for params in spec.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
    _name_metrics(study)
    return study


def _name_metrics(study: optuna.Study) -> None:
    """Optuna's metric names = the objectives the study was created with (optuna-dashboard and Optuna's plots
    show them instead of "Objective 0"); a study made before this gets them when it is next opened."""
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o["metric"] for o in study.user_attrs["objectives"]])


@dataclass
class Budget:
    live: int           # trials that count toward n_trials (failed ones that were retried do not)
    waiting: int
    running: int

    @property
    def started(self) -> int:
        return self.live - self.waiting

    @classmethod
    def of(cls, study: optuna.Study) -> "Budget":
        trials = study.get_trials(deepcopy=False)
        retried = retried_numbers(trials)
        live = [t for t in trials if t.number not in retried]
        return cls(len(live), sum(t.state == TrialState.WAITING for t in live),
                   sum(t.state == TrialState.RUNNING for t in live))

    def can_start(self, n_trials: Optional[int], grid: bool) -> bool:
        """Another trial may start: a grid starts waiting trials only, up to n_trials started; other samplers
        run waiting (enqueued, retried) trials first, then new ones while the study has fewer than n_trials."""
        if grid:
            return self.waiting > 0 and (n_trials is None or self.started < n_trials)
        return self.waiting > 0 or n_trials is None or self.live < n_trials


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Queue a retry (same params, resumes from its checkpoint) of each trial stopped by Ctrl-C."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=None, inherit_intermediate_values=True)
    out = []
    for t in trials:
        if t.state == TrialState.FAIL and TrialRecord.from_trial(t).interrupted and t.number not in retried:
            retry(study, copy.deepcopy(t))
            out.append(t.number)
    return out


def _report_trial(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
    from rich.markup import escape

    from ddpm.sweeps.metrics import omega_at_edge

    params = escape(", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in t.params.items()))
    record = TrialRecord.from_trial(t)
    reason = escape(str(record.failure_reason or ""))
    took = f"  {record.duration_s:.0f}s" if record.duration_s is not None else ""
    if t.state == TrialState.COMPLETE:
        names = [o["metric"] for o in study.user_attrs.get("objectives", [])] or ["value"] * len(t.values)
        vals = "  ".join(f"{n}={v:.4g}" for n, v in zip(names, t.values))
        edge = omega_at_edge(record.guidance, record.best_omega)
        console.print(f"[green]trial {t.number} complete[/]  {vals}  omega={record.best_omega}  "
                      f"({params}){took}" + (f"  [yellow]note: {escape(edge)}[/]" if edge else ""), soft_wrap=True)
    elif t.state == TrialState.PRUNED:
        console.print(f"[yellow]trial {t.number} pruned[/]  {reason}  ({params}){took}", soft_wrap=True)
    else:
        console.print(f"[red]trial {t.number} {state_name(t.state)}[/]  {reason}  "
                      f"({params}){took}", soft_wrap=True)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def run_worker(spec: SweepSpec, url: Optional[str] = None, n_trials: Optional[int] = None,
               timeout: Optional[float] = None, verbose: bool = True, worker: Optional[int] = 0,
               progress: Optional[StudyProgress] = None, objective: Any = None) -> int:
    """Run trials of the study until its budget is used up (or ``timeout`` s pass); returns trials run here.
    ``progress`` (the study bar of ``ddpm sweep``) hears of each trial's start and end. ``objective`` replaces
    the training objective (``ddpm.sweeps.coordinator_bench`` runs near-no-op trials through this loop)."""
    url = url or storage_url(spec)
    n_trials = n_trials if n_trials is not None else spec.n_trials
    timeout = timeout if timeout is not None else spec.timeout
    study = open_sweep_study(spec, url, worker=worker)
    if objective is None:
        from ddpm.sweeps.objective import SweepObjective  # imports torch: workers of the coordinator bench must not

        objective = SweepObjective(spec, verbose=verbose)
    heartbeat = _heartbeat(spec, url)
    lock = study_lock(url, spec.study)
    start, ran = time.monotonic(), 0
    try:
        while True:
            if timeout is not None and time.monotonic() - start >= timeout:
                break
            lock.acquire()  # held from the budget check until the trial is claimed (see _claimed)
            b = Budget.of(study)
            if b.can_start(n_trials, spec.sampler == "grid"):
                callbacks = [_report_trial]
                if progress is not None:
                    progress.trial_started()
                    callbacks.append(lambda _, t: progress.trial_finished(t.duration and t.duration.total_seconds()))
                study.optimize(_claimed(objective, lock), n_trials=1, catch=(Exception,), callbacks=callbacks)
                lock.release()  # if the trial never reached the objective
                ran += 1
                continue
            if b.running and heartbeat is not None:
                # the budget is spent but trials run elsewhere: retry any whose worker died, then wait
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
                lock.release()
                time.sleep(heartbeat.interval)
                continue
            lock.release()
            break
    finally:
        lock.release()
    return ran


def _claimed(objective: Any, lock: StudyLock) -> Any:
    """The objective, releasing the study lock first: by then ``study.optimize`` has failed stale trials
    and claimed its trial (popped a waiting one or created one), all under the lock."""
    def run(trial: optuna.Trial) -> Any:
        lock.release()
        return objective(trial)
    return run


def run_study(spec: SweepSpec, url: Optional[str] = None, workers: int = 1, n_trials: Optional[int] = None,
              timeout: Optional[float] = None, extra_worker_args: tuple[str, ...] = (),
              threads: Optional[int] = None, launcher: Any = None) -> optuna.Study:
    """Create or resume the study, requeue interrupted trials, run ``workers`` processes until the budget is spent:
    on this machine, or started by ``launcher`` (``ddpm.sweeps.launchers``: Ray tasks, a SLURM job array)."""
    url = url or storage_url(spec)
    study = open_sweep_study(spec, url)
    with study_lock(url, spec.study):
        again = requeue_interrupted(study)
        b = Budget.of(study)
    grid = f" ({b.waiting} grid point(s) waiting)" if spec.sampler == "grid" else ""
    console.print(f"study [bold]{spec.study}[/] in {redact_url(url)}: {b.started if grid else b.live} trial(s) "
                  f"so far{grid}, budget "
                  f"{n_trials or spec.n_trials or '-'} trial(s)" + (f", {timeout or spec.timeout:.0f}s" if (timeout or spec.timeout) else "")
                  + (f"; resuming interrupted trial(s) {again}" if again else ""), soft_wrap=True)
    if launcher is not None:
        with StudyProgress(spec.study, *_study_total(spec, b, n_trials)) as progress:
            launcher.launch(spec, url, workers, n_trials, timeout, extra_worker_args, watch=(study, progress))
    elif workers <= 1:
        with StudyProgress(spec.study, *_study_total(spec, b, n_trials)) as progress:
            run_worker(spec, url, n_trials, timeout, progress=progress)
    else:
        with StudyProgress(spec.study, *_study_total(spec, b, n_trials)) as progress:
            _run_subprocess_workers(spec, url, workers, n_trials, timeout, extra_worker_args, threads,
                                    watch=(study, progress))
    if spec.sampler == "grid":
        left = Budget.of(study).waiting
        if left:
            console.print(f"{left} grid point(s) not run (budget {n_trials or spec.n_trials} trial(s)"
                          + (f", {timeout or spec.timeout:.0f}s" if (timeout or spec.timeout) else "")
                          + "); rerun with a larger --n-trials to run them", soft_wrap=True)
    return study


def _study_total(spec: SweepSpec, b: Budget, n_trials: Optional[int]) -> tuple[Optional[int], int]:
    """(trials the study will hold when this run ends, None for a timeout-only budget; trials finished so far)."""
    n = n_trials or spec.n_trials
    if spec.sampler == "grid":  # n_trials counts started trials; the grid ends when no point waits
        return min(n or b.live, b.live), b.started - b.running
    return n, b.live - b.waiting - b.running


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _wait_for_workers(procs: list[subprocess.Popen], watch: Optional[tuple[optuna.Study, StudyProgress]],
                      poll_s: float = 3.0) -> list[int]:
    """Wait for the worker processes; meanwhile move the study bar (or print its plain lines) as their trials
    finish, read from the storage every ``poll_s`` seconds (the workers run with their own progress off)."""
    seen: Optional[set[int]] = None
    while True:
        running = any(p.poll() is None for p in procs)
        if watch is not None:
            seen = _show_finished(*watch, seen)
        if not running:   # one last look after the last worker exited: its final trials count too
            return [p.returncode for p in procs]
        try:
            next(p for p in procs if p.poll() is None).wait(timeout=poll_s)
        except (subprocess.TimeoutExpired, StopIteration):
            pass


def _show_finished(study: optuna.Study, progress: StudyProgress, seen: Optional[set[int]]) -> Optional[set[int]]:
    """Tell the study bar about the trials that finished since the last look (the first look only counts)."""
    try:
        done = {t.number: t for t in study.get_trials(deepcopy=False, states=FINISHED)}
    except Exception:  # a busy or locked storage: the bar waits for the next look, the workers do not
        return seen
    for n in sorted(set(done) - seen) if seen is not None else ():
        d = done[n].duration
        progress.trial_finished(d.total_seconds() if d is not None else None)
    return set(done)


def worker_command(spec: SweepSpec, url: str, n_trials: Optional[int], timeout: Optional[float],
                   extra: tuple[str, ...], threads: int) -> tuple[list[str], dict[str, str]]:
    """``ddpm worker`` for a launcher: (the arguments after the Python executable, without ``--worker-id``; the
    environment it adds: the storage URL, kept out of argv, and progress bars off)."""
    args = ["-m", "ddpm", "worker", str(spec.path), "--threads", str(threads), *extra]
    if n_trials is not None:
        args += ["--n-trials", str(n_trials)]
    if timeout is not None:
        args += ["--timeout", str(timeout)]
    return args, {STORAGE_ENV: url, "DDPM_PROGRESS": "0"}  # N workers' progress bars would garble the terminal


def _run_subprocess_workers(spec: SweepSpec, url: str, workers: int, n_trials: Optional[int],
                            timeout: Optional[float], extra: tuple[str, ...], threads: Optional[int] = None,
                            watch: Optional[tuple[optuna.Study, StudyProgress]] = None) -> None:
    threads = threads or max(1, (os.cpu_count() or 1) // workers)  # N workers share the cores, no oversubscription
    args, added = worker_command(spec, url, n_trials, timeout, extra, threads)
    args, env = [sys.executable, *args], {**os.environ, **added}
    procs = [subprocess.Popen(args + ["--worker-id", str(i)], env=env) for i in range(workers)]
    try:
        codes = _wait_for_workers(procs, watch)
    except KeyboardInterrupt:
        for p in procs:  # a terminal's Ctrl-C reaches them already; a signal sent to us alone does not
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    bad = [c for c in codes if c not in (0,)]
    if bad:
        console.print(f"[yellow]warning: {len(bad)} worker(s) exited with status {bad}; rerun the sweep to "
                      f"finish any trial they left[/]", soft_wrap=True)
