"""A real PostgreSQL server: two workers, one SIGKILLed mid-trial; its trial is failed by the heartbeat,
retried from its last checkpoint by the other worker, and the study finishes with no trial lost.

The URL comes from DDPM_TEST_POSTGRES (scripts/test.sh reads .postgres-url, which scripts/system-deps.sh
writes after starting the server). Outside CI the test skips, saying why, when no server answers; under
CI=true it fails instead.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from optuna.trial import TrialState

from helpers import cli_env as env, postgres_url as conftest_postgres_url, sweep_file
from ddpm.errors import DDPMError
from ddpm.io import read_jsonl
from ddpm.sweeps import open_sweep_study, load_sweep, open_storage
from ddpm.sweeps.runner import STORAGE_ENV, Budget

pytestmark = pytest.mark.slow


def postgres_url() -> str:
    return conftest_postgres_url("the distributed-worker test")


def test_killed_worker_trial_is_retried_and_resumed(tmp_path):
    url = postgres_url()
    study_name = f"pg-kill-{uuid.uuid4().hex[:8]}"
    path = sweep_file(tmp_path, study=study_name, n_trials=3,
                      overrides={"train.epochs": 3, "data.limit": 384, "train.batch_size": 32},
                      heartbeat={"interval": 1, "grace_period": 4, "max_retry": 2})
    spec = load_sweep(path, storage=url)
    study = open_sweep_study(spec)     # created once, before the workers join
    procs = [subprocess.Popen([sys.executable, "-m", "ddpm", "worker", str(path), "--threads", "1"], cwd=tmp_path,
                              env={**env(), STORAGE_ENV: url}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    try:
        # wait until some trial has finished an epoch (its checkpoint exists), then SIGKILL its worker
        victim, killed_trial, deadline = None, None, time.time() + 300
        while victim is None and time.time() < deadline:
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                run_dir = t.user_attrs.get("run_dir")
                if run_dir and read_jsonl(Path(run_dir) / "metrics.jsonl"):
                    victim = next((p for p in procs if p.pid == t.user_attrs.get("pid")), None)
                    killed_trial = t.number
                    break
            time.sleep(0.2)
        assert victim is not None, "no trial finished an epoch in time"
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        survivor = next(p for p in procs if p is not victim)
        out, _ = survivor.communicate(timeout=400)
        assert survivor.returncode == 0, out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    try:
        trials = optuna.load_study(study_name=study_name, storage=open_storage(url)).get_trials()
        by_number = {t.number: t for t in trials}
        assert by_number[killed_trial].state == TrialState.FAIL
        retries = [t for t in trials if killed_trial in t.system_attrs.get("retry_history", [])]
        assert len(retries) == 1, [(t.number, t.state, t.system_attrs) for t in trials]
        retry = retries[0]
        assert retry.state == TrialState.COMPLETE and retry.params == by_number[killed_trial].params
        assert retry.user_attrs["resumed_from_epoch"] >= 1          # from its own checkpoint, not epoch 0
        assert [r["epoch"] for r in read_jsonl(Path(retry.user_attrs["run_dir"]) / "metrics.jsonl")] == [1, 2, 3]
        # no trial lost: the budget is met by finished trials and nothing is left running or waiting
        b = Budget.of(optuna.load_study(study_name=study_name, storage=open_storage(url)))
        assert b.live == 3 and b.running == 0 and b.waiting == 0
        live = [t for t in trials if t.number != killed_trial]
        assert all(t.state == TrialState.COMPLETE for t in live)
        password = url.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
        assert not password or password not in out                  # the worker never printed it
    finally:
        optuna.delete_study(study_name=study_name, storage=open_storage(url))


def test_server_study_with_a_folder_store_says_other_machines_need_a_shared_path(tmp_path, capsys):
    """A study on PostgreSQL is meant for many machines: its default folder store is on this machine only."""
    url = postgres_url()
    for store in (None, str(tmp_path / "shared")):  # the default store beside the study, a named folder
        name = f"pg-note-{uuid.uuid4().hex[:8]}"
        spec = load_sweep(sweep_file(tmp_path, study=name, n_trials=1, **({"artifacts": store} if store else {})),
                          storage=url)
        try:
            open_sweep_study(spec)
            err = capsys.readouterr()
            text = err.out + err.err
            assert "trial outputs go to the folder" in text, text
            assert "s3://bucket/prefix" in text
            open_sweep_study(spec)  # a resumed study says it once, when created
            again = capsys.readouterr()
            assert "trial outputs go to the folder" not in again.out + again.err
        finally:
            optuna.delete_study(study_name=name, storage=open_storage(url))
