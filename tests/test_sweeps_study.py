"""Studies end to end with tiny configs: SQLite, Ctrl-C and resume, pruning, two local workers."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from helpers import assert_ran_in_workers, cli_env as env, sigint_default, sweep_file, sweep_in_workers
from ddpm.io import read_jsonl
from ddpm.sweeps import open_sweep_study, load_sweep, run_study
from ddpm.sweeps.metrics import throughput
from ddpm.sweeps.runner import Budget

@pytest.mark.slow
def test_three_trial_study_on_sqlite(tmp_path, tiny_classifier, monkeypatch, capsys):
    """Three trials: one good, one whose choice fails config validation (recorded, study goes on), one good;
    each scored by its guidance grid, with a per-epoch sample FID reported to Optuna."""
    monkeypatch.chdir(tmp_path)
    path = sweep_file(
        tmp_path, study="three",
        space={"model.num_feat": {"type": "categorical", "choices": [8, 12, 16]}},
        guidance={"omegas": [0, 2], "n": 20, "sampler": "ddim", "steps": 5},
        objectives=[{"metric": "fid", "direction": "minimize"}],
        prune_on={"metric": "sample_fid", "n": 20, "steps": 5},
        enqueue_baseline=False, enqueue=[{"model.num_feat": 8}, {"model.num_feat": 12}, {"model.num_feat": 16}],
        n_trials=3)
    spec = load_sweep(path)
    study = run_study(spec)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert "model.num_feat = 12" in trials[1].user_attrs["failure_reason"]
    assert Path(str(spec.study_dir)) == tmp_path / "runs" / "three"
    for t in (trials[0], trials[2]):
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir == tmp_path / "runs" / "three" / f"trial-{t.number}"
        for name in ("config.yaml", "metrics.jsonl", "eval.json", "checkpoints/last.pt", "checkpoints/best.pt"):
            assert (run_dir / name).is_file(), name
        rows = t.user_attrs["guidance"]
        assert [r["omega"] for r in rows] == [0, 2] and all("fid" in r and "accuracy" in r for r in rows)
        assert all(r["n"] == 20 and r["fid_lo"] <= r["fid"] <= r["fid_hi"] and r["kid_lo"] < r["kid_hi"]
                   for r in rows)                       # intervals stored with the trial (Optuna user attrs)
        best = min(rows, key=lambda r: r["fid"])
        assert t.user_attrs["best_omega"] == best["omega"] and t.values == [pytest.approx(best["fid"])]
        assert t.user_attrs["config"]["sample"]["omega"] == best["omega"]
        assert t.user_attrs["config"]["model"]["num_feat"] == t.params["model.num_feat"]
        assert t.user_attrs["duration_s"] > 0
        assert "sample_fid" in read_jsonl(run_dir / "metrics.jsonl")[0]
        assert set(t.intermediate_values) == {1}
    attrs = study.user_attrs
    assert attrs["objectives"] == [{"metric": "fid", "direction": "minimize"}]
    assert attrs["spec"]["study"] == "three" and attrs["base_experiment"].endswith("cpu-quick.yaml")

    # a finished study: rerunning it runs nothing more; the tables list it
    from ddpm.cli import main

    capsys.readouterr()
    assert main(["sweep", str(path)]) == 0
    assert len(open_sweep_study(spec).trials) == 3
    assert main(["trials", "three", "--out-dir", str(tmp_path / "runs")]) == 0
    assert main(["studies", "--out-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr()
    text = re.sub(r"[│\s]+", " ", out.out + out.err)     # a note wrapped inside its table cell, joined again
    assert "three" in text and "complete" in text and "num_feat = 12" in text
    assert "verdict: this study ran no baseline trial" in text


@pytest.mark.slow
def test_pruner_prunes(tmp_path, monkeypatch):
    """Median pruning: a trial whose epoch-1 value is worse than the completed trial's is stopped there."""
    monkeypatch.chdir(tmp_path)
    path = sweep_file(
        tmp_path, study="prune", overrides={"train.epochs": 2, "data.limit": 256, "train.batch_size": 32},
        space={"train.lr": {"type": "categorical", "choices": [1e-3, 1e-7]}},
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}, prune_on="test_loss",
        enqueue=[{"train.lr": 1e-3}, {"train.lr": 1e-7}], n_trials=2)
    study = run_study(load_sweep(path))
    t0, t1 = study.get_trials()
    assert t0.state == TrialState.COMPLETE and set(t0.intermediate_values) == {1, 2}
    assert t1.state == TrialState.PRUNED, t1.user_attrs
    assert t1.user_attrs["failure_reason"].startswith("pruned after epoch 1: test_loss")
    assert [r["epoch"] for r in read_jsonl(Path(t1.user_attrs["run_dir"]) / "metrics.jsonl")] == [1]


