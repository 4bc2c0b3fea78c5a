"""Offline W&B runs that travel: every file a run references sits inside its own folder (nothing in the
user's home), one `wandb sync` command covers a whole study, a rerun resumes the study run, and
WANDB_PROJECT / WANDB_ENTITY / WANDB_DIR are honoured unless the config says otherwise. Real offline runs,
read back from disk (tests/wandb_reader.py)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ddpm.io import read_jsonl
from helpers import sweep_file, wandb_env
from wandb_reader import offline_runs, read_offline_run

pytestmark = pytest.mark.slow

FAST = {"data.limit": 128, "data.test_limit": 64, "sample.steps": 2, "tracking.wandb": "offline"}
WANDB = Path(sys.executable).parent / "wandb"


@pytest.fixture
def fake_home(tmp_path, monkeypatch):
    """W&B offline with no WANDB_* variable set and HOME (and every XDG folder) in tmp_path/home: whatever W&B
    would write to a user's home lands there, where the test can see it."""
    home = tmp_path / "home"
    home.mkdir()
    wandb_env(monkeypatch, WANDB_DISABLE_CODE="true")
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(var, raising=False)
    return home


def _wandb_in(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if "wandb" in p.name.lower()]


def test_offline_run_holds_every_file_it_references(tiny_cfg, fake_home):
    """Epoch grids, the guidance table with its images and the model artifact: the run's log names only
    files inside its offline-run folder, they all exist, and nothing went to ~/.local/share or ~/.cache."""
    from ddpm.tracking import tracker_callback
    from ddpm.train import train

    cfg = tiny_cfg(**{**FAST, "name": "trial-0", "train.epochs": 1})
    tracker = tracker_callback(cfg, job_type="trial", group="g", name="trial-0", finish_on_train_end=False,
                               log_checkpoint=True)
    run = train(cfg, callbacks=[tracker], quiet=True)
    rows = [{"omega": w, "fid": 10.0 - w, "grid": "grids/epoch-001.png"} for w in (0.0, 2.0)]
    tracker.log_guidance(rows, run.run_dir)
    tracker.finish("complete")

    [folder] = offline_runs(run.run_dir / "wandb")
    wb = read_offline_run(folder)
    assert wb.exit_code == 0 and wb.files
    for f in wb.files:
        assert (folder / "files" / f).is_file(), f
    staged = [c.local_path for a in wb.artifacts for c in a.manifest.contents]
    assert {a.type for a in wb.artifacts} == {"run_table", "model"}
    assert len(staged) >= 4   # two table JSONs, two guidance grids, best.pt
    for path in staged:
        assert Path(path).is_file() and Path(path).resolve().is_relative_to(folder.resolve()), path
    assert _wandb_in(fake_home) == [], _wandb_in(fake_home)
    assert os.environ.get("WANDB_DATA_DIR") is None and os.environ.get("WANDB_CACHE_DIR") is None   # restored


def _project_of(tracker, run_dir: Path) -> tuple[str, str, Path]:
    """Open and close ``tracker``'s run without training; (project, entity, its offline-run folder)."""
    tracker.start(run_dir)
    folder = Path(tracker._run.settings.sync_dir)
    tracker.finish("complete")
    wb = read_offline_run(folder)
    return wb.run.project, wb.run.entity, folder


