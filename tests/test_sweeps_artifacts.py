"""The Optuna artifact store (ddpm.sweeps.artifacts) and `ddpm dashboard` (ddpm.sweeps.dashboard): a trial's grids
and best checkpoint uploaded with Optuna's artifact API, read back through the store and through optuna-dashboard's
own HTTP API started on a local port."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import optuna
import pytest

from helpers import REPO, cli_env, closed_port, sweep_file
from ddpm.errors import ConfigError
from ddpm.sweeps.artifacts import (ARTIFACT_ATTR, open_artifact_store, record_artifact_location,
                                   study_artifact_location, upload_files)
from ddpm.sweeps.record import TrialRecord


def _study(tmp_path: Path, name: str = "art") -> optuna.Study:
    from ddpm.sweeps import open_storage

    return optuna.create_study(study_name=name, storage=open_storage(f"sqlite:///{tmp_path / 'runs' / name / 'study.db'}"))


def _run_dir(tmp_path: Path) -> Path:
    """A trial's run folder as a scored trial leaves it (the bytes differ per file)."""
    run = tmp_path / "runs" / "art" / "trial-0"
    (run / "grids").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "grids" / "omega0.png").write_bytes(b"\x89PNG omega 0")
    (run / "grids" / "omega2.png").write_bytes(b"\x89PNG omega 2")
    (run / "checkpoints" / "best.pt").write_bytes(b"best checkpoint")
    (run / "checkpoints" / "last.pt").write_bytes(b"last checkpoint")   # not uploaded: best.pt is
    return run


def test_a_trial_uploads_its_grids_and_best_checkpoint(tmp_path):
    """Uploaded through Optuna's artifact API into a folder store: the trial's record lists each file's id, Optuna
    lists their metadata (a checkpoint is octet-stream, not whatever the system's MIME table guesses for .pt) and
    each artifact downloads with the run folder's bytes."""
    study = _study(tmp_path)
    run = _run_dir(tmp_path)
    location = record_artifact_location(study, None, tmp_path / "runs")
    assert Path(location) == tmp_path / "runs" / "art" / "artifacts" and Path(location).is_dir()
    trial = study.ask()
    ids = {Path(rel).name: i for rel, i in upload_files(trial, run, open_artifact_store(location)).items()}
    study.tell(trial, 1.0)
    frozen = study.trials[0]
    assert TrialRecord.from_trial(frozen).artifacts == ids
    assert set(ids) == {"omega0.png", "omega2.png", "best.pt"}
    metas = {m.filename: m for m in optuna.artifacts.get_all_artifact_meta(frozen, storage=study._storage)}
    assert metas["best.pt"].mimetype == "application/octet-stream" and metas["omega2.png"].mimetype == "image/png"
    store = open_artifact_store(location, create=False)
    for name, rel in (("omega2.png", "grids/omega2.png"), ("best.pt", "checkpoints/best.pt")):
        out = tmp_path / f"down-{name}"
        optuna.artifacts.download_artifact(artifact_store=store, file_path=str(out), artifact_id=ids[name])
        assert out.read_bytes() == (run / rel).read_bytes()
    assert TrialRecord.from_trial(frozen).to_user_attrs() == {}   # read from Optuna's system attributes only


def test_one_study_one_store(tmp_path):
    """The store is recorded with the study; another spelling of it is the same store; another store is refused."""
    study = _study(tmp_path)
    mine = str(tmp_path / "store")
    assert record_artifact_location(study, mine, tmp_path / "runs") == mine
    assert study.user_attrs[ARTIFACT_ATTR] == mine and study_artifact_location(study, "elsewhere") == mine
    assert record_artifact_location(study, f"file://{tmp_path}/./store", tmp_path / "runs") == mine
    assert record_artifact_location(study, None, tmp_path / "runs") == mine
    with pytest.raises(ConfigError, match="keeps its artifacts in"):
        record_artifact_location(study, str(tmp_path / "other"), tmp_path / "runs")
    assert not (tmp_path / "other").exists()


def test_unknown_store_kind_is_a_one_line_error(tmp_path, capsys):
    """A scheme no opener is registered for: the sweep file key and the flag name what is allowed."""
    from ddpm.cli import main
    from ddpm.sweeps.spec import load_sweep

    with pytest.raises(ConfigError, match=r"sweep.yaml: artifacts = 'gs://bucket/x': must be a folder path "
                                          r"\(file://, s3:// or a plain path\)"):
        load_sweep(sweep_file(tmp_path, artifacts="gs://bucket/x"))
    assert main(["sweep", str(sweep_file(tmp_path, name="ok.yaml")), "--artifacts", "gs://b"]) == 2
    assert "--artifacts: artifacts = 'gs://b': must be a folder path" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()   # refused before any study or run folder was made
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        (tmp_path / "f").write_text("x")
        open_artifact_store(str(tmp_path / "f"))


def _one_line(capsys, *needles: str) -> None:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("ddpm dashboard: error: ") and "Traceback" not in err[0], err
    for n in needles:
        assert n in err[0], (n, err[0])


