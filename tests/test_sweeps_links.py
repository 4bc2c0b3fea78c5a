"""Optuna <-> W&B, both ways: a study names its metrics for Optuna's tools, each trial stores its W&B run (id,
path, URL, local folder) and `ddpm trials` and the report show it; `tracking.log_model` uploads best.pt as a
W&B model artifact; the run's final state is the summary key `trial_state` (W&B's UI has its own State).

Real components: tiny sweeps on SQLite, real offline W&B runs read back from disk (tests/wandb_reader.py)."""
from __future__ import annotations

import csv
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import create_trial

from ddpm.report.blocks import Link, Table
from ddpm.report.html import block_html
from ddpm.report.markdown import block_md
from ddpm.sweeps.listing import trial_table
from ddpm.sweeps.record import TrialRecord
from helpers import run_cli, sweep_file, wandb_offline_env
from wandb_reader import offline_runs, read_offline_run

URL = "https://wandb.ai/team/ddpm-sweeps/runs/abc123xy"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _storage(tmp_path, study: str) -> str:
    return f"sqlite:///{tmp_path / 'runs' / study / 'study.db'}"


@pytest.mark.slow
def test_offline_trial_stores_its_wandb_run_and_ddpm_trials_and_the_report_show_it(tmp_path, monkeypatch):
    from ddpm.report import write_report
    from ddpm.sweeps import load_sweep, run_study

    wandb_offline_env(monkeypatch, tmp_path)
    study_name = _name("links")
    path = sweep_file(tmp_path, study=study_name, n_trials=1,
                      overrides={"tracking.wandb": "offline", "tracking.log_model": True})
    run_study(load_sweep(path))

    study = optuna.load_study(study_name=study_name, storage=_storage(tmp_path, study_name))
    assert study.metric_names == ["test_loss"]          # optuna-dashboard's axis, not "Objective 0"
    (trial,) = study.trials
    attrs = trial.user_attrs
    rec = TrialRecord.from_trial(trial)
    assert rec.wandb_run_id and attrs["wandb_run_id"] == rec.wandb_run_id
    assert "wandb_url" not in attrs and "wandb_run_path" not in attrs   # offline: no server knows the run yet
    # the recorded folder is the run W&B wrote: its id, its final state, best.pt as a model artifact
    (folder,) = offline_runs(tmp_path / "runs" / study_name / "trial-0")
    assert folder.resolve() == (tmp_path / "runs" / study_name / "trial-0" / "wandb" / folder.name).resolve()
    assert Path(rec.wandb_dir).expanduser().resolve() == folder.resolve()
    wb = read_offline_run(folder)
    assert wb.run.run_id == rec.wandb_run_id
    assert wb.config["study"] == study_name and wb.config["trial"] == 0      # and W&B -> Optuna
    assert wb.summary["trial_state"] == "complete" and "state" not in wb.summary
    (model,) = [a for a in wb.artifacts if a.type == "model"]
    assert model.name == f"{study_name}-trial-0-best" and [c.path for c in model.manifest.contents] == ["best.pt"]

    # ddpm trials: a W&B run column holding the id
    r = run_cli("trials", study_name, "--out-dir", str(tmp_path / "runs"), env={"COLUMNS": "200"})
    out = r.stdout + r.stderr    # the console writes to stderr
    assert r.returncode == 0, out
    assert "W&B run" in out and rec.wandb_run_id in out, out
    # the report: the top-trials table and trials.csv
    html = write_report(study_name, storage=_storage(tmp_path, study_name), out_dir=tmp_path / "report")
    assert f"<td>{rec.wandb_run_id}</td>" in html.read_text()   # offline: the id, no link
    (row,) = csv.DictReader((tmp_path / "report" / "trials.csv").open())
    assert row["wandb_run_id"] == rec.wandb_run_id and row["wandb_url"] == "" and row["wandb_dir"] == rec.wandb_dir