def test_wandb_project_entity_dir_come_from_env_unless_the_config_sets_them(tiny_cfg, fake_home, monkeypatch,
                                                                         tmp_path):
    from ddpm.tracking import tracker_callback

    monkeypatch.setenv("WANDB_PROJECT", "env-project")
    monkeypatch.setenv("WANDB_ENTITY", "env-team")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "env-dir"))
    cfg = tiny_cfg(**FAST)
    assert (cfg.tracking.project, cfg.tracking.entity, cfg.tracking.dir) == (None, None, None)
    project, entity, folder = _project_of(tracker_callback(cfg, job_type="train"), cfg.run_dir)
    assert (project, entity) == ("env-project", "env-team")
    assert folder.parent == (tmp_path / "env-dir" / "wandb").resolve()

    cfg = tiny_cfg(**FAST, **{"tracking.project": "cfg-project", "tracking.entity": "cfg-team",
                              "tracking.dir": str(tmp_path / "cfg-dir")})
    project, entity, folder = _project_of(tracker_callback(cfg, job_type="train"), cfg.run_dir)
    assert (project, entity) == ("cfg-project", "cfg-team")
    assert folder.parent == (tmp_path / "cfg-dir" / "wandb").resolve()

    for var in ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_DIR"):
        monkeypatch.delenv(var)
    cfg = tiny_cfg(**FAST)
    project, entity, folder = _project_of(tracker_callback(cfg, job_type="train"), cfg.run_dir)
    assert (project, entity) == ("ddpm-sweeps", "")    # our default project; W&B's default entity
    assert folder.parent == (cfg.run_dir / "wandb").resolve()   # the run folder
    assert _wandb_in(fake_home) == []


def _sweep(path: Path, cwd: Path) -> str:
    env = {**os.environ, "DDPM_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}
    p = subprocess.run([sys.executable, "-m", "ddpm", "sweep", str(path), "--no-report", "--no-confirm"], cwd=cwd,
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout + p.stderr


def _sync_command(out: str) -> str:
    commands = re.findall(r"`(wandb sync [^`]*)`", out)
    assert commands, out
    return commands[-1]


def _dry_run(command: str, cwd: Path) -> int:
    """How many runs the printed command would upload (`wandb sync --dry-run`, through a shell: the command
    holds a glob)."""
    dry = command.replace("wandb sync", f"{WANDB} sync --dry-run", 1)
    p = subprocess.run(dry, shell=True, cwd=cwd, env=os.environ.copy(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"Would sync (\d+) run", p.stdout + p.stderr)
    assert m, p.stdout + p.stderr
    return int(m.group(1))


def test_sweep_prints_one_sync_command_and_a_rerun_resumes_the_study_run(tmp_path, fake_home, monkeypatch):
    """Two trials and the study run: the end-of-sweep command names them all; rerunning the finished sweep
    adds a second offline piece of the SAME study run (one W&B run once synced), not a second study run."""
    import optuna

    monkeypatch.chdir(tmp_path)
    path = sweep_file(tmp_path, study="sync-all", n_trials=2, out_dir="runs", overrides=FAST)
    out = _sweep(path, tmp_path)
    command = _sync_command(out)
    assert command == "wandb sync runs/sync-all/wandb runs/sync-all/trial-*/wandb", out
    assert out.count("upload them all with") == 1
    assert _dry_run(command, tmp_path) == 3

    out2 = _sweep(path, tmp_path)   # finished: no new trial, the study run is logged again
    assert _sync_command(out2) == command
    assert _dry_run(command, tmp_path) == 4
    studies = [read_offline_run(f) for f in offline_runs(tmp_path / "runs" / "sync-all" / "wandb")]
    assert [s.job_type for s in studies] == ["study", "study"]
    assert studies[0].run.run_id == studies[1].run.run_id   # resumed: one W&B run
    first, second = ([h for h in s.history if "value" in h] for s in studies)
    assert sorted(h["trial"] for h in first) == [0, 1] and second == []   # no trial logged twice
    steps = [h["_step"] for s in studies for h in s.history]
    assert steps == sorted(set(steps))   # the resumed piece continues W&B's step
    study = optuna.load_study(study_name="sync-all", storage=f"sqlite:///{tmp_path / 'runs' / 'sync-all' / 'study.db'}")
    assert study.user_attrs["wandb_study_run"]["id"] == studies[0].run.run_id
    assert study.user_attrs["wandb_study_run"]["logged_trials"] == [0, 1]
    assert _wandb_in(fake_home) == []
    trial_runs = [read_offline_run(f) for f in offline_runs(tmp_path / "runs" / "sync-all") if "trial-" in str(f)]
    assert sorted(r.name for r in trial_runs) == ["trial-0", "trial-1"]
    assert read_jsonl(tmp_path / "runs" / "sync-all" / "trial-0" / "metrics.jsonl")
