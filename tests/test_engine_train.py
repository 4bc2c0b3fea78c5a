"""The training loop: run folder, checkpoints, resume (Ctrl-C and kill -9), NaN, reproducibility, sampling CLI."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ddpm.checkpoint import load_checkpoint, load_model
from ddpm.errors import CheckpointError, ConfigError, TrainingDiverged
from ddpm.io import read_jsonl
from ddpm.train import train

from helpers import REPO, cli_env, run_cli, sigint_default, train_argv


@pytest.mark.slow
def test_run_folder_checkpoints_and_round_trip(tiny_cfg):
    cfg = tiny_cfg(name="a", **{"train.epochs": 2})
    run = train(cfg, quiet=True)
    d = run.run_dir
    assert (d / "config.yaml").is_file()
    rows = read_jsonl(d / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert {"train_loss", "test_loss", "lr", "images_per_s", "seconds", "grid"} <= set(r)
        assert (d / r["grid"]).is_file()
    ckpt = load_checkpoint(d / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2 and ckpt["config"] == cfg.to_dict()
    assert {"model", "optimizer", "lr_scheduler", "rng", "ema"} <= set(ckpt)
    model, cfg2, _ = load_model(d)
    assert cfg2 == cfg
    for k, v in run.model.state_dict().items():
        if ckpt["epoch"] == 2 and rows[1]["test_loss"] <= rows[0]["test_loss"]:
            torch.testing.assert_close(model.state_dict()[k], v.cpu())


@pytest.mark.slow
def test_same_seed_same_first_epoch_loss(tiny_cfg):
    a = train(tiny_cfg(name="s1"), quiet=True).history[0]
    b = train(tiny_cfg(name="s2"), quiet=True).history[0]
    c = train(tiny_cfg(name="s3", **{"train.seed": 1}), quiet=True).history[0]
    assert a["train_loss"] == b["train_loss"] and a["test_loss"] == b["test_loss"]
    assert a["train_loss"] != c["train_loss"]


@pytest.mark.slow
def test_resume_continues_with_history_intact_and_matches_an_uninterrupted_run(tiny_cfg):
    full = train(tiny_cfg(name="full", **{"train.epochs": 2, "train.ema_decay": 0.9}), quiet=True)
    train(tiny_cfg(name="part", **{"train.epochs": 1, "train.ema_decay": 0.9}), quiet=True)
    part = train(tiny_cfg(name="part", **{"train.epochs": 2, "train.ema_decay": 0.9}), resume=True, quiet=True)
    assert [r["epoch"] for r in part.history] == [1, 2]
    for a, b in zip(full.history, part.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-6)
    assert len(read_jsonl(part.run_dir / "metrics.jsonl")) == 2


@pytest.mark.slow
def test_refuses_to_overwrite_a_run_and_to_resume_a_different_model(tiny_cfg):
    train(tiny_cfg(name="x"), quiet=True)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_cfg(name="x"), quiet=True)
    with pytest.raises(ConfigError, match="cannot resume with model.num_feat"):
        train(tiny_cfg(name="x", **{"model.num_feat": 16, "train.epochs": 2}), resume=True, quiet=True)


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message(tiny_cfg):
    with pytest.raises(TrainingDiverged, match="loss is (nan|inf)"):
        train(tiny_cfg(name="nan", **{"train.lr": 1e30, "train.batch_size": 16}), quiet=True)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.pt"
    p.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"evil": 1}, p)
    with pytest.raises(CheckpointError, match="not a ddpm checkpoint"):
        load_checkpoint(p)


def _cli_args(tmp_path, name, epochs):
    return train_argv(tmp_path, name, epochs, limit=2048, batch_size=32)


@pytest.mark.slow
def test_kill_9_then_resume(tmp_path):
    """kill -9 mid-run leaves a loadable last.pt; --resume finishes with the whole history."""
    env = cli_env()
    proc = subprocess.Popen([sys.executable, "-m", "ddpm", *_cli_args(tmp_path, "k", 30)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "k" / "metrics.jsonl"
    deadline = time.time() + 900
    while time.time() < deadline and len(read_jsonl(metrics)) < 2:
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(read_jsonl(metrics))
    assert done >= 2
    ckpt = load_checkpoint(tmp_path / "k" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] >= 2
    r = run_cli(*_cli_args(tmp_path, "k", ckpt["epoch"] + 1), "--resume")
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(metrics)
    assert [x["epoch"] for x in rows] == list(range(1, ckpt["epoch"] + 2))


@pytest.mark.slow
def test_ctrl_c_exits_cleanly_and_resumes(tmp_path):
    env = cli_env()
    proc = subprocess.Popen([sys.executable, "-m", "ddpm", *_cli_args(tmp_path, "c", 30)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    metrics = tmp_path / "c" / "metrics.jsonl"
    deadline = time.time() + 900
    while time.time() < deadline and len(read_jsonl(metrics)) < 1:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err and "--resume" in err
    ckpt = load_checkpoint(tmp_path / "c" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == len(read_jsonl(metrics)) >= 1


@pytest.mark.slow
def test_sample_cli_writes_grids_and_npz(tiny_cfg, tmp_path):
    run = train(tiny_cfg(name="smp"), quiet=True)
    out = tmp_path / "samples"
    r = run_cli("sample", str(run.run_dir), "--omega", "0,2", "--n", "12", "--sampler", "ddim", "--steps", "5",
                "--labels", "3,4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    for w in ("0", "2"):
        assert (out / f"grid-omega{w}.png").is_file()
        z = np.load(out / f"samples-omega{w}.npz")
        assert z["images"].shape == (12, 28, 28) and z["images"].dtype == np.uint8
        assert z["labels"].tolist() == [3, 4] * 6
    bad = run_cli("sample", str(run.run_dir), "--omega", "two")
    assert bad.returncode == 2 and "--omega 'two'" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("sample", str(tmp_path / "nothing.pt"))
    assert missing.returncode == 2 and "no such checkpoint" in missing.stderr


def test_negative_guidance_weights_parse_on_every_command():
    from ddpm.cli import build_parser

    args = build_parser().parse_args(["sample", "x.pt", "--omega", "-1,0,0.5"])
    assert args.omega == "-1,0,0.5"


def test_ema_warm_up_forgets_the_random_init(tiny_cfg):
    """After 100 steps toward fixed weights the EMA holds < 1e-3 of its init (plain 0.999 decay: 90%); BatchNorm
    running statistics are averaged the same way (copying them paired averaged weights with the live model's
    statistics), other buffers copied."""
    from ddpm.diffusion import ConditionalDDPM
    from ddpm.train import ema_decay_at, ema_update

    model = ConditionalDDPM(tiny_cfg())
    ema = ConditionalDDPM(tiny_cfg())
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
        for p in ema.parameters():
            p.fill_(0.0)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.fill_(1.0)
            elif name.endswith("running_var"):
                b.fill_(3.0)
    ema_update(ema, model, 0.999, 1)
    stats = {n: b for n, b in ema.named_buffers() if n.endswith(("running_mean", "running_var"))}
    assert stats, "the network has BatchNorm layers"
    for n, b in stats.items():   # averaged like the weights (decay 2/11 at step 1), not copied from the model
        start, target = (0.0, 1.0) if n.endswith("running_mean") else (1.0, 3.0)
        assert torch.allclose(b, torch.full_like(b, start + (target - start) * 9 / 11))
    for step in range(2, 101):
        ema_update(ema, model, 0.999, step)
    left = max(float((1.0 - p.detach()).abs().max()) for p in ema.parameters())
    assert left < 1e-3
    assert ema_decay_at(0.999, 1) == pytest.approx(2 / 11) and ema_decay_at(0.999, 10 ** 6) == 0.999
    for (n, b_e), b_m in zip(ema.named_buffers(), model.buffers()):
        if n in stats:
            assert float((b_e - b_m).abs().max()) < 3e-3
        else:   # schedule tables and batch counters are copied
            assert torch.equal(b_e, b_m), n


# ---- the validation split ------------------------------------------------------------------------------


class _ValLosses:
    """Replaces each epoch's val_loss by a given value: a constructed case where val and test disagree."""

    def __init__(self, values):
        self.values = list(values)

    def on_train_start(self, run):
        pass

    def on_epoch_metrics(self, run, record):
        record["val_loss"] = self.values[record["epoch"] - 1]

    def on_epoch_end(self, run, record):
        pass

    def on_train_end(self, run, status, reason):
        pass