@pytest.mark.slow
@pytest.mark.parametrize("log_model", [True, False])
def test_log_model_switch_uploads_the_best_checkpoint(tiny_cfg, tmp_path, monkeypatch, log_model):
    from ddpm.tracking import tracker_callback
    from ddpm.train import train

    wandb_offline_env(monkeypatch, tmp_path)
    cfg = tiny_cfg(**{"data.limit": 128, "data.test_limit": 64, "train.grid_every": 0, "name": "plain",
                      "tracking.wandb": "offline", "tracking.log_model": log_model})
    run = train(cfg, callbacks=[tracker_callback(cfg, job_type="train")], quiet=True)   # as `ddpm train` does
    (folder,) = offline_runs(run.run_dir / "wandb")
    wb = read_offline_run(folder)
    models = [a for a in wb.artifacts if a.type == "model"]
    if log_model:
        assert [m.name for m in models] == ["plain-best"]
        assert [c.path for c in models[0].manifest.contents] == ["best.pt"]
        assert models[0].manifest.contents[0].size == run.best_checkpoint.stat().st_size
    else:
        assert models == []
    assert wb.summary["trial_state"] == "complete"


@pytest.mark.slow
def test_an_existing_study_gets_its_metric_names_when_next_opened(tmp_path):
    from ddpm.sweeps import load_sweep, open_sweep_study

    study_name = _name("names")
    path = sweep_file(tmp_path, study=study_name, objectives=[{"metric": "test_loss", "direction": "minimize"}])
    url = _storage(tmp_path, study_name)
    (tmp_path / "runs" / study_name).mkdir(parents=True)
    old = optuna.create_study(study_name=study_name, storage=url, direction="minimize")  # as earlier versions left it
    old.set_user_attr("spec", {"study": study_name})
    old.set_user_attr("objectives", [{"metric": "test_loss", "direction": "minimize"}])
    assert optuna.load_study(study_name=study_name, storage=url).metric_names is None
    open_sweep_study(load_sweep(path))
    assert optuna.load_study(study_name=study_name, storage=url).metric_names == ["test_loss"]


def _study_with_runs() -> optuna.Study:
    """Three finished trials as a sweep stores them: online (id, path, URL), offline (id, folder), none."""
    study = optuna.create_study(study_name="links")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    records = [TrialRecord(wandb_run_id="abc123xy", wandb_run_path="team/ddpm-sweeps/abc123xy", wandb_url=URL),
               TrialRecord(wandb_run_id="off00001", wandb_dir="runs/links/trial-1/wandb/offline-run-x-off00001"),
               TrialRecord(wandb_run_id="evil0001", wandb_url="javascript:alert(1)"),
               TrialRecord()]
    for i, rec in enumerate(records):
        study.add_trial(create_trial(value=float(i), params={"x": i / 10}, distributions=dist,
                                     user_attrs=rec.to_user_attrs()))
    return study


def test_ddpm_trials_table_links_online_runs_only():
    table = trial_table(_study_with_runs())
    col = [c.name for c in table.columns].index("W&B run")
    assert [r.cells[col] for r in table.rows] == ["abc123xy", "off00001", "evil0001", "-"]
    assert table.rows[0].links == {col: URL}
    assert all(not r.links for r in table.rows[1:])       # offline: no URL; a javascript: URL is never a link
    assert table.run_urls == [f"#0 {URL}"]


def test_a_study_without_wandb_runs_has_no_wandb_column():
    study = optuna.create_study()
    study.add_trial(create_trial(value=1.0, params={}, distributions={}))
    assert "W&B run" not in [c.name for c in trial_table(study).columns]


def test_report_top_trials_link_online_runs(tmp_path):
    from ddpm.report.collect import Objective, StudyData, TrialData
    from ddpm.report.sections import ReportContext, top_trials

    study = _study_with_runs()
    trials = [TrialData(t, None) for t in study.trials]
    data = StudyData(study, "memory", [], [Objective("value", "minimize")], trials, {}, None, None)
    (table,) = [b for b in top_trials(ReportContext(data, trials[0], None, tmp_path)).blocks if isinstance(b, Table)]
    col = table.columns.index("W&B run")
    assert [r[col] for r in table.rows] == [Link("abc123xy", URL), "off00001", "evil0001", "–"]
    html = block_html(table)
    assert f'<a href="{URL}" target="_blank" rel="noopener noreferrer">abc123xy</a>' in html
    assert "javascript:" not in html and html.count("<a ") == 1
    assert f"[abc123xy](<{URL}>)" in block_md(table)


def test_markdown_link_cannot_break_out_of_its_cell():
    md = block_md(Table(["run"], [[Link("a|b", "https://x.test/a b|c>d")]]))
    assert md.splitlines()[-1] == "| [a\\|b](<https://x.test/a%20b%7Cc%3Ed>) |"
