"""The coordinator's limits: N worker processes on one study in one storage (PostgreSQL), trials that do
almost no work, so what is measured is the coordination itself (``ddpm bench coordinator``).

Each point (workers x sampler) runs a fresh study named ``coordbench-<sampler>-w<N>-<token>`` built from a
real sweep file (its search space, pruner, guidance grid; the sampler, budget and heartbeat overridden),
with ``workers x trials_per_worker`` trials, and deletes it afterwards. The workers
(``ddpm.sweeps.coordinator_worker``) run the product's worker loop with a near-no-op objective and time
each step; they start, import and open nothing until all of them are ready, then start together.

Figures per point: trials/hour over the window from the start to the last finished trial, p50/p95 ms of
each step (study-lock wait and hold, budget check, ask, tell, user-attribute write, per-epoch report,
heartbeat write, stale-trial check) and of the sampler per trial (early vs late trials: TPE's cost grows
with the finished trials), CPU (all cores, the workers', the server's), the server's connections and lock
waiters, and errors (a worker the server refused, e.g. past ``max_connections``).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from ddpm.config import read_yaml
from ddpm.sweeps.coordinator_probe import Probe
from ddpm.sweeps.coordinator_worker import OPS


@dataclass(frozen=True)
class Point:
    workers: int
    sampler: str = "tpe"
    trials_per_worker: int = 10
    heartbeat: tuple[int, int] = (10, 30)   # interval, grace period (s)
    work_s: float = 0.0


def percentile(values: list[float], q: float) -> Optional[float]:
    """The q-th percentile (nearest rank) of ``values``, None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def _ms(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": _r(percentile(values, 50)), "p95": _r(percentile(values, 95)),
            "mean": _r(sum(values) / len(values)) if values else None}


