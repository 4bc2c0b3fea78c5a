"""One worker process of the coordinator benchmark (``ddpm.sweeps.coordinator_bench``): the product's own
worker loop (``ddpm.sweeps.runner.run_worker``: study lock, budget check, ``study.optimize`` with the
heartbeat and its retry callback, the sweep's sampler and pruner) with the training replaced by a near-no-op
that writes what a real trial writes (``TrialRecord``: run folder, host, pid, config, per-epoch reports,
the guidance table, best omega, duration), timing every coordination step on the way.

It never imports torch (64 torch processes would need ~20 GB: 300 MB private memory each); it reports
``"torch" in sys.modules`` at the end. Checking a config imports torch (the alpha_bar_T guard computes the
schedule, ``ddpm.schedules``), so the benchmark loads and checks the sweep file once, creates the study in
the parent (as ``ddpm sweep --workers N`` does) and hands the workers the checked ``SweepSpec`` (pickled);
a worker builds each trial's config as ``trial_config`` does (base + overrides + params, the same mapping)
without checking it again: that check is the trial's work, not the coordinator's (its cost is measured
once in the parent). Run by the benchmark, not by hand::

    DDPM_SWEEP_STORAGE=postgresql://... python -m ddpm.sweeps.coordinator_worker SPEC.pkl ID GO_FILE OUT.json
"""
from __future__ import annotations

import functools
import json
import os
import pickle
import resource
import socket
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import optuna

from ddpm.config import set_dotted
from ddpm.sweeps.record import TrialRecord
from ddpm.sweeps.spec import SweepSpec, overridden, suggest_params

# what each worker times (ms per call); "sampler" is the sum of the sampler's own methods per trial
OPS = ("lock_wait", "lock_held", "budget", "fail_stale", "ask", "tell", "set_user_attr", "report", "heartbeat",
       "objective")
SAMPLER_METHODS = ("infer_relative_search_space", "sample_relative", "sample_independent", "before_trial",
                   "after_trial")


class BenchObjective:
    """A trial without training: the attribute writes of ``SweepObjective`` (same fields, same order, a
    guidance table of the sweep's size), one ``trial.report`` + pruner check per epoch, ``work_s`` of sleep.
    The value is a deterministic function of the params, so TPE has something to model."""

    def __init__(self, spec: SweepSpec, work_s: float = 0.0) -> None:
        self.spec, self.work_s = spec, work_s

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        spec, start = self.spec, time.time()
        try:
            params = suggest_params(spec.space, trial)
            name = f"trial-{trial.number}"
            # SweepObjective._start reads the trial back from the study first (its retry history, baseline flag)
            stored = TrialRecord.from_trial(next(t for t in trial.study.get_trials(deepcopy=False)
                                                 if t.number == trial.number))
            TrialRecord.write(trial, run_dir=str(spec.study_dir / name), host=socket.gethostname(), pid=os.getpid())
            if stored.baseline:
                TrialRecord.write(trial, baseline=True)
                trial.study.set_user_attr("baseline_trial", trial.number)
            cfg = trial_config_dict(spec, params, name)
            TrialRecord.write(trial, config=cfg)
            value = 50.0 + (zlib.crc32(json.dumps(params, sort_keys=True, default=str).encode()) % 10_000) / 100
            epochs = max(1, int(cfg["train"]["epochs"]))
            for epoch in range(1, epochs + 1):
                time.sleep(self.work_s / epochs)
                trial.report(value + (epochs - epoch), step=epoch)
                if spec.pruner != "none" and trial.should_prune():
                    TrialRecord.write(trial, failure_reason=f"pruned after epoch {epoch}")
                    raise optuna.TrialPruned(f"pruned after epoch {epoch}")
            omegas = spec.guidance.omegas if spec.guidance is not None else [cfg["sample"]["omega"]]
            rows = [{"omega": float(w), "fid": value + abs(w - 2.0), "fid_ci": [value - 5, value + 5],
                     "accuracy": 0.9, "n": 200, "sampler": "ddpm", "steps": 25, "seconds": 0.0,
                     "checkpoint": f"{name}/best.pt", "split": "val"} for w in omegas]
            best = min(rows, key=lambda r: r["fid"])
            TrialRecord.write(trial, guidance=rows, guidance_split="val")
            TrialRecord.write(trial, best_omega=best["omega"])
            set_dotted(cfg, "sample.omega", best["omega"])
            TrialRecord.write(trial, config=cfg)
            values = [best["fid"] for _ in spec.objectives]
            return values if len(values) > 1 else values[0]
        finally:
            TrialRecord.write(trial, duration_s=round(time.time() - start, 2))


def trial_config_dict(spec: SweepSpec, params: dict[str, Any], name: str) -> dict[str, Any]:
    """``trial_config(spec, params, name).to_dict()`` without the check (which imports torch): the base
    experiment's every key with the sweep's overrides, the trial's params, its name and run folder."""
    return overridden(spec.base_data, {**spec.overrides, **params, "name": name, "out_dir": str(spec.study_dir)})


