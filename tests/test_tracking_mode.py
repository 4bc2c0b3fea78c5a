"""Mode resolution (online with credentials, else offline; disabled wins) and secret scrubbing."""
from __future__ import annotations

import pytest

from ddpm.redact import redact, redact_url
from helpers import closed_port
from ddpm.tracking import configured_mode, has_credentials, resolve_mode, run_tags, tracker_callback, wandb_run


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path / "netrc"


def test_auto_is_offline_without_credentials_and_online_with_them(no_credentials, monkeypatch):
    assert not has_credentials() and configured_mode("auto") == "offline"
    no_credentials.write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    assert has_credentials() and configured_mode("auto") == "online"
    no_credentials.write_text("machine example.org login u password p\n")
    assert configured_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert configured_mode("auto") == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    monkeypatch.delenv("WANDB_API_KEY")
    no_credentials.write_text("machine wandb.example.org login u password p\n")
    assert configured_mode("auto") == "online"


@pytest.mark.parametrize("configured", ["auto", "online"])
def test_online_without_a_server_is_offline_after_one_probe(no_credentials, monkeypatch, fresh_probe, configured):
    """Credentials but nothing listening at WANDB_BASE_URL: offline, probed once for the whole process."""
    port = closed_port()
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    calls = []
    real = wandb_run._probe
    monkeypatch.setattr(wandb_run, "_probe", lambda url, timeout: calls.append(url) or real(url, timeout))
    assert [resolve_mode(configured) for _ in range(3)] == ["offline"] * 3
    assert calls == [f"http://127.0.0.1:{port}"] and wandb_run._offline_reason
    assert resolve_mode("disabled") == "disabled" and resolve_mode("offline") == "offline"


@pytest.mark.parametrize("configured, env, expected", [
    ("online", "", "online"), ("offline", "", "offline"), ("disabled", "", "disabled"),
    ("auto", "offline", "offline"), ("auto", "dryrun", "offline"), ("auto", "online", "online"),
    ("online", "disabled", "disabled"), ("offline", "online", "offline"), ("auto", "disabled", "disabled"),
])
def test_config_and_wandb_mode_env(no_credentials, monkeypatch, configured, env, expected):
    if env:
        monkeypatch.setenv("WANDB_MODE", env)
    assert configured_mode(configured) == expected


def test_tracker_spec_holds_tags_group_and_redacted_config(tiny_cfg, no_credentials):
    cfg = tiny_cfg(**{"tracking.wandb": "offline", "diffusion.schedule": "cosine", "model.num_feat": 16})
    t = tracker_callback(cfg, job_type="trial", group="s", name="trial-0", tags=["sweep"],
                         extra_config={"storage": "postgresql://u:pw@h/db", "db_password": "pw", "trial": 0})
    assert t.spec.tags == run_tags(cfg) + ["sweep"] == ["cosine", "width-16", "ddpm", "T-20", "sweep"]
    assert (t.spec.group, t.spec.job_type, t.spec.name, t.spec.mode) == ("s", "trial", "trial-0", "offline")
    assert t.spec.config["storage"] == "postgresql://u:***@h/db" and t.spec.config["db_password"] == "***"
    assert t.spec.config["model"]["num_feat"] == 16 and t.spec.config["trial"] == 0
    assert tracker_callback(cfg, job_type="train").spec.name == cfg.name


@pytest.mark.parametrize("text, expected", [
    ("postgresql://ddpm:s3cret@db:5432/optuna", "postgresql://ddpm:***@db:5432/optuna"),
    ("postgresql+psycopg://u:p@ss@host/db", "postgresql+psycopg://u:***@host/db"),
    ("mysql://user@host/db", "mysql://user@host/db"),
    ("sqlite:///runs/study.db", "sqlite:///runs/study.db"),
    ("http://localhost:8080/x", "http://localhost:8080/x"),
    ("host=db user=ddpm password=s3cret dbname=optuna", "host=db user=ddpm password=*** dbname=optuna"),
])
def test_redact_url(text, expected):
    assert redact_url(text) == expected


def test_redact_walks_containers_and_masks_secret_keys():
    obj = {"storage": "redis://:pw@r:6379/0", "nested": {"api_key": "abc", "token": None, "n": 3},
           "list": ["postgresql://a:b@c/d", 1.5], "tuple": ("x",), "password": ""}
    assert redact(obj) == {"storage": "redis://:***@r:6379/0", "nested": {"api_key": "***", "token": None, "n": 3},
                           "list": ["postgresql://a:***@c/d", 1.5], "tuple": ("x",), "password": ""}
