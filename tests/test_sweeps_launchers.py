"""`ddpm sweep --launcher {local,ray,slurm}` (ddpm/sweeps/launchers/): the sweep file's launcher: section, the
SLURM job script (rendered: no SLURM here) and its jobs run by submitit's LocalExecutor, a real Ray cluster started
on loopback by the test with one worker SIGKILLed mid-trial, and one-line refusals that leave the study untouched.

Not run here: a real SLURM cluster (sbatch/srun/squeue); the script's contents are what can be checked."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from helpers import REPO, assert_one_line_error, assert_ran_in_workers, cli_env, closed_port, run_cli, sigint_default, \
    sweep_file
from ddpm.errors import ConfigError
from ddpm.io import read_jsonl
from ddpm.sweeps import load_sweep, open_sweep_study, run_study
from ddpm.sweeps.launchers import LAUNCHERS, sbatch_script
from ddpm.sweeps.launchers.slurm_array import LocalArrayLauncher
from ddpm.sweeps.runner import Budget
from test_engine_optional_deps import blocking_env

RAY = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")


# ----------------------------------------------------------------------------------------------
# the sweep file's launcher: section and the SLURM job script


def test_the_registry_holds_the_three_launchers():
    assert sorted(LAUNCHERS) == ["local", "ray", "slurm"]


def test_launcher_section_is_typed_and_checked(tmp_path):
    spec = load_sweep(sweep_file(tmp_path, launcher={"gpus_per_worker": 0.25, "cpus_per_worker": 2, "time": 90,
                                                     "partition": "gpu", "sbatch": {"account": "proj1"}}))
    o = spec.launcher
    assert (o.gpus_per_worker, o.cpus_per_worker, o.time, o.partition, o.sbatch) == (0.25, 2, 90, "gpu", {"account": "proj1"})
    assert load_sweep(sweep_file(tmp_path)).launcher.gpus_per_worker is None      # default: decided by the cluster
    for bad, needle in (({"gpus_per_worker": -1}, "launcher.gpus_per_worker = -1"), ({"time": 0}, "launcher.time = 0"),
                        ({"cpus_per_worker": 0}, "launcher.cpus_per_worker = 0"), ({"gpu": 1}, "unknown key 'gpu'"),
                        ({"time": "2h"}, "launcher.time")):
        with pytest.raises(ConfigError, match=needle):
            load_sweep(sweep_file(tmp_path, "bad.yaml", launcher=bad))


def test_sbatch_script_holds_the_array_and_its_resources(tmp_path):
    spec = load_sweep(sweep_file(tmp_path, study="slurm-script", launcher={
        "partition": "gpu", "time": 240, "cpus_per_worker": 4, "gpus_per_worker": 1, "mem_gb": 16,
        "setup": ["source /opt/venv/bin/activate"], "sbatch": {"account": "proj1", "qos": "normal"}}))
    text = sbatch_script(spec.launcher, tmp_path / "jobs", spec.study, workers=3)
    lines = set(text.splitlines())
    for line in ("#SBATCH --array=0-2%3", "#SBATCH --partition=gpu", "#SBATCH --time=240", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --mem=16GB", "#SBATCH --job-name=ddpm-slurm-script",
                 "#SBATCH --account=proj1", "#SBATCH --qos=normal", "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1",
                 "source /opt/venv/bin/activate"):
        assert line in lines, (line, text)
    assert f"#SBATCH --output={tmp_path / 'jobs'}/%A_%a_0_log.out" in lines
    assert "-m submitit.core._submit" in text and "srun" in text
    no_gpu = sbatch_script(load_sweep(sweep_file(tmp_path, "cpu.yaml")).launcher, tmp_path / "jobs", "cpu", workers=2)
    assert "#SBATCH --array=0-1%2" in no_gpu and "--gpus-per-node" not in no_gpu and "#SBATCH --time=60" in no_gpu


def test_sbatch_refuses_a_fraction_of_a_gpu(tmp_path):
    spec = load_sweep(sweep_file(tmp_path, launcher={"gpus_per_worker": 0.5}))
    with pytest.raises(ConfigError, match="SLURM gives whole GPUs"):
        sbatch_script(spec.launcher, tmp_path / "jobs", spec.study, workers=2)


# ----------------------------------------------------------------------------------------------
# bad input: one line, exit != 0, no traceback, the study as it was


@pytest.fixture
def existing_study(tmp_path):
    """A sweep file whose study exists (created, no trial run): (path, its storage file)."""
    path = sweep_file(tmp_path, study="launch-bad")
    open_sweep_study(load_sweep(path))
    return path, tmp_path / "runs" / "launch-bad" / "study.db"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


BAD = {
    "unknown launcher": (["--launcher", "kube"], {}, ["--launcher = 'kube'", "local, ray, slurm"]),
    "slurm flag without slurm": (["--partition", "gpu"], {}, ["--partition: only with --launcher slurm"]),
    "ray flag with slurm": (["--launcher", "slurm", "--address", "auto"], {}, ["--address: only with --launcher ray"]),
    "threads with ray": (["--launcher", "ray", "--threads", "2"], {}, ["--threads", "--cpus-per-worker"]),
    "sqlite with a ray:// cluster": (["--launcher", "ray", "--address", "ray://10.0.0.1:10001"], {},
                                     ["is a file on this machine", "postgresql://"]),
    "sqlite with slurm": (["--launcher", "slurm"], {}, ["is a file on this machine", "SLURM"]),
    "ray address unreachable": (["--launcher", "ray", "--address", "127.0.0.1:{port}"], {},
                                ["--address 127.0.0.1:", "no Ray cluster answers"]),
    "ray not installed": (["--launcher", "ray"], {"block": ("ray",)}, ["needs the ray package", "ddpm-sweeps[ray]"]),
    "submitit not installed": (["--launcher", "slurm", "--storage", "postgresql://u:secret-pw@127.0.0.1:1/db"],
                               {"block": ("submitit",)}, ["needs the submitit package", "ddpm-sweeps[slurm]"]),
    "no sbatch here": (["--launcher", "slurm", "--storage", "postgresql://u:secret-pw@127.0.0.1:1/db"], {},
                       ["no sbatch/srun on this machine", "--dry-run"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_launcher_input_is_one_line_and_leaves_the_study(existing_study, tmp_path, case):
    path, db = existing_study
    flags, how, needles = BAD[case]
    flags = [f.format(port=closed_port()) for f in flags]
    before = _digest(db)
    env = blocking_env(tmp_path, how["block"]) if "block" in how else cli_env(PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "ddpm", "sweep", str(path), "--workers", "2", *flags], cwd=tmp_path,
                       env=env, text=True, capture_output=True, timeout=300)
    line = assert_one_line_error(r, *needles)
    assert "secret-pw" not in r.stdout + r.stderr, line
    assert _digest(db) == before                                   # not even opened for writing
    assert not (tmp_path / "runs" / "launch-bad" / "trial-0").exists()


@pytest.mark.slow
def test_slurm_dry_run_prints_the_job_script_and_writes_nothing(tmp_path):
    path = sweep_file(tmp_path, study="slurm-dry", launcher={"partition": "cpu"})
    r = run_cli("sweep", str(path), "--dry-run", "--launcher", "slurm", "--workers", "4", "--time", "30", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for line in ("#SBATCH --array=0-3%4", "#SBATCH --partition=cpu", "#SBATCH --time=30",
                 f"#SBATCH --output={tmp_path / 'runs' / 'slurm-dry' / 'slurm'}/%A_%a_0_log.out"):
        assert line in r.stdout.splitlines(), (line, r.stdout[-2000:])
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------------------------
# SLURM's jobs, run by submitit's LocalExecutor


@pytest.mark.slow
def test_slurm_jobs_run_two_workers_to_the_end_of_a_study(tmp_path, monkeypatch):
    """The SLURM launcher's own submission code (batch of 2 jobs, run_worker_process, the URL through the
    environment) with submitit's LocalExecutor in place of sbatch: 3 trials complete, in 2 worker processes."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))        # the jobs unpickle ddpm's job function
    monkeypatch.setenv("DDPM_PROGRESS", "0")
    monkeypatch.chdir(tmp_path)
    spec = load_sweep(sweep_file(tmp_path, study="slurm-local", n_trials=3, launcher={"time": 10}))
    url = f"sqlite:///{tmp_path}/runs/slurm-local/study.db"
    launcher = LocalArrayLauncher(spec.launcher).connect(url)
    study = run_study(spec, url, workers=2, launcher=launcher)
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert_ran_in_workers(trials, workers=2, parent_pid=os.getpid())
    logs = list((tmp_path / "runs" / "slurm-local" / "slurm").glob("*_log.out"))
    assert len(logs) == 2                                   # one log per job, in the study's slurm/ folder
    pickles = list((tmp_path / "runs" / "slurm-local" / "slurm").glob("*.pkl"))
    assert pickles and not any(b"study.db" in p.read_bytes() for p in pickles)   # the URL went by the environment


