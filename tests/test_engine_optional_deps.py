"""The engine, `ddpm train` (tracking disabled) and `ddpm bench` run without optuna or wandb installed (the GPU
machine has neither), from the source tree without installing the project (issue 15)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, TINY, cli_env, overrides_argv

BLOCKER = '''
import sys


class _NotInstalled:
    """Makes these packages unimportable, as on a machine without them."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {names!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
'''


def blocking_env(tmp_path: Path, names: tuple[str, ...] = ("optuna", "wandb")) -> dict:
    """An environment whose Pythons (subprocesses too) cannot import ``names`` (a sitecustomize on PYTHONPATH)
    and find ddpm only through PYTHONPATH=repo root, as scripts/gpu-check.sh runs it."""
    site = tmp_path / "blocker"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER.format(names=tuple(names)))
    return cli_env(PYTHONPATH=f"{site}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")


def without_optuna_wandb(tmp_path: Path) -> dict:
    return blocking_env(tmp_path, ("optuna", "wandb"))


def run(env: dict, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, text=True, capture_output=True, timeout=timeout)


def test_the_blocker_blocks(tmp_path):
    r = run(without_optuna_wandb(tmp_path), "-c", "import optuna", cwd=tmp_path)
    assert r.returncode != 0 and "blocked by the test" in r.stderr
    r = run(without_optuna_wandb(tmp_path), "-c", "import wandb.sdk", cwd=tmp_path)
    assert r.returncode != 0 and "blocked by the test" in r.stderr


@pytest.mark.slow
def test_cli_help_and_engine_import_without_optuna_wandb(tmp_path):
    env = without_optuna_wandb(tmp_path)
    for cmd in ("train", "bench", "sample"):
        r = run(env, "-m", "ddpm", cmd, "--help", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert f"usage: ddpm {cmd}" in r.stdout
    code = ("import ddpm.train, ddpm.bench, ddpm.samplers, ddpm.evaluation, ddpm.unet, sys; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('optuna', 'wandb')))")
    r = run(env, "-c", code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def _tiny_args(tmp_path: Path) -> list[str]:
    return overrides_argv({**TINY, "data.val_limit": 64, "data.test_limit": 64, "out_dir": str(tmp_path / "runs")})


@pytest.mark.slow
def test_tiny_train_and_bench_without_optuna_wandb(tmp_path):
    env = without_optuna_wandb(tmp_path)
    r = run(env, "-m", "ddpm", "train", str(REPO / "experiments" / "seed.yaml"), *_tiny_args(tmp_path),
            "name=no-extras", "train.grid_every=0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "runs" / "no-extras" / "checkpoints" / "best.pt").is_file()
    assert "blocked by the test" not in r.stderr

    out = tmp_path / "bench.json"
    r = run(env, "-m", "ddpm", "bench", "--quick", "--widths", "8", "--grid-images", "10", "--fast-steps", "5",
            "--threads", "1", "--out", str(out), "diffusion.T=20", "diffusion.beta_T=0.5", "data.limit=256",
            "data.test_limit=64", "data.val_limit=64", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import json

    rows = json.loads(out.read_text())["rows"]
    assert [row["width"] for row in rows] == [8]
    assert rows[0]["fast"]["train"]["images_per_s"] > 0


@pytest.mark.slow
def test_report_without_matplotlib_is_a_one_line_hint(tmp_path):
    """matplotlib is a dependency; an environment that lacks it gets a hint, not ModuleNotFoundError."""
    from helpers import assert_one_line_error, sweep_file

    env = blocking_env(tmp_path, ("matplotlib",))
    for args in (("report", "tiny"), ("sweep", str(sweep_file(tmp_path, report=True)))):
        r = run(env, "-m", "ddpm", *args, cwd=tmp_path)
        assert_one_line_error(r, "matplotlib is not installed", "pip install matplotlib")
    assert not (tmp_path / "runs").exists()  # the sweep stopped before creating its study
