"""W&B tracking, for real: offline runs written by wandb itself and read back from disk (tests/wandb_reader.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddpm.io import read_jsonl
from ddpm.train import Callback, train
from ddpm.tracking import Tracker, WandbTracker, tracker_callback
from wandb_reader import offline_runs, read_offline_run

pytestmark = pytest.mark.slow

# smaller than conftest.TINY: fewer images, a 2-step respaced sampler for the per-epoch grid
FAST = {"data.limit": 128, "data.test_limit": 64, "sample.steps": 2, "tracking.wandb": "offline"}
NO_GRID = {**FAST, "train.grid_every": 0}


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """Real W&B in offline mode, every W&B folder under tmp_path, no network."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)   # honoured now: runs must land in their run folders
    for var, sub in (("WANDB_CONFIG_DIR", "wandb-config"),
                     ("WANDB_CACHE_DIR", "wandb-cache"), ("WANDB_DATA_DIR", "wandb-data"),
                     ("WANDB_ARTIFACT_DIR", "wandb-artifacts")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")
    return tmp_path


def _only_run(run_dir: Path):
    runs = offline_runs(run_dir / "wandb")
    assert len(runs) == 1, runs
    return read_offline_run(runs[0])


def test_trial_run_mirrors_metrics_grids_config_and_guidance(tiny_cfg, wandb_offline):
    cfg = tiny_cfg(**{**FAST, "train.epochs": 2, "name": "trial-3"})
    params = {"model.num_feat": 8, "diffusion.schedule": "linear"}
    tracker = tracker_callback(cfg, job_type="trial", group="study-a", name="trial-3",
                               extra_config={"study": "study-a", "trial": {"number": 3, "params": params},
                                             "storage": "postgresql://ddpm:hunter2@db/optuna"},
                               tags=["study-a"], finish_on_train_end=False, log_checkpoint=True)
    assert isinstance(tracker, WandbTracker)
    run = train(cfg, callbacks=[tracker], quiet=True)
    # a sweep adds the guidance table after train() returns, then closes the run itself
    assert tracker.active
    rows = [{"omega": w, "fid": 30.0 - 5 * w, "floor": 1.0, "accuracy": 0.5 + 0.1 * w, "diversity": 0.2,
             "seconds": 1.5, "grid": f"grids/epoch-00{1 + i}.png"} for i, w in enumerate([0.0, 2.0])]
    tracker.log_guidance(rows, run.run_dir)
    tracker.log_summary({"best/fid": 20.0, "best/omega": 2.0})
    tracker.finish("complete")
    assert not tracker.active

    local = read_jsonl(run.run_dir / "metrics.jsonl")
    wb = _only_run(run.run_dir)
    epochs = [h for h in wb.history if "train/noise_loss" in h]
    assert [h["epoch"] for h in epochs] == [1, 2]
    assert [h["train/noise_loss"] for h in epochs] == [r["train_loss"] for r in local]
    assert [h["test/noise_loss"] for h in epochs] == [r["test_loss"] for r in local]
    assert [h["train/lr"] for h in epochs] == [r["lr"] for r in local]
    assert all(h["train/images_per_s"] > 0 for h in epochs)
    # one grid image per epoch under files/media/images/
    grid_files = [f for f in wb.files if f.startswith("media/images/")]
    assert len(grid_files) == 2 and len(wb.images()) == 2
    assert sorted(h["samples/grid.path"] for h in epochs) == sorted(grid_files)
    steps = [h["_step"] for h in wb.history]
    assert steps == sorted(set(steps))
    # grouping, naming and config as the dashboard sees them
    assert (wb.group, wb.job_type, wb.name) == ("study-a", "trial", "trial-3")
    assert {"linear", "width-8", "ddpm", "study-a"} <= set(wb.tags)
    assert wb.config["trial"] == {"number": 3, "params": params}
    assert wb.config["study"] == "study-a"
    assert wb.config["model"]["num_feat"] == 8 and wb.config["diffusion"]["T"] == cfg.diffusion.T
    assert wb.config["storage"] == "postgresql://ddpm:***@db/optuna"
    assert "hunter2" not in (wb.dir / f"run-{wb.run.run_id}.wandb").read_bytes().decode("latin-1")
    # guidance table and charts, summary, final state
    guidance = [h for h in wb.history if "guidance/table._type" in h]
    assert len(guidance) == 1 and guidance[0]["guidance/table._type"] == "table-file"
    table = json.loads((wb.dir / "files" / guidance[0]["guidance/table.path"]).read_text())
    assert table["columns"] == ["omega", "fid", "fid_lo", "fid_hi", "floor", "accuracy", "accuracy_lo", "accuracy_hi",
                                "kid", "kid_lo", "kid_hi", "n", "diversity", "seconds", "grid"]
    assert [r[0] for r in table["data"]] == [0.0, 2.0]
    assert any(k.startswith("guidance/fid_vs_omega") for k in guidance[0])
    # a table with images travels as a run_table artifact holding the guidance grids
    (art,) = [a for a in wb.artifacts if a.type == "run_table" and "guidancetable" in a.name]
    assert len([c for c in art.manifest.contents if c.path.startswith("media/images/")]) == 2
    (model,) = [a for a in wb.artifacts if a.type == "model"]
    assert model.name == "study-a-trial-3-best" and [c.path for c in model.manifest.contents] == ["best.pt"]
    assert wb.summary["trial_state"] == "complete" and "state" not in wb.summary  # W&B's UI has its own State
    assert wb.summary["best/test_noise_loss"] == min(r["test_loss"] for r in local)
    assert wb.summary["best/fid"] == 20.0 and wb.summary["epochs_completed"] == 2
    assert wb.exit_code == 0


class _PruneAtFirstEpoch(Callback):
    def on_epoch_end(self, run, record):
        import optuna

        raise optuna.TrialPruned("pruned at epoch 1 for the test")


def test_sequential_runs_do_not_collide_and_pruned_state_is_recorded(tiny_cfg, wandb_offline):
    import optuna

    dirs = []
    for n in range(2):
        cfg = tiny_cfg(**{**NO_GRID, "name": f"trial-{n}", "train.epochs": 2 - n})
        tracker = tracker_callback(cfg, job_type="trial", group="study-b", name=f"trial-{n}",
                                   extra_config={"trial": {"number": n}})
        callbacks = [tracker] + ([_PruneAtFirstEpoch()] if n == 1 else [])
        if n == 1:
            with pytest.raises(optuna.TrialPruned):
                train(cfg, callbacks=callbacks, quiet=True)
        else:
            train(cfg, callbacks=callbacks, quiet=True)
        dirs.append(cfg.run_dir)
    first, second = (_only_run(d) for d in dirs)
    assert first.run.run_id != second.run.run_id
    assert (first.name, second.name) == ("trial-0", "trial-1")
    assert first.config["trial"] == {"number": 0} and second.config["trial"] == {"number": 1}
    assert [h["epoch"] for h in first.history if "train/noise_loss" in h] == [1, 2]
    assert [h["epoch"] for h in second.history if "train/noise_loss" in h] == [1]
    assert first.summary["trial_state"] == "complete"
    assert second.summary["trial_state"] == "pruned" and "epoch 1" in second.summary["trial_state_reason"]
    assert "pruned" in second.tags


def test_training_finishes_when_wandb_cannot_start(tiny_cfg, wandb_offline, capsys):
    cfg = tiny_cfg(**NO_GRID)
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "wandb").write_text("a file where W&B wants its folder: fails even as root\n")
    tracker = tracker_callback(cfg, job_type="train")
    run = train(cfg, callbacks=[tracker], quiet=True)
    assert len(read_jsonl(run.run_dir / "metrics.jsonl")) == cfg.train.epochs
    assert run.best_checkpoint.is_file() and run.last_checkpoint.is_file()
    assert run.status == "complete" and not tracker.active
    err = capsys.readouterr().err
    assert err.count("warning: W&B start failed") == 1, err