# ----------------------------------------------------------------------------------------------
# Ray: a real cluster on loopback, one worker killed with SIGKILL mid-trial


def _descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (from /proc: the test needs no psutil)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def ray_env() -> dict[str, str]:
    """The test cluster's and its driver's environment: ddpm importable by Ray's workers; no token authentication
    (Ray 2.60 turns it on by default and keeps the token in ~/.ray, shared by every cluster of the user)."""
    return cli_env(PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled")


@pytest.fixture(scope="module")
def ray_cluster():
    """`ray start --head` on 127.0.0.1 (2 CPUs, no GPU, no dashboard, 100 MB object store) in its own session;
    yields its address. Stopped afterwards however the test ended: SIGTERM, then SIGKILL to every process it
    started (by PID) and its process group; its temp dir removed."""
    if RAY is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs ray (pip install '.[ray]') for the Ray launcher test")
        pytest.skip("ray is not installed")
    port = closed_port()
    temp = tempfile.mkdtemp(prefix="ray-")           # short: Ray's socket paths must stay under 107 characters
    proc = subprocess.Popen([RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
                             "--object-store-memory=100000000", f"--temp-dir={temp}"],
                            env=ray_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    started = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and len(started) < 3:
            started = _descendants(proc.pid)
            time.sleep(1)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        yield f"127.0.0.1:{port}"
    finally:
        started = set(started) | set(_descendants(proc.pid))
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for pid in started | set(_descendants(proc.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:   # gone already
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def _kill_a_worker_mid_trial(study_dir: Path, url: str, study_name: str, sweep: subprocess.Popen) -> int:
    """SIGKILL the `ddpm worker` (a Ray task's subprocess) of a running trial that has finished an epoch of 3;
    returns that trial's number."""
    deadline = time.time() + 400
    while time.time() < deadline and sweep.poll() is None:
        if (study_dir / "study.db").is_file():
            try:
                running = optuna.load_study(study_name=study_name, storage=url).get_trials(states=(TrialState.RUNNING,))
            except KeyError:   # not created yet
                running = []
            for t in running:
                run_dir, pid = t.user_attrs.get("run_dir"), t.user_attrs.get("pid")
                if run_dir and pid and 1 <= len(read_jsonl(Path(run_dir) / "metrics.jsonl")) < 3:
                    os.kill(pid, signal.SIGKILL)
                    return t.number
        time.sleep(0.2)
    out = sweep.communicate()[0][-4000:] if sweep.poll() is not None else ""
    raise AssertionError(f"no trial was caught mid-way; sweep exited with {sweep.poll()}: {out}")


@pytest.mark.slow
def test_ray_workers_finish_the_study_after_one_is_killed(ray_cluster, tmp_path):
    """`ddpm sweep --launcher ray --workers 2 --address HEAD`: one worker's process is SIGKILLed mid-trial; the
    sweep reports it, the heartbeat fails its trial, the other worker retries it from its checkpoint, and the
    study ends with its 4 trials complete, each once (the killed one as its retry)."""
    name = "ray-kill"
    path = sweep_file(tmp_path, study=name, n_trials=4,
                      overrides={"train.epochs": 3, "data.limit": 384, "train.batch_size": 32},
                      heartbeat={"interval": 1, "grace_period": 3, "max_retry": 2})
    url = f"sqlite:///{tmp_path}/runs/{name}/study.db"   # one node: Ray places the workers on this machine
    sweep = subprocess.Popen([sys.executable, "-m", "ddpm", "sweep", str(path), "--launcher", "ray", "--workers", "2",
                              "--address", ray_cluster], cwd=tmp_path, env=ray_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        killed = _kill_a_worker_mid_trial(tmp_path / "runs" / name, url, name, sweep)
        out, _ = sweep.communicate(timeout=600)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.communicate()
    assert sweep.returncode == 0, out[-4000:]
    assert "started 2 worker(s) as Ray tasks (1 CPU, 0 GPU each)" in out
    assert "ended with -9" in out, out[-4000:]          # the dead worker is reported
    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials()
    assert trials[killed].state == TrialState.FAIL
    (retry,) = [t for t in trials if killed in t.system_attrs.get("retry_history", [])]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[killed].params
    assert retry.user_attrs["resumed_from_epoch"] >= 1  # from the killed trial's checkpoint
    b = Budget.of(study)
    assert b.live == 4 and b.running == 0 and b.waiting == 0
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4 and len({t.params["train.lr"] for t in complete}) == 4   # each trial exactly once
    assert len(trials) == 5                              # 4 + the one retry, nothing else
    assert {t.user_attrs["pid"] for t in trials} - {trials[killed].user_attrs["pid"]}   # a live worker did the rest


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_ctrl_c_cancels_the_ray_tasks_and_stops_their_workers(ray_cluster, tmp_path):
    """SIGINT to `ddpm sweep --launcher ray` mid-trial: it cancels the tasks, each stops its `ddpm worker` like a
    Ctrl-C (the trial is marked interrupted, to resume), no worker process is left, exit 130."""
    name = "ray-ctrl-c"
    path = sweep_file(tmp_path, study=name, n_trials=2, overrides={"train.epochs": 5, "data.limit": 384,
                                                                     "train.batch_size": 32})
    sweep = subprocess.Popen([sys.executable, "-m", "ddpm", "sweep", str(path), "--launcher", "ray", "--workers", "2",
                              "--address", ray_cluster], cwd=tmp_path, env=ray_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, preexec_fn=sigint_default)
    try:
        deadline = time.time() + 300
        while not list((tmp_path / "runs" / name).glob("trial-*/metrics.jsonl")) and time.time() < deadline:
            assert sweep.poll() is None, sweep.communicate()[0][-4000:]
            time.sleep(0.2)
        sweep.send_signal(signal.SIGINT)
        out, _ = sweep.communicate(timeout=150)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.communicate()
    assert sweep.returncode == 130 and "interrupted: the study is saved" in out, out[-4000:]
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/runs/{name}/study.db").get_trials()
    stopped = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("interrupted")]
    assert stopped and not [t for t in trials if t.state == TrialState.RUNNING], [t.state for t in trials]
    assert not [t.user_attrs["pid"] for t in trials if _alive(t.user_attrs["pid"])]
