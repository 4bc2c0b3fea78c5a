"""Grid studies run each point exactly once: enqueued once at creation (idempotent under concurrent
creation), handed to one worker each, covered again by the retry of a SIGKILLed trial, never made up."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from helpers import REPO, assert_ran_in_workers, cli_env as env, postgres_url, sweep_file, sweep_in_workers
from ddpm.io import read_jsonl
from ddpm.sweeps import open_sweep_study, load_sweep, run_study, run_worker

pytestmark = pytest.mark.slow

POINTS = [("cosine", 1e-3), ("cosine", 2e-3), ("linear", 1e-3), ("linear", 2e-3)]
SPACE = {"diffusion.schedule": ["linear", "cosine"], "train.lr": [1e-3, 2e-3]}
FAST = {"data.limit": 64, "data.test_limit": 64, "diffusion.T": 10}


def grid_file(tmp_path: Path, study: str, **changes) -> Path:
    overrides = {**FAST, **changes.pop("overrides", {})}
    changes = {"enqueue_baseline": True, "n_trials": None, **changes}
    return sweep_file(tmp_path, study=study, sampler={"name": "grid", "seed": 0}, space=SPACE,
                      overrides=overrides, **changes)


def point(t: optuna.trial.FrozenTrial) -> tuple:
    return (t.params["diffusion.schedule"], t.params["train.lr"])


def complete_points(study: optuna.Study) -> Counter:
    return Counter(point(t) for t in study.get_trials(states=(TrialState.COMPLETE,)))


def test_two_workers_run_each_grid_point_once(tmp_path):
    """(a) `ddpm sweep --workers 2` on SQLite: 4 trials, the 4 points once each, run by the workers."""
    path = grid_file(tmp_path, "grid-pair", overrides={"train.epochs": 2})
    pid, out = sweep_in_workers(path, tmp_path, workers=2)                 # both workers ran and exited 0
    study = optuna.load_study(study_name="grid-pair", storage=f"sqlite:///{tmp_path}/runs/grid-pair/study.db")
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert complete_points(study) == Counter(POINTS)
    assert sorted(t.user_attrs["grid_id"] for t in trials) == [0, 1, 2, 3]
    assert_ran_in_workers(trials, workers=2, parent_pid=pid)   # not how the OS split them between the two
    (base,) = [t for t in trials if t.user_attrs.get("baseline")]
    assert point(base) == ("linear", 1e-3) and base.number == 0 == study.user_attrs["baseline_trial"]


def test_sigkill_mid_trial_then_rerun_covers_each_point_once(tmp_path):
    """(b) SIGKILL the whole `ddpm sweep --workers 2` process group mid-trial, rerun: the dead trials are failed
    by the heartbeat and retried (same point, resumed from their checkpoint); the 4 points complete once each."""
    path = grid_file(tmp_path, "grid-kill", overrides={"train.epochs": 3, "data.limit": 256},
                     heartbeat={"interval": 1, "grace_period": 2, "max_retry": 2})
    url = f"sqlite:///{tmp_path}/runs/grid-kill/study.db"
    proc = subprocess.Popen([sys.executable, "-m", "ddpm", "sweep", str(path), "--workers", "2", "--threads", "1"],
                            cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)   # its own process group: the sweep and its workers
    try:
        deadline = time.time() + 300
        mid = False
        while not mid and proc.poll() is None and time.time() < deadline:
            for m in (tmp_path / "runs" / "grid-kill").glob("trial-*/metrics.jsonl"):
                rows = read_jsonl(m)
                mid = mid or (1 <= len(rows) < 3)     # a trial between its epochs
            time.sleep(0.1)
        assert mid and proc.poll() is None, "no trial was caught mid-way"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    study = optuna.load_study(study_name="grid-kill", storage=url)
    before = study.get_trials()
    dead = [t.number for t in before if t.state == TrialState.RUNNING]
    assert dead, [t.state for t in before]
    assert len(before) == 4                             # nothing was made up beyond the 4 enqueued points

    spec = load_sweep(path)
    run_study(spec, workers=2)
    study = optuna.load_study(study_name="grid-kill", storage=url)
    trials = study.get_trials()
    assert complete_points(study) == Counter(POINTS)
    assert not [t for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    for n in dead:
        assert trials[n].state == TrialState.FAIL
        (retry,) = [t for t in trials if n in t.system_attrs.get("retry_history", [])]
        assert retry.state == TrialState.COMPLETE and point(retry) == point(trials[n])
        assert retry.user_attrs["grid_id"] == trials[n].user_attrs["grid_id"]
    assert len(trials) == 4 + len(dead)                 # one retry per dead trial, nothing else
    assert sum(bool(t.user_attrs.get("baseline")) and t.state == TrialState.COMPLETE for t in trials) == 1


LOAD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ddpm.sweeps import open_sweep_study, load_sweep
    Path(sys.argv[1]).touch()          # imported, at the start line
    for path, url, go in zip(*[iter(sys.argv[2:])] * 3):
        while not Path(go).exists():
            time.sleep(0.002)
        open_sweep_study(load_sweep(path, storage=url))
""")


