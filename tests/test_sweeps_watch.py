"""Watching a sweep from a log (not a terminal): plain study progress lines, no hard-wrapped lines, and at the
end the report's path, best_config.yaml's path and the command that retrains it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import cli_env, sweep_file


@pytest.mark.slow
def test_sweep_in_a_log_prints_progress_lines_and_the_end_paths(tmp_path):
    path = sweep_file(tmp_path, study="watched-study-with-a-rather-long-name", report=True, n_trials=2)
    env = cli_env(DDPM_PROGRESS="1", DDPM_PROGRESS_INTERVAL="0", COLUMNS="60")
    r = subprocess.run([sys.executable, "-m", "ddpm", "sweep", str(path)], cwd=tmp_path, env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)  # pipes: not a terminal
    out = r.stdout
    assert r.returncode == 0, out[-3000:]
    study = "watched-study-with-a-rather-long-name"
    lines = out.splitlines()
    started = [ln for ln in lines if ln.startswith(f"study {study}: trial ") and " started " in ln]
    finished = [ln for ln in lines if ln.startswith(f"study {study}: trial finished ")]
    assert [ln.split()[3] for ln in started] == ["1/2", "2/2"], out[-3000:]
    assert "1/2 finished" in finished[0] and "2/2 finished" in finished[1] and "eta 0:00:00" in finished[1]
    assert any(ln.startswith("epoch 1: ") and "elapsed" in ln for ln in lines), out[-3000:]  # the batch task's lines
    assert all(len(ln) > 60 for ln in started)  # longer than COLUMNS, and still one line each
    best = f"reports/{study}/best_config.yaml"
    assert f"report: reports/{study}/report.html" in lines
    assert f"best config: {best}" in lines
    assert f"rerun the best config: ddpm train {best}" in lines
    assert (tmp_path / best).is_file() and "\x1b[" not in out


@pytest.mark.slow
def test_a_sweep_with_workers_shows_the_study_progress_from_the_storage(tmp_path):
    """`ddpm sweep --workers 2` runs its trials in worker processes with their progress off; the parent reads
    the storage and prints one study line per finished trial, ending at N/N."""
    path = sweep_file(tmp_path, study="watched-workers", n_trials=2)
    env = cli_env(DDPM_PROGRESS="1", DDPM_PROGRESS_INTERVAL="0")
    r = subprocess.run([sys.executable, "-m", "ddpm", "sweep", str(path), "--workers", "2"], cwd=tmp_path, env=env,
                       text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    out = r.stdout
    assert r.returncode == 0, out[-3000:]
    finished = [ln for ln in out.splitlines() if ln.startswith("study watched-workers: trial finished ")]
    assert len(finished) == 2 and "2/2 finished" in finished[-1], out[-3000:]