@pytest.mark.slow
def test_best_checkpoint_is_chosen_on_val_loss(tiny_cfg):
    run = train(tiny_cfg(name="v", **{"train.epochs": 3}), quiet=True)
    rows = read_jsonl(run.run_dir / "metrics.jsonl")
    assert all({"val_loss", "test_loss"} <= set(r) for r in rows)
    assert rows[0]["val_loss"] != rows[0]["test_loss"]           # different images
    best = load_checkpoint(run.run_dir / "checkpoints" / "best.pt")
    vals = [r["val_loss"] for r in rows]
    assert best["epoch"] == 1 + vals.index(min(vals)) and best["best_val_loss"] == min(vals)
    # constructed: the val loss is lowest at epoch 2 whatever the test loss does
    run = train(tiny_cfg(name="w", **{"train.epochs": 3}), callbacks=[_ValLosses([3.0, 1.0, 2.0])], quiet=True)
    best = load_checkpoint(run.run_dir / "checkpoints" / "best.pt")
    assert best["epoch"] == 2 and run.best_val_loss == 1.0
    assert [r["val_loss"] for r in read_jsonl(run.run_dir / "metrics.jsonl")] == [3.0, 1.0, 2.0]


@pytest.mark.slow
def test_without_a_validation_split_best_is_chosen_on_test_loss(tiny_cfg):
    run = train(tiny_cfg(name="nv", **{"train.epochs": 2, "data.val_size": 0}), quiet=True)
    rows = read_jsonl(run.run_dir / "metrics.jsonl")
    assert all("val_loss" not in r for r in rows)
    tests = [r["test_loss"] for r in rows]
    assert load_checkpoint(run.run_dir / "checkpoints" / "best.pt")["epoch"] == 1 + tests.index(min(tests))


