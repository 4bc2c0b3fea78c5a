"""Many machines, one study: nothing shared but the PostgreSQL storage and the artifact store.

"Machine A" (one run root) runs a trial and is SIGKILLed after the trial's first epoch reached the store; its run
root then goes away. "Machine B" (another run root) retries the trial from the store's checkpoint, after the stored
epoch, and the study completes. `ddpm report` on a third, empty machine writes the report with the trials' images
from the store. The store is a fixture (``artifact_store``) so the same test runs against any store kind.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from helpers import cli_env, postgres_url, sweep_file
from ddpm.io import read_jsonl
from ddpm.sweeps import load_sweep, open_storage, open_sweep_study
from ddpm.sweeps.artifacts import open_artifact_store
from ddpm.sweeps.record import TrialRecord
from ddpm.sweeps.runner import STORAGE_ENV, Budget
from ddpm.sweeps.trial_outputs import download

pytestmark = pytest.mark.slow

EPOCHS = 3


@pytest.fixture(params=["file", "s3"])
def artifact_store(request, tmp_path) -> str:
    """A store on neither machine's run root: a folder, or a bucket on the test's real S3 server (SeaweedFS on
    loopback; the AWS_* variables reach every worker and report process through the environment)."""
    if request.param == "s3":
        request.getfixturevalue("s3_env")
        return f"s3://remote-{uuid.uuid4().hex[:8]}/study"
    path = tmp_path / "shared-store"
    path.mkdir()
    return str(path)


def _machine(tmp_path: Path, name: str, study: str, store: str) -> Path:
    """A machine's folder holding its own copy of the sweep file; its run root is <folder>/runs."""
    root = tmp_path / name
    root.mkdir()
    return sweep_file(root, study=study, n_trials=2, artifacts=store,
                      overrides={"train.epochs": EPOCHS, "data.limit": 384, "train.batch_size": 32},
                      guidance={"omegas": [0, 2], "n": 20, "sampler": "ddim", "steps": 5},
                      objectives=[{"metric": "fid", "direction": "minimize"}],
                      heartbeat={"interval": 1, "grace_period": 4, "max_retry": 2})


def _worker(path: Path, url: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ddpm", "worker", str(path), "--threads", "1"], cwd=path.parent,
                            env={**cli_env(), STORAGE_ENV: url}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _kill_after_first_stored_epoch(study: optuna.Study, proc: subprocess.Popen) -> int:
    """SIGKILL the worker once its running trial's record points at a stored last.pt; returns the trial number."""
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if "checkpoints/last.pt" in TrialRecord.from_trial(t).outputs:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return t.number
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"no epoch reached the store in time: {proc.communicate()[0][-3000:]}")


def _stored_epochs(store: str, outputs: dict[str, str], tmp: Path) -> list[dict]:
    dest = tmp / f"metrics-{uuid.uuid4().hex[:6]}.jsonl"
    download(open_artifact_store(store, create=False), outputs["metrics.jsonl"], dest)
    return read_jsonl(dest)


def test_trial_killed_on_machine_a_resumes_on_machine_b_and_reports_anywhere(tmp_path, tiny_classifier,
                                                                              artifact_store):
    url = postgres_url("the cross-machine resume test")
    study_name = f"remote-{uuid.uuid4().hex[:8]}"
    path_a = _machine(tmp_path, "machine-a", study_name, artifact_store)
    path_b = _machine(tmp_path, "machine-b", study_name, artifact_store)
    study = open_sweep_study(load_sweep(path_a, storage=url))
    procs: list[subprocess.Popen] = []
    try:
        t0 = time.time()
        procs.append(_worker(path_a, url))
        killed = _kill_after_first_stored_epoch(study, procs[0])
        t_kill = time.time() - t0
        shutil.move(tmp_path / "machine-a" / "runs", tmp_path / "machine-a-disk")   # machine A is gone
        failed_outputs = TrialRecord.from_trial(study.get_trials(deepcopy=False)[killed]).outputs
        stored = _stored_epochs(artifact_store, failed_outputs, tmp_path)
        procs.append(_worker(path_b, url))
        out_b, _ = procs[1].communicate(timeout=600)
        t_b = time.time() - t0 - t_kill
        assert procs[1].returncode == 0, out_b
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    try:
        trials = optuna.load_study(study_name=study_name, storage=open_storage(url)).get_trials()
        _check_resumed(trials, killed, stored, out_b, tmp_path)
        b = Budget.of(optuna.load_study(study_name=study_name, storage=open_storage(url)))
        assert b.live == 2 and b.running == 0 and b.waiting == 0   # every trial exactly once, none lost
        _check_store(artifact_store, trials)
        print(f"\nkilled trial {killed} after {t_kill:.0f}s with {len(stored)} stored epoch(s); "
              f"machine B finished the study in {t_b:.0f}s")
        shutil.move(tmp_path / "machine-b" / "runs", tmp_path / "machine-b-disk")   # machine B is gone too
        _check_confirm_anywhere(tmp_path, study_name, url, trials)
        _check_report_anywhere(tmp_path, study_name, url)
    finally:
        optuna.delete_study(study_name=study_name, storage=open_storage(url))