@pytest.mark.slow
def test_ctrl_c_then_rerun_resumes_the_trial(tmp_path):
    """SIGINT mid-trial: exit 130, the storage says 'interrupted'; a rerun resumes that trial from its last
    checkpoint (not epoch 0) and finishes the study."""
    path = sweep_file(tmp_path, study="resume", n_trials=2,
                      overrides={"train.epochs": 3, "data.limit": 512, "train.batch_size": 32})
    metrics = tmp_path / "runs" / "resume" / "trial-0" / "metrics.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "ddpm", "sweep", str(path), "--threads", "1"], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=sigint_default)
    deadline = time.time() + 180
    while not read_jsonl(metrics) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "run `ddpm sweep" in out and "again to resume" in out

    spec = load_sweep(path)
    (t0,) = open_sweep_study(spec).get_trials()
    assert t0.state == TrialState.FAIL and t0.user_attrs["interrupted"] is True
    done = len(read_jsonl(metrics))
    assert done >= 1

    study = run_study(spec)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    retry = trials[1]
    assert retry.system_attrs["retry_history"] == [0] and retry.params == t0.params
    assert retry.user_attrs["retry_of"] == 0 and retry.user_attrs["resumed_from_epoch"] == done
    epochs = [r["epoch"] for r in read_jsonl(Path(retry.user_attrs["run_dir"]) / "metrics.jsonl")]
    assert epochs == [1, 2, 3]
    assert Budget.of(study).live == 2
    assert trials[2].params != retry.params            # the resumed sampler does not replay the first run's proposals


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path):
    """`--workers 2`: two processes against one SQLite file; every trial runs once, in its own folder."""
    path = sweep_file(tmp_path, study="pair", n_trials=4,
                      overrides={"train.epochs": 2, "data.limit": 256})
    pid, out = sweep_in_workers(path, tmp_path, workers=2)                 # both workers ran and exited 0
    study = optuna.load_study(study_name="pair", storage=f"sqlite:///{tmp_path}/runs/pair/study.db")
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert_ran_in_workers(trials, workers=2, parent_pid=pid)   # not how the OS split them between the two
    assert len({t.params["train.lr"] for t in trials}) == 4         # seeded workers do not propose the same points
    for t in trials:
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir.name == f"trial-{t.number}"
        assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2]   # trained once
        assert json.loads(json.dumps(t.user_attrs["config"]))["name"] == f"trial-{t.number}"
    tp = throughput(trials)
    assert tp["finished"] == 4 and 0 < tp["parallelism"] <= 2 + 1e-6, tp   # never more trials at once than workers
    assert "trials/hour" in out


def test_throughput_from_trial_timestamps():
    """Two 60 s trials side by side then one alone: 3 trials in 120 s of wall time, 1.5 running at once."""
    t0 = datetime(2026, 1, 1, 12, 0, 0)
    def trial(n, start, seconds, state=TrialState.COMPLETE):
        return optuna.trial.FrozenTrial(
            number=n, state=state, value=1.0 if state == TrialState.COMPLETE else None, values=None,
            datetime_start=t0 + timedelta(seconds=start), datetime_complete=t0 + timedelta(seconds=start + seconds),
            params={}, distributions={}, user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=n)
    trials = [trial(0, 0, 60), trial(1, 0, 60), trial(2, 60, 60, TrialState.PRUNED),
              trial(3, 60, 10, TrialState.FAIL)]
    tp = throughput(trials)
    assert tp == {"finished": 3.0, "wall_s": 120.0, "trials_per_hour": 90.0, "parallelism": 1.5}
    assert throughput([trial(0, 0, 5, TrialState.FAIL)]) is None


@pytest.mark.slow
def test_grid_runs_every_point_once_and_marks_the_baseline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = sweep_file(tmp_path, study="grid", sampler={"name": "grid", "seed": 0}, n_trials=None,
                      overrides={"data.limit": 64, "data.test_limit": 64, "diffusion.T": 10},
                      space={"diffusion.schedule": ["linear", "cosine"], "train.lr": [1e-3, 2e-3]},
                      enqueue_baseline=True)
    spec = load_sweep(path)
    assert spec.n_trials == 4                      # the grid's size
    study = run_study(spec)
    trials = study.get_trials()
    points = sorted((t.params["diffusion.schedule"], t.params["train.lr"]) for t in trials)
    assert points == [("cosine", 1e-3), ("cosine", 2e-3), ("linear", 1e-3), ("linear", 2e-3)]
    (base,) = [t for t in trials if t.user_attrs.get("baseline")]
    assert base.params == {"diffusion.schedule": "linear", "train.lr": 1e-3}
    assert study.user_attrs["baseline_trial"] == base.number
