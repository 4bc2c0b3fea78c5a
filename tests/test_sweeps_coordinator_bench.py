"""The coordinator benchmark (``ddpm bench coordinator``) against the real PostgreSQL server: 4 worker
processes x 3 near-no-op trials through the product's worker loop. Counts only (no timing assertions):
every trial finished exactly once, the workers ran them all without torch, every figure is there and
positive, and the benchmark's study is deleted afterwards."""
from __future__ import annotations

import json

import optuna
import pytest

from helpers import REPO, assert_one_line_error, cli_env, postgres_url, run_cli
from ddpm.sweeps.coordinator_bench import Point, run_point
from ddpm.sweeps.coordinator_worker import trial_config_dict
from ddpm.sweeps.spec import load_sweep, trial_config
from ddpm.sweeps.storage import open_storage

pytestmark = pytest.mark.slow
SWEEP = REPO / "sweeps" / "recipe.yaml"


def test_four_workers_finish_every_trial_once_and_report_each_step():
    url = postgres_url("the coordinator benchmark test")
    row = run_point(SWEEP, url, Point(workers=4, sampler="tpe", trials_per_worker=3), timeout_s=300, log=lambda m: None)
    assert row["errors"] == [] and row["worker_exit_codes"] == [0] and not row["timed_out"]
    assert row["trials"] == row["finished"] == row["ran_by_workers"] == 12
    assert row["trial_numbers_unique"] and row["states"]["fail"] == row["states"]["running"] == 0
    assert row["states"]["complete"] + row["states"]["pruned"] == 12
    assert row["torch_imported"] is False
    ops = row["ops_ms"]
    for op in ("lock_wait", "lock_held", "budget", "fail_stale", "ask", "tell", "set_user_attr", "report", "heartbeat"):
        assert ops[op]["n"] > 0 and ops[op]["p50"] > 0 and ops[op]["p95"] >= ops[op]["p50"], op
    assert ops["ask"]["n"] == 12 and ops["tell"]["n"] == 12   # one ask and one tell per trial, no more
    assert ops["heartbeat"]["n"] >= 12                        # each trial's heartbeat thread writes at least once
    assert row["sampler_ms"]["n"] == 12 and row["sampler_ms"]["p50"] > 0
    assert row["trials_per_hour"] > 0 and row["window_s"] > 0 and row["worker_cpu_ms_per_trial"] > 0
    assert row["pg_connections_max"] >= 4 and row["pg_stat_database"]["xact_commit"] > 0
    assert row["study"] not in optuna.get_all_study_names(open_storage(url))   # deleted after the run


def test_trial_config_dict_is_the_checked_config():
    spec = load_sweep(SWEEP)
    params = spec.baseline_params()
    assert trial_config_dict(spec, params, "trial-3") == trial_config(spec, params, "trial-3").to_dict()


def test_cli_rejects_a_non_postgres_storage_in_one_line(tmp_path):
    r = run_cli("bench", "coordinator", "--storage", f"sqlite:///{tmp_path}/x.db", "--out", str(tmp_path / "c.json"),
                cwd=REPO, env=cli_env())
    assert_one_line_error(r, "--storage", "postgresql://")
    assert not (tmp_path / "c.json").exists()