def test_dashboard_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """No such study; optuna-dashboard not installed (made unimportable); a port already in use."""
    from ddpm.cli import main

    out = str(tmp_path / "runs")
    assert main(["dashboard", "nosuch", "--out-dir", out]) == 2
    _one_line(capsys, "no study 'nosuch'", "--storage")
    assert not (tmp_path / "runs").exists()        # nothing created while looking
    _study(tmp_path, "there")
    assert main(["dashboard", "other", "--out-dir", out, "--storage", f"sqlite:///{tmp_path}/runs/there/study.db"]) == 2
    _one_line(capsys, "study 'other' is not in", "studies there: there")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dashboard", "there", "--out-dir", out, "--port", str(port)]) == 2
    _one_line(capsys, f"cannot listen on 127.0.0.1:{port}", "another --port")
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)   # as on a machine without the dashboard extra
    assert main(["dashboard", "there", "--out-dir", out]) == 2
    _one_line(capsys, "optuna-dashboard is not installed", "ddpm-sweeps[dashboard]", "scripts/setup.sh")


# ----------------------------------------------------------------------------------------------
# optuna-dashboard's API on a study that a tiny sweep made


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def start_dashboard(study: str, out_dir: Path, cwd: Path) -> tuple[subprocess.Popen, str]:
    """``ddpm dashboard STUDY`` on a free local port; returns the process and the server's base URL once it answers."""
    port = closed_port()
    proc = subprocess.Popen([sys.executable, "-m", "ddpm", "dashboard", study, "--out-dir", str(out_dir),
                             "--port", str(port)], cwd=cwd, env=cli_env(PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()   # printed once the port is bound
    assert line.startswith(f"optuna-dashboard: http://127.0.0.1:{port}/dashboard/studies/"), line + proc.stdout.read()
    return proc, f"http://127.0.0.1:{port}"


@pytest.mark.slow
def test_optuna_dashboard_lists_the_study_and_a_trials_artifacts(tmp_path, monkeypatch):
    """A tiny sweep with a guidance grid; `ddpm dashboard` serves it: /api/studies lists the study, its detail names
    the objective (study.set_metric_names) and each completed trial's grids and best.pt, downloadable from the
    dashboard with the run folder's bytes; in a browser the trial's page shows the grids."""
    from ddpm.sweeps import load_sweep, run_study

    monkeypatch.chdir(tmp_path)
    spec = load_sweep(sweep_file(tmp_path, study="dash", guidance={"omegas": [0, 2], "n": 20, "sampler": "ddim",
                                                                   "steps": 5},
                                 objectives=[{"metric": "fid", "direction": "minimize"}], n_trials=1))
    study = run_study(spec)
    if study.metric_names is None:  # the sweep names its metrics once issue 14's links land; until then, here
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["fid"])
    proc, base = start_dashboard("dash", tmp_path / "runs", tmp_path)
    try:
        summaries = json.loads(_get(f"{base}/api/studies"))["study_summaries"]
        assert [s["study_name"] for s in summaries] == ["dash"]
        sid = summaries[0]["study_id"]
        detail = json.loads(_get(f"{base}/api/studies/{sid}"))
        assert detail["name"] == "dash" and detail["objective_names"] == ["fid"]
        trial = detail["trials"][0]
        assert trial["state"] == "Complete"
        listed = {a["filename"]: a for a in trial["artifacts"]}
        assert set(listed) == {"omega0.png", "omega2.png", "best.pt"} and listed["omega2.png"]["mimetype"] == "image/png"
        run_dir = Path(study.trials[0].user_attrs["run_dir"])
        for name, rel in (("omega2.png", "grids/omega2.png"), ("best.pt", "checkpoints/best.pt")):
            body = _get(f"{base}/artifacts/{sid}/{trial['trial_id']}/{listed[name]['artifact_id']}")
            assert body == (run_dir / rel).read_bytes(), name
        assert (tmp_path / "runs" / "dash" / "artifacts").is_dir()   # the default store, beside the study
        _browser_shows_the_grids(f"{base}/dashboard/studies/{sid}/trials?numbers=0", tmp_path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _browser_shows_the_grids(url: str, tmp_path: Path) -> None:
    """optuna-dashboard in headless Chromium: the trial's page renders its artifacts, and both grids load as
    images served by the dashboard from the artifact store."""
    from helpers import require_chromium, screenshot_app

    require_chromium()
    (tmp_path / "profile").mkdir()
    page = screenshot_app(url, tmp_path / "dashboard.png", tmp_path / "profile",
                          wait_js="document.body.innerText.includes('omega2.png')")
    assert page["ready"], page["text"][:2000]
    assert "Artifacts" in page["text"] and "best.pt" in page["text"]
    grids = [i for i in page["images"] if "/artifacts/" in i["src"]]
    assert len(grids) == 2 and all(i["w"] >= 280 and i["h"] >= 56 for i in grids), page["images"]  # decoded: 20 digits, 10 a row