def _r(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(v, 2)


def bench_sweep_file(sweep: Path, point: Point, study: str, out_dir: Path) -> Path:
    """The sweep file a point's workers load: ``sweep`` with its study, sampler, budget and heartbeat replaced
    (its base made absolute; other sampler options kept when the sampler is the file's own)."""
    raw = read_yaml(sweep)
    sampler = raw.get("sampler") if isinstance(raw.get("sampler"), dict) else {"name": raw.get("sampler", "tpe")}
    kwargs = {k: v for k, v in sampler.items() if k != "name"} if sampler.get("name") == point.sampler else {"seed": 0}
    raw.update(study=study, base=str((sweep.parent / raw["base"]).resolve()), sampler={"name": point.sampler, **kwargs},
               n_trials=point.workers * point.trials_per_worker, out_dir=str(out_dir / "runs"), report=False,
               heartbeat={"interval": point.heartbeat[0], "grace_period": point.heartbeat[1]})
    for key in ("storage", "timeout", "confirm"):
        raw.pop(key, None)
    path = out_dir / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def prepare_study(sweep: Path, url: str, tmp: Path) -> tuple[Path, float]:
    """Load and check the point's sweep file, create its study (as ``ddpm sweep --workers N`` does before
    starting its workers) and pickle the checked spec for the workers; also the ms one trial's config check
    takes (``trial_config``: the part of a trial's set-up the workers skip, see ``coordinator_worker``)."""
    import pickle

    from ddpm.sweeps.runner import open_sweep_study
    from ddpm.sweeps.spec import load_sweep, trial_config

    spec = load_sweep(sweep, storage=url)
    close_storage(open_sweep_study(spec, url)._storage)
    t = time.perf_counter()
    for i in range(20):
        trial_config(spec, spec.baseline_params(), f"trial-{i}")
    check_ms = (time.perf_counter() - t) * 1e3 / 20
    path = tmp / "spec.pkl"
    path.write_bytes(pickle.dumps(spec))
    return path, check_ms


def _start_workers(spec: Path, url: str, point: Point, tmp: Path) -> list[subprocess.Popen]:
    from ddpm.sweeps.runner import STORAGE_ENV

    env = {**os.environ, STORAGE_ENV: url, "DDPM_PROGRESS": "0", "WANDB_MODE": "disabled",
           "DDPM_BENCH_WORK_S": str(point.work_s)}
    procs = []
    for i in range(point.workers):
        log = open(tmp / f"worker-{i}.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-m", "ddpm.sweeps.coordinator_worker", str(spec), str(i),
                                       str(tmp / "go"), str(tmp / f"worker-{i}.json")],
                                      env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return procs


def _wait(procs: list[subprocess.Popen], done: Callable[[], bool], timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if done():
            return True
        time.sleep(0.1)
    return False


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM what still runs, SIGKILL after 10 s (by PID: only the processes this benchmark started)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_point(sweep: Path, url: str, point: Point, timeout_s: float = 600,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """One benchmark point: start the workers, wait until all are ready, go, measure, delete the study."""
    import sqlalchemy

    from ddpm.sweeps.storage import postgres_driver_url

    study = f"coordbench-{point.sampler}-w{point.workers}-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="coordbench-") as d:
        tmp = Path(d)
        spec, check_ms = prepare_study(bench_sweep_file(sweep, point, study, tmp), url, tmp)
        procs = _start_workers(spec, url, point, tmp)
        engine = sqlalchemy.create_engine(postgres_driver_url(url), pool_size=1, max_overflow=0)
        try:
            ready = _wait(procs, lambda: all((tmp / f"worker-{i}.ready").exists() or procs[i].poll() is not None
                                             for i in range(len(procs))), timeout_s)
            load = os.getloadavg()
            probe = Probe(engine)
            probe.start()
            go = time.time()
            (tmp / "go").touch()
            log(f"{study}: {point.workers} workers {'ready' if ready else 'NOT all ready'}, go")
            finished = _wait(procs, lambda: all(p.poll() is not None for p in procs), timeout_s)
            wall = time.time() - go
            system = probe.stop()
        finally:
            _stop(procs)
            engine.dispose()
        workers = [_read_worker(tmp, i, procs[i].returncode) for i in range(len(procs))]
        row = summarize(point, study, workers, _study_trials(url, study), go, wall, system)
        row.update(load_avg_1_5_15=[round(x, 2) for x in load], timed_out=not finished, all_ready=ready,
                   config_check_ms_per_trial=round(check_ms, 2))
        _delete_study(url, study)
    return row


def _read_worker(tmp: Path, i: int, code: Optional[int]) -> dict[str, Any]:
    path = tmp / f"worker-{i}.json"
    if path.is_file():
        return {**json.loads(path.read_text()), "exit": code}
    tail = (tmp / f"worker-{i}.log").read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
    return {"worker": i, "ran": 0, "error": f"exit {code}: {tail[0][:300]}", "cpu_s": 0.0, "ops": {},
            "sampler_ms": {}, "torch_imported": None, "exit": code}


def close_storage(storage: Any) -> None:
    """Close an RDB storage's pooled connections now (not when the garbage collector gets to them): the
    benchmark's own idle connections would count against the server's max_connections of the next point."""
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is not None:
        engine.dispose()


def _study_trials(url: str, study: str) -> list[Any]:
    import optuna

    from ddpm.sweeps.storage import open_storage

    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    finally:
        close_storage(storage)


def _delete_study(url: str, study: str) -> None:
    import optuna

    from ddpm.sweeps.storage import open_storage

    storage = open_storage(url)
    optuna.delete_study(study_name=study, storage=storage)
    close_storage(storage)


def summarize(point: Point, study: str, workers: list[dict[str, Any]], trials: list[Any], go: float, wall: float,
              system: dict[str, Any]) -> dict[str, Any]:
    """One point's figures from the workers' timings, the study's trials and the probe."""
    from optuna.trial import TrialState

    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    ends = [t.datetime_complete.timestamp() for t in trials if t.datetime_complete is not None]
    window = (max(ends) - go) if ends else wall
    finished = states["complete"] + states["pruned"] + states["fail"]
    ops = {op: _ms([v for w in workers for v in w["ops"].get(op, [])]) for op in OPS}
    sampler = {int(k): v for w in workers for k, v in w["sampler_ms"].items()}
    half = len(trials) // 2
    worker_cpu = sum(w["cpu_s"] for w in workers)
    pg_cpu = system.get("pg_cpu_s")
    lock_held_s = sum(v for w in workers for v in w["ops"].get("lock_held", [])) / 1e3  # the study lock, serial
    return {
        "study": study, **point.__dict__, "heartbeat": list(point.heartbeat),
        "trials": len(trials), "states": states, "finished": finished,
        "trial_numbers_unique": len({t.number for t in trials}) == len(trials),
        "ran_by_workers": sum(w["ran"] for w in workers),
        "wall_s": round(wall, 2), "window_s": round(window, 2),
        "trials_per_hour": round(finished / window * 3600) if window > 0 else None,
        "ops_ms": ops, "sampler_ms": _ms(list(sampler.values())),
        "sampler_ms_first_half": _ms([v for k, v in sampler.items() if k < half]),
        "sampler_ms_second_half": _ms([v for k, v in sampler.items() if k >= half]),
        "sampler_ms_p50_by_100_trials": [_r(percentile([v for k, v in sampler.items() if k // 100 == b], 50))
                                         for b in range(max(sampler, default=-1) // 100 + 1)],
        "budget_ms_p50_by_quarter": _quarters(workers, "budget"),
        "lock_busy_pct": round(100 * lock_held_s / window, 1) if window > 0 else None,
        "worker_cpu_ms_per_trial": round(1e3 * worker_cpu / finished, 1) if finished else None,
        "pg_cpu_ms_per_trial": round(1e3 * pg_cpu / finished, 1) if finished and pg_cpu is not None else None,
        "errors": [w["error"] for w in workers if w["error"]],
        "worker_exit_codes": sorted({w["exit"] for w in workers}, key=str),
        "torch_imported": any(w["torch_imported"] for w in workers),
        "worker_private_mb_max": max((w.get("private_mb") or 0 for w in workers), default=None),
        "worker_rss_mb_max": max((w.get("rss_mb") or 0 for w in workers), default=None),
        **system,
    }


def _quarters(workers: list[dict[str, Any]], op: str) -> list[Optional[float]]:
    """p50 of ``op`` in each quarter of every worker's calls (in call order): its growth as the study fills."""
    out = []
    for q in range(4):
        values = [v for w in workers for i, v in enumerate(w["ops"].get(op, [])) if i * 4 // len(w["ops"][op]) == q]
        out.append(_r(percentile(values, 50)))
    return out


def run_benchmark(sweep: Path, url: str, points: list[Point], timeout_s: float = 600,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    import platform

    rows = []
    for p in points:
        rows.append(run_point(sweep, url, p, timeout_s, log))
        log(table_line(rows[-1]))
    return {"machine": {"host": platform.node(), "cores": os.cpu_count(), "python": platform.python_version()},
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "sweep": str(sweep), "rows": rows}


COLUMNS = ("workers", "sampler", "trials", "errors", "wall s", "trials/h", "lock wait p50/p95", "lock held p50/p95",
           "lock busy %", "budget check p50/p95", "ask p50/p95", "tell p50/p95", "set_user_attr p50/p95", "heartbeat p50/p95", "stale check p50/p95",
           "sampler/trial p50 early/late", "worker CPU ms/trial", "PG CPU ms/trial", "CPU busy %", "PG conns max",
           "load avg 1m")


def _pair(d: dict[str, Any]) -> str:
    return "-" if d["p50"] is None else f"{d['p50']:.1f} / {d['p95']:.1f}"


def table_line(r: dict[str, Any]) -> str:
    o = r["ops_ms"]
    early, late = r["sampler_ms_first_half"]["p50"], r["sampler_ms_second_half"]["p50"]
    cells = [r["workers"], r["sampler"], f"{r['finished']}/{r['trials']}", len(r["errors"]), r["wall_s"],
             r["trials_per_hour"], _pair(o["lock_wait"]), _pair(o["lock_held"]), r["lock_busy_pct"], _pair(o["budget"]),
             _pair(o["ask"]), _pair(o["tell"]),
             _pair(o["set_user_attr"]), _pair(o["heartbeat"]), _pair(o["fail_stale"]), f"{early} / {late}",
             r["worker_cpu_ms_per_trial"], r["pg_cpu_ms_per_trial"], r["cpu_busy_pct"], r["pg_connections_max"],
             r["load_avg_1_5_15"][0]]
    return "| " + " | ".join("-" if c is None else str(c) for c in cells) + " |"


def markdown(result: dict[str, Any], command: str) -> str:
    lines = [f"# Coordinator benchmark, {result['date']}", "", f"`{command}`", "",
             f"Machine: {result['machine']['cores']} cores; sweep {result['sweep']}; times in ms (p50 / p95); "
             "lock = the study lock (budget check + stale check + ask, serial across workers); sampler = its "
             "methods' ms per trial, first / second half of the trials; CPU ms per finished trial.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [table_line(r) for r in result["rows"]]
    errors = [(r["workers"], r["sampler"], e) for r in result["rows"] for e in r["errors"][:3]]
    if errors:
        lines += ["", "Errors (first 3 per point):", ""] + [f"- {w} workers, {s}: `{e}`" for w, s, e in errors]
    return "\n".join(lines) + "\n"


def write_result(result: dict[str, Any], out: Path, command: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**result, "command": command}, indent=1))
    out.with_suffix(".md").write_text(markdown(result, command))
    return out
