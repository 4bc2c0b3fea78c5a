"""Shared fixtures: tiny configs that train in seconds on 2 CPU cores. The builders behind them live in
tests/helpers.py (re-exported here for the tests that import them from conftest)."""
from __future__ import annotations

import os

import pytest

from helpers import REPO, TINY, classifier_cache, postgres_url, run_cli, seaweedfs_s3, sigint_default  # noqa: F401

os.environ.setdefault("DDPM_PROGRESS", "0")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_CODE", "true")


@pytest.fixture
def tiny_cfg(tmp_path):
    """A factory of tiny configs rooted in tmp_path: tiny_cfg(**{"train.epochs": 2})."""
    from ddpm.config import load_config

    def make(path: str | None = None, **extra):
        values = {**TINY, "out_dir": str(tmp_path / "runs"), **extra}
        return load_config(path, extra=values)
    return make


@pytest.fixture(autouse=True)
def one_thread():
    """Every test on one torch thread: tiny nets train faster on one thread, and far faster on a busy machine
    (no OpenMP oversubscription; two threads spinning on 2 shared cores made a 1 s test take minutes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_probe(monkeypatch):
    """A process that has not probed W&B yet (the answer is cached per process)."""
    from ddpm.tracking import wandb_run

    monkeypatch.setattr(wandb_run, "_probe_cache", {})
    monkeypatch.setattr(wandb_run, "_offline_reason", None)
    monkeypatch.setattr(wandb_run, "_offline_notice_shown", False)


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    """A DDPM_CACHE holding a quickly trained evaluation classifier (its FID features are what matter here)."""
    with classifier_cache(tmp_path_factory.mktemp("ddpm-cache")) as path:
        yield path


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS S3 server on loopback for the session (helpers.seaweedfs_s3): ``.endpoint`` and ``.env``, the
    AWS_* variables of a client. Tests use their own bucket names. Skipped without `weed` outside CI."""
    with seaweedfs_s3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """This test's process talks to the test S3 server: only its AWS_* variables are set (none of the caller's)."""
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    return s3_server
