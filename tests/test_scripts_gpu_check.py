"""scripts/gpu-check.sh --dry-run: every stage of the GPU check runs on CPU at tiny sizes, from the source tree,
without wandb, so the script cannot rot between the rare runs on a GPU machine (issue 15)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from helpers import REPO
from test_engine_optional_deps import blocking_env

RESULT_FILES = {"gpu-check.log", "summary.json", "bench.json", "bench.md", "seed-epochs.md", "seed-grid.png",
                "time-to-quality.csv", "time-to-quality.png"}


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_result(tmp_path):
    pytest.importorskip("optuna")  # the sweep stages: CI has optuna; the GPU machine brings it as wheels
    out = tmp_path / "out"
    env = {**blocking_env(tmp_path, ("wandb",)), "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    env.pop("OUT", None)
    r = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh"), "--dry-run", str(out)], env=env,
                       cwd=tmp_path, text=True, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # the device tool returns at most 8 files, 2 folders deep: everything lies flat in one folder
    assert {p.name for p in out.iterdir()} == RESULT_FILES
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True and summary["ok"] is True, summary["stages"]
    stages = summary["stages"]
    assert {name for name, s in stages.items() if s["status"] != "ok"} == set()
    assert {"cuda-tests", "bench", "seed-epochs", "time-to-quality", "ttq-summary", "sweep-1w"} <= set(stages)
    assert stages["seed-epochs"]["result"]["epochs"] == 2
    assert stages["sweep-1w"]["result"]["finished"] == 1 and stages["sweep-1w"]["result"]["failed"] == 0
    assert set(summary["targets"]) >= {"train_images_per_s_w64", "seed_10_epochs_seconds",
                                       "trials_per_hour_4_workers_over_1"}
    assert [row["width"] for row in json.loads((out / "bench.json").read_text())["rows"]] == [8]
    assert "| 1 |" in (out / "seed-epochs.md").read_text() and "0.1909" in (out / "seed-epochs.md").read_text()
    with (out / "time-to-quality.csv").open() as f:
        rows = list(csv.DictReader(f))
    # ddpm bench --time-to-quality's points: each entry scored at least at the end of its 2 s budget
    assert {row["label"] for row in rows if row["final"] == "1"} == {"seed-fast", "recipe"}
    assert all(row["n"] == "20" and float(row["accuracy_lo"]) <= float(row["accuracy"]) <= float(row["accuracy_hi"])
               for row in rows)
    assert set(stages["ttq-summary"]["result"]) == {"seed-fast", "recipe"}
    # scratch (runs, studies) went to a temporary folder that the script removed, not into the tree
    assert not list(tmp_path.glob("gpu-check.*"))
