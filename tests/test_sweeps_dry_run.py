"""``ddpm sweep FILE --dry-run``: checks the file, prints the base config, the space, the budget and the first
trials, and creates, trains and writes nothing."""
from __future__ import annotations

import pytest

from helpers import assert_one_line_error, run_cli, sweep_file
from ddpm.sweeps.dry_run import dry_run_lines, first_trials
from ddpm.sweeps.spec import load_sweep

GRID = {"sampler": {"name": "grid", "seed": 0},
        "space": {"train.lr": {"type": "categorical", "choices": [1.0e-3, 2.0e-3, 3.0e-3]},
                  "model.num_feat": {"type": "categorical", "choices": [8, 16]}},
        "enqueue_baseline": False, "n_trials": 6, "report": True}


def _nothing_written(tmp_path):
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]


@pytest.mark.slow
def test_dry_run_prints_the_grid_and_writes_nothing(tmp_path):
    path = sweep_file(tmp_path, **GRID)
    r = run_cli("sweep", str(path), "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "budget: grid of 6 point(s), n_trials 6" in out
    assert "base config (" in out and "  model:\n    image_size: 28" in out
    assert "  train.lr: choices [0.001, 0.002, 0.003]" in out
    assert "first 3 trial(s)" in out and out.count("\n  trial ") == 3
    _nothing_written(tmp_path)  # no runs/ folder, no study.db, no report, no wandb/


def test_first_trials_are_the_studys_first_points(tmp_path):
    from ddpm.sweeps.grid import grid_points, run_order

    spec = load_sweep(sweep_file(tmp_path, **GRID))
    points = grid_points(spec)
    want = [points[i] for i in run_order(spec, points)[:3]]
    got = first_trials(spec, 3)
    assert [params for _, params, _, _ in got] == want
    assert [number for number, *_ in got] == [0, 1, 2]
    assert got[0][2]["name"] == "trial-0" and got[0][2]["out_dir"] == str(tmp_path / "runs" / "tiny")
    _nothing_written(tmp_path)


def test_tpe_dry_run_shows_the_baseline_first_and_its_budget(tmp_path):
    spec = load_sweep(sweep_file(tmp_path, enqueue_baseline=True, n_trials=5))
    text = "\n".join(dry_run_lines(spec, timeout=60))
    assert "budget: n_trials 5, timeout 60s" in text
    assert "trial 0 (baseline): train.lr=0.001" in text  # cpu-quick's own lr is 1e-3
    assert "trial 1: train.lr=" in text and "trial 2: train.lr=" in text
    assert "train.lr: float 0.0001..0.003 log" in text
    _nothing_written(tmp_path)


def test_dry_run_of_a_bad_file_is_a_one_line_error(tmp_path):
    path = sweep_file(tmp_path, space={"train.lr": {"type": "float", "low": 1.0, "high": 0.1}})
    r = run_cli("sweep", str(path), "--dry-run", cwd=tmp_path)
    assert_one_line_error(r, "sweep.yaml", "train.lr", prefix="ddpm sweep: error:")
    _nothing_written(tmp_path)