def test_disabled_tracking_writes_nothing(tiny_cfg, wandb_offline, monkeypatch):
    cfg = tiny_cfg(**{"tracking.wandb": "offline"})
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the env switch wins over the config (tests, CI)
    for configured in ("offline", "disabled"):
        cfg.tracking.wandb = configured
        tracker = tracker_callback(cfg, job_type="eval")
        assert type(tracker) is Tracker
        tracker.start(cfg.run_dir)  # ddpm eval: a run without training
        tracker.log_guidance([{"omega": 0.0, "fid": 1.0, "grid": "x.png"}], cfg.run_dir)
        tracker.log_summary({"best/fid": 1.0})
        tracker.finish("complete")
    assert not (cfg.run_dir / "wandb").exists()


def test_study_run_logs_history_trials_and_importances(tiny_cfg, wandb_offline):
    import optuna

    from ddpm.tracking import log_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="study-c", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(t):
        x, w = t.suggest_float("diffusion.mask_p", 0.0, 0.5), t.suggest_int("model.num_feat", 8, 32, step=8)
        if t.number == 3:
            raise optuna.TrialPruned()
        return (x - 0.2) ** 2 + 0.01 * w

    study.optimize(objective, n_trials=8)
    cfg = tiny_cfg(**{"tracking.wandb": "offline"})
    run_id = log_study(study, cfg=cfg, dir=wandb_offline / "study")
    assert run_id
    wb = read_offline_run(offline_runs(wandb_offline / "study")[0])
    assert (wb.group, wb.job_type, wb.name) == ("study-c", "study", "study-study-c")
    rows = [h for h in wb.history if "value" in h]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert [h["trial"] for h in rows] == [t.number for t in complete]
    assert [h["value"] for h in rows] == [t.value for t in complete]
    best = [h["best_value"] for h in rows]
    assert best == sorted(best, reverse=True) and best[-1] == study.best_value
    assert wb.summary["best/value"] == study.best_value and wb.summary["best/trial"] == study.best_trial.number
    assert wb.summary["n_pruned"] == 1 and wb.summary["n_complete"] == 7
    assert {"importance/diffusion.mask_p", "importance/model.num_feat"} <= set(wb.summary)
    # the report's numbers (ddpm.report.figures) are the ones W&B shows: one function, one evaluator
    from ddpm.report.figures import param_importances

    _, report_numbers = param_importances(study, 0, "value")
    assert report_numbers == {k: wb.summary[f"importance/{k}"] for k in report_numbers}
    assert any(k.startswith("study/trials") for h in wb.history for k in h)
    assert any(k.startswith("study/param_importances") for h in wb.history for k in h)