def _check_resumed(trials: list, killed: int, stored: list[dict], out_b: str, tmp_path: Path) -> None:
    """The retry ran on B from the stored epoch: earlier epochs came from the store, not from training."""
    by_number = {t.number: t for t in trials}
    assert by_number[killed].state == TrialState.FAIL
    retries = [t for t in trials if TrialRecord.from_trial(t).retried_trial == killed]
    assert len(retries) == 1, [(t.number, t.state) for t in trials]
    retry = retries[0]
    record = TrialRecord.from_trial(retry)
    assert retry.state == TrialState.COMPLETE and retry.params == by_number[killed].params
    resumed = len(stored)
    assert 1 <= resumed <= EPOCHS and record.resumed_from_epoch == resumed and record.retry_of == killed
    run_b = Path(record.run_dir)
    assert run_b.is_relative_to(tmp_path / "machine-b")
    rows = read_jsonl(run_b / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    assert rows[:resumed] == stored                     # the stored epochs, as machine A trained them
    trained = [n for n in range(1, EPOCHS + 1) if f"trial {retry.number} epoch {n}/{EPOCHS}" in out_b]
    assert trained == list(range(resumed + 1, EPOCHS + 1)), out_b   # B trained only the epochs after them
    assert f"resuming {run_b} after epoch {resumed} (downloaded from the artifact store" in out_b
    assert all(t.state == TrialState.COMPLETE for t in trials if t.number != killed)


def _check_store(store: str, trials: list) -> None:
    """Every file a trial's record names is in the store (the failed trial's too: its retry removed none of
    them); in a folder store, superseded copies were removed (a kill mid-upload may leave one epoch's orphans)."""
    from ddpm.sweeps.trial_outputs import EPOCH_FILES

    s = open_artifact_store(store, create=False)
    referenced = set()
    for t in trials:
        record = TrialRecord.from_trial(t)
        referenced |= set(record.outputs.values()) | set(record.artifacts.values())
        for artifact_id in record.outputs.values():
            s.open_reader(artifact_id).close()
    done = [TrialRecord.from_trial(t) for t in trials if t.state == TrialState.COMPLETE]
    for record in done:
        assert {"checkpoints/last.pt", "checkpoints/best.pt", "metrics.jsonl", "config.yaml", "eval.json",
                "grids/omega0.png", "grids/omega2.png"} <= set(record.outputs)
    if Path(store).is_dir():
        orphans = {p.name for p in Path(store).iterdir()} - referenced
        assert len(orphans) <= len(EPOCH_FILES), orphans


def _check_confirm_anywhere(tmp_path: Path, study_name: str, url: str, trials: list) -> None:
    """The confirmation stage re-scores a trial whose run folder is on no machine here: best.pt from the store."""
    from ddpm.sweeps.confirm import ConfirmSpec, confirm_trial

    store = optuna.load_study(study_name=study_name, storage=open_storage(url)).user_attrs["artifact_store"]
    spec = load_sweep(_machine(tmp_path, "machine-c", study_name, store), storage=url)
    done = next(t for t in trials if t.state == TrialState.COMPLETE)
    row = confirm_trial(done, spec, ConfirmSpec(top_k=1, n=20, seeds=1), "cpu", location=store)
    assert row["n"] == 20 and row["fid_lo"] <= row["fid"] <= row["fid_hi"]
    assert Path(row["checkpoint"]).is_relative_to(tmp_path / "machine-c" / "runs" / study_name / ".store-cache")


def _report(cwd: Path, study_name: str, url: str, out: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddpm", "report", study_name, "--storage", url, "--out", out],
                          cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300)


def _check_report_anywhere(tmp_path: Path, study_name: str, url: str) -> None:
    """`ddpm report` on a machine with none of the run folders: the same report, its images from the store."""
    machine_c = tmp_path / "machine-c"   # holds only its sweep file and what it downloaded
    r = _report(machine_c, study_name, url, "report")
    assert r.returncode == 0, r.stdout + r.stderr
    report = machine_c / "report"
    images = {p.name for p in (report / "img").glob("*.png")}
    assert any(n.startswith("grid-top-trial") for n in images) and {"grid-omega0.png", "grid-omega2.png"} <= images
    assert "losses.png" in images, images                     # every trial's metrics.jsonl, from the store
    assert "has no sample grids" not in (report / "report.md").read_text()
    assert any((report / ".store-cache").iterdir())
    # the same report where the run folders are: machine A's and B's disks back, written from there
    for name in ("a", "b"):
        shutil.move(tmp_path / f"machine-{name}-disk", tmp_path / f"machine-{name}" / "runs")
    r = _report(tmp_path / "machine-b", study_name, url, str(tmp_path / "report-local"))
    assert r.returncode == 0, r.stdout + r.stderr
    local = tmp_path / "report-local"
    assert not (local / ".store-cache").exists()               # nothing fetched where the run folders are
    assert {p.name for p in (local / "img").glob("*.png")} == images
    for name in sorted(n for n in images if n.startswith("grid-")):
        assert (local / "img" / name).read_bytes() == (report / "img" / name).read_bytes(), name
    assert (local / "trials.csv").read_text() == (report / "trials.csv").read_text()
    assert (local / "best_config.yaml").read_text() == (report / "best_config.yaml").read_text()