class Timings:
    """Per-call durations (ms) of the coordination steps, and the sampler's ms per trial number."""

    def __init__(self) -> None:
        self.ops: dict[str, list[float]] = defaultdict(list)
        self.sampler: dict[int, float] = defaultdict(float)

    def wrap(self, owner: Any, attr: str, op: str) -> None:
        """Replace ``owner.attr`` by a timed copy recording into ``op`` (a class method stays one)."""
        raw = owner.__dict__.get(attr, getattr(owner, attr)) if isinstance(owner, type) else getattr(owner, attr)
        is_cm = isinstance(raw, classmethod)
        fn = raw.__func__ if is_cm else raw

        @functools.wraps(fn)
        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.ops[op].append((time.perf_counter() - t) * 1e3)
        setattr(owner, attr, classmethod(timed) if is_cm else timed)

    def wrap_sampler(self, cls: type) -> None:
        for attr in SAMPLER_METHODS:
            fn = getattr(cls, attr)

            def timed(s: Any, study: Any, trial: Any, *a: Any, _fn: Callable = fn, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return _fn(s, study, trial, *a, **k)
                finally:
                    self.sampler[trial.number] += (time.perf_counter() - t) * 1e3
            setattr(cls, attr, timed)


def instrument(spec: SweepSpec) -> Timings:
    """Time the product's coordination path in this process: Optuna's ask/tell, the RDB storage's writes and
    heartbeats, stale-trial checks, the sampler's methods, and the runner's study lock and budget check."""
    import optuna.study._optimize as optimize
    from optuna.storages import RDBStorage

    from ddpm.sweeps import runner
    from ddpm.sweeps.locks import StudyLock
    from ddpm.sweeps.samplers import SAMPLER_CLASSES

    t = Timings()
    t.wrap(optuna.study.Study, "ask", "ask")
    t.wrap(optimize, "_tell_with_warning", "tell")             # what study.optimize calls (not Study.tell)
    t.wrap(optuna.storages, "fail_stale_trials", "fail_stale")  # before each ask when heartbeats are on
    t.wrap(RDBStorage, "set_trial_user_attr", "set_user_attr")
    t.wrap(RDBStorage, "set_trial_intermediate_value", "report")
    t.wrap(RDBStorage, "record_heartbeat", "heartbeat")         # the heartbeat thread's writes
    t.wrap(runner.Budget, "of", "budget")
    t.wrap_sampler(SAMPLER_CLASSES[spec.sampler])
    acquire, release = StudyLock.acquire, StudyLock.release

    def timed_acquire(lock: StudyLock) -> StudyLock:
        if lock.held:
            return lock
        t0 = time.perf_counter()
        out = acquire(lock)
        lock._t_acquired = time.perf_counter()  # type: ignore[attr-defined]
        t.ops["lock_wait"].append((lock._t_acquired - t0) * 1e3)  # type: ignore[attr-defined]
        return out

    def timed_release(lock: StudyLock) -> None:
        if lock.held:
            t.ops["lock_held"].append((time.perf_counter() - lock._t_acquired) * 1e3)  # type: ignore[attr-defined]
        release(lock)
    StudyLock.acquire, StudyLock.release = timed_acquire, timed_release  # type: ignore[method-assign]
    return t


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _memory_mb() -> dict[str, float]:
    """This process's resident and private memory now (``ru_maxrss`` would include the parent's before exec)."""
    out = {}
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Rss", "Private_Dirty", "Private_Clean"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        return {}
    return {"rss_mb": round(out.get("Rss", 0), 1),
            "private_mb": round(out.get("Private_Dirty", 0) + out.get("Private_Clean", 0), 1)}


def main(argv: list[str]) -> int:
    """Load the checked sweep, signal ready (``OUT.ready``), wait for ``GO_FILE``, run the worker loop, write ``OUT``."""
    from ddpm.cli import configure_libraries
    from ddpm.redact import redact_text, secrets_of
    from ddpm.sweeps.runner import STORAGE_ENV, run_worker

    spec_file, worker, go, out = Path(argv[0]), int(argv[1]), Path(argv[2]), Path(argv[3])
    configure_libraries()
    url = os.environ[STORAGE_ENV]
    spec = pickle.loads(spec_file.read_bytes())  # written by the benchmark's own process (trusted)
    timings = instrument(spec)
    work_s = float(os.environ.get("DDPM_BENCH_WORK_S", "0"))
    out.with_suffix(".ready").write_text(str(os.getpid()))
    while not go.exists():
        time.sleep(0.05)
    cpu0, ran, error = _cpu_s(), 0, None
    try:
        ran = run_worker(spec, url, worker=worker, verbose=False, objective=BenchObjective(spec, work_s))
    except BaseException as e:  # a storage refusing us (too many clients): reported, the worker exits 1
        error = redact_text(f"{type(e).__name__}: {e}".splitlines()[0], secrets_of(url))[:400]
    result = {"worker": worker, "ran": ran, "error": error, "cpu_s": _cpu_s() - cpu0,
              **_memory_mb(),
              "torch_imported": "torch" in sys.modules, "ops": dict(timings.ops),
              "sampler_ms": {str(k): v for k, v in timings.sampler.items()}}
    out.write_text(json.dumps(result))
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