def _load_at_once(jobs: list[tuple[Path, str]], tmp_path: Path, n: int = 3) -> None:
    """n processes call open_sweep_study(path, url) for each job, starting each job together (a start file)."""
    tag = uuid.uuid4().hex[:6]
    gos = [tmp_path / f"go-{tag}-{k}" for k in range(len(jobs))]
    ready = [tmp_path / f"ready-{tag}-{i}" for i in range(n)]
    argv = [str(a) for (path, url), go in zip(jobs, gos) for a in (path, url, go)]
    procs = [subprocess.Popen([sys.executable, "-c", LOAD, str(r), *argv], cwd=tmp_path,
                              env={**env(), "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in ready]
    deadline = time.time() + 120
    while not all(r.exists() for r in ready) and time.time() < deadline:
        time.sleep(0.01)
    for go in gos:
        go.touch()                  # all start open_sweep_study within milliseconds
        time.sleep(0.7)
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out


def _check_enqueued_once(study: optuna.Study) -> None:
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.WAITING for t in trials)
    assert Counter(_fixed(t) for t in trials) == Counter(POINTS)
    assert sorted(t.user_attrs["grid_id"] for t in trials) == [0, 1, 2, 3]
    (base,) = [t for t in trials if t.user_attrs.get("baseline")]
    assert base.number == 0 == study.user_attrs["baseline_trial"]
    assert base.system_attrs["fixed_params"] == {"diffusion.schedule": "linear", "train.lr": 1e-3}


def _race(tmp_path: Path, urls: dict[str, str], rounds: int = 3) -> None:
    """Each URL gets ``rounds`` new studies, each created by all processes at once. Without the study lock a
    round enqueued the grid two or three times in 4 of 16 tries here (and SQLite's first table creation failed)."""
    jobs = []
    for r in range(rounds):
        for kind, url in urls.items():
            (tmp_path / f"{kind}-{r}").mkdir()
            jobs.append((grid_file(tmp_path / f"{kind}-{r}", f"grid-race-{uuid.uuid4().hex[:8]}"), url))
    jobs = [(path, url.format(study=load_sweep(path).study)) for path, url in jobs]
    _load_at_once(jobs, tmp_path)
    for path, url in jobs:
        spec = load_sweep(path, storage=url)
        _check_enqueued_once(open_sweep_study(spec))
        open_sweep_study(spec)
        _check_enqueued_once(open_sweep_study(spec))


def test_enqueueing_is_idempotent_under_concurrent_creation(tmp_path):
    """(c) Three processes create the same new grid study at the same instant (SQLite, then a journal file),
    then it is loaded twice more: the 4 points are enqueued once, the baseline first."""
    _race(tmp_path, {"sqlite": f"sqlite:///{tmp_path}/runs/{{study}}/study.db",
                     "journal": f"journal:{tmp_path}/runs/{{study}}.log"})


def test_enqueueing_is_idempotent_under_concurrent_creation_postgres(tmp_path):
    """(c) The same on a real PostgreSQL server (the study lock is an advisory lock there)."""
    _race(tmp_path, {"pg": postgres_url("the concurrent grid creation test")})


def _fixed(t: optuna.trial.FrozenTrial) -> tuple:
    p = t.system_attrs.get("fixed_params") or t.params
    return (p["diffusion.schedule"], p["train.lr"])


def test_enqueue_fills_only_missing_points_counting_retries(tmp_path):
    """A study that holds some points already (an older study's trial matched by its params, a failed trial and
    its retry, as after a crash mid-enqueue): open_sweep_study adds exactly the missing points."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    path = grid_file(tmp_path, "grid-fill", enqueue_baseline=False)
    spec = load_sweep(path)
    url = f"sqlite:///{tmp_path}/runs/grid-fill/study.db"
    (tmp_path / "runs" / "grid-fill").mkdir(parents=True)
    study = optuna.create_study(study_name="grid-fill", storage=url)
    study.enqueue_trial({"diffusion.schedule": "cosine", "train.lr": 2e-3})        # no grid_id: matched by value
    study.enqueue_trial({"diffusion.schedule": "linear", "train.lr": 1e-3}, user_attrs={"grid_id": 0})
    t = study.ask()                                       # pops trial 0 (cosine, 2e-3)
    t.suggest_categorical("diffusion.schedule", ["linear", "cosine"])
    t.suggest_categorical("train.lr", [1e-3, 2e-3])
    study.tell(t, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback()(study, study.get_trials()[0])
    study = open_sweep_study(spec)
    open_sweep_study(spec)
    trials = study.get_trials()
    assert len(trials) == 5                                # 3 held (one retried) + the 2 missing
    assert Counter(_fixed(t) for t in trials[3:]) == Counter([("cosine", 1e-3), ("linear", 2e-3)])
    live = [t for t in trials if t.state != TrialState.FAIL]
    assert Counter(_fixed(t) for t in live) == Counter(POINTS)


def test_grid_worker_never_makes_up_a_point(tmp_path):
    """With nothing waiting a grid worker stops without creating a trial; a trial that is not an enqueued
    point fails with a clear reason instead of sampling one."""
    path = grid_file(tmp_path, "grid-none")
    spec = load_sweep(path)
    study = open_sweep_study(spec)
    for _ in range(4):
        study.tell(study.ask(), state=TrialState.FAIL)    # consume the 4 waiting points
    assert run_worker(spec, verbose=False) == 0
    assert len(study.get_trials()) == 4
    stray = study.ask()
    with pytest.raises(RuntimeError, match="not an enqueued grid point"):
        stray.suggest_categorical("train.lr", [1e-3, 2e-3])


def test_grid_smaller_budget_runs_that_many_then_the_rest(tmp_path, monkeypatch):
    """n_trials 2 of a 4-point grid: 2 points run (the baseline first), 2 stay waiting; a rerun with
    --n-trials 4 runs exactly the other 2."""
    monkeypatch.chdir(tmp_path)
    path = grid_file(tmp_path, "grid-part", n_trials=2)
    spec = load_sweep(path)
    study = run_study(spec)
    done = complete_points(study)
    assert sum(done.values()) == 2 and done[("linear", 1e-3)] == 1 and max(done.values()) == 1
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 2
    run_study(spec, n_trials=4)
    assert complete_points(study) == Counter(POINTS) and len(study.get_trials()) == 4