@pytest.mark.slow
def test_validation_images_change_nothing_but_what_is_measured(tiny_cfg):
    """The same first 256 training images with and without a validation split: identical training."""
    a = train(tiny_cfg(name="a0", **{"data.val_size": 0}), quiet=True).history[0]
    b = train(tiny_cfg(name="a1"), quiet=True).history[0]
    assert a["train_loss"] == b["train_loss"] and a["test_loss"] == b["test_loss"]


@pytest.mark.slow
def test_a_checkpoint_from_before_the_split_resumes_with_val_size_0(tiny_cfg):
    from ddpm.checkpoint import save_checkpoint

    run = train(tiny_cfg(name="old", **{"data.val_size": 0}), quiet=True)
    for name in ("last.pt", "best.pt"):   # as saved before this change: no val_size key, no best_val_loss
        path = run.run_dir / "checkpoints" / name
        ckpt = load_checkpoint(path)
        del ckpt["config"]["data"]["val_size"], ckpt["config"]["data"]["val_limit"], ckpt["best_val_loss"]
        ckpt.pop("path", None)
        save_checkpoint(path, ckpt)
    assert load_model(run.run_dir)[1].data.val_size == 0
    with pytest.raises(ConfigError, match="data.val_size = 5000; the run was started with 0; a run from before "
                                          "the validation split: resume it with data.val_size=0"):
        train(tiny_cfg(name="old", **{"train.epochs": 2, "data.val_limit": None}), resume=True, quiet=True)
    done = train(tiny_cfg(name="old", **{"train.epochs": 2, "data.val_size": 0, "data.val_limit": None}),
                 resume=True, quiet=True)
    assert [r["epoch"] for r in done.history] == [1, 2]
