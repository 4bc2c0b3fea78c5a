"""Shared fixtures: tiny configs that train in seconds on 2 CPU cores."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("DDPM_PROGRESS", "0")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_CODE", "true")

TINY = {
    "data.limit": 256, "data.test_limit": 128, "data.val_limit": 128,
    "model.num_feat": 8,
    "diffusion.T": 20, "diffusion.beta_T": 0.5,  # alpha_bar_T 0.002 (0.04 at T=10): under the terminal guard
    "train.epochs": 1, "train.batch_size": 64, "train.lr": 1e-3,
    "sample.steps": None, "sample.sampler": "ddpm",
    "tracking.wandb": "disabled",
}


@pytest.fixture
def tiny_cfg(tmp_path):
    """A factory of tiny configs rooted in tmp_path: tiny_cfg(**{"train.epochs": 2})."""
    from ddpm.config import load_config

    def make(path: str | None = None, **extra):
        values = {**TINY, "out_dir": str(tmp_path / "runs"), **extra}
        return load_config(path, extra=values)
    return make


def sigint_default() -> None:
    """``preexec_fn`` for a child the test will Ctrl-C: SIGINT back to its default, so Python installs its
    KeyboardInterrupt handler even when pytest itself inherited SIGINT ignored (a background job of a
    non-interactive shell, e.g. `CI=true bash .ci/run &`, starts that way and its children would ignore it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    """Run ``python -m ddpm.cli ...`` in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    e = {**os.environ, "DDPM_PROGRESS": "0", "WANDB_MODE": "disabled", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ddpm", *args], cwd=cwd or REPO, env=e, text=True,
                          capture_output=True, timeout=timeout)


def postgres_url(purpose: str = "the PostgreSQL tests") -> str:
    """The test server's URL (scripts/system-deps.sh writes .postgres-url); skip outside CI when absent,
    fail under CI=true (CI must run the real server)."""
    from ddpm.errors import DDPMError
    from ddpm.sweeps import open_storage

    url = os.environ.get("DDPM_TEST_POSTGRES")
    if not url and (REPO / ".postgres-url").is_file():
        url = (REPO / ".postgres-url").read_text().strip()
    why = None
    if not url:
        why = "no PostgreSQL URL (set DDPM_TEST_POSTGRES, or run scripts/system-deps.sh as root)"
    else:
        try:
            open_storage(url)
        except DDPMError as e:
            why = f"PostgreSQL not reachable: {e}"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true needs a PostgreSQL server for {purpose}: {why}")
        pytest.skip(why)
    return url  # type: ignore[return-value]
