"""Bad input through the real CLI: one line `ddpm <cmd>: error: ...` naming the key/flag/path, exit code != 0,
no traceback, and the files that were there before unchanged (checksums). Valid-but-odd input succeeds.

Classes (issue 12): YAML 1.2 numbers; non-finite numbers wherever a number is accepted; structurally
malformed configs and sweep files; checkpoints of the right format with missing keys; options the machine
cannot honour (devices); a model that does not fit the dataset; OSErrors on output/run/report/cache paths
(a file where a folder is expected, /proc, a full disk, a size limit); corrupt SQLite study files.
Most cases fail at validation, before any training; the few that train use the tiny config.

``ddpm(...)`` runs ``ddpm.cli.main`` in this process (an exception escaping it fails the test just as a
traceback would), so the ~150 cases stay within a minute or two; each class also has cases run as a real
``python -m ddpm`` subprocess (``run_cli``), and DDPM_PROBE_SUBPROCESS=1 runs every case that way.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import QUICK_YAML, REPO, TINY, assert_one_line_error as one_line_error, overrides_argv, run_cli

SEED_YAML = str(REPO / "experiments" / "seed.yaml")


def ddpm(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``ddpm ARGV`` through ``ddpm.cli.main`` in this process, or a subprocess with DDPM_PROBE_SUBPROCESS=1."""
    if os.environ.get("DDPM_PROBE_SUBPROCESS") == "1":
        return run_cli(*argv, env=env)
    from ddpm.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(list(argv))
            except SystemExit as e:  # argparse
                rc = e.code if isinstance(e.code, int) else 1
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return subprocess.CompletedProcess(["ddpm", *argv], rc, out.getvalue(), err.getvalue())


def tiny_overrides(out_dir: Path, **extra) -> list[str]:
    return overrides_argv({**TINY, "out_dir": str(out_dir), **extra})


def assert_one_line_error(r: subprocess.CompletedProcess, cmd: str, *needles: str) -> str:
    return one_line_error(r, *needles, prefix=f"ddpm {cmd}: error:")


def checksums(*paths: Path) -> dict[str, str]:
    files = []
    for p in paths:
        files += sorted(q for q in Path(p).rglob("*") if q.is_file()) if Path(p).is_dir() else [Path(p)]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


# ----------------------------------------------------------------------------------------------
# shared, built once: a tiny trained run (checkpoints) and a small Optuna study in SQLite


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from ddpm.config import load_config
    from ddpm.train import train

    root = tmp_path_factory.mktemp("tiny-run")
    cfg = load_config(None, extra={**TINY, "out_dir": str(root / "runs"), "name": "tiny", "train.grid_every": 0})
    run = train(cfg, quiet=True)
    return run.run_dir


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = tmp_path_factory.mktemp("study")
    db = root / "study.db"
    study = optuna.create_study(study_name="probe", storage=f"sqlite:///{db}")
    study.set_user_attr("objectives", [{"metric": "test_loss", "direction": "minimize"}])
    study.optimize(lambda t: (t.set_user_attr("note", "x" * 200), t.suggest_float("train.lr", 1e-4, 1e-2, log=True))[1],
                   n_trials=40)
    return db


# ----------------------------------------------------------------------------------------------
# 1. valid-but-odd numbers succeed (YAML 1.2 floats in configs, overrides and sweep files)


@pytest.mark.slow
def test_train_accepts_3e_4_and_friends_from_cli_and_config(tmp_path):
    cfg_file = tmp_path / "odd.yaml"
    cfg_file.write_text("base: " + SEED_YAML + "\ntrain:\n  lr: 3e-4\n  gamma: 1E-1\ndata:\n  limit: 2.56e2\n")
    r = run_cli("train", str(cfg_file), *tiny_overrides(tmp_path / "runs", **{"train.grid_every": 0}),
                "data.limit=2.56e2", "train.lr=3e-4", "train.gamma=1.0e-1", "train.epochs=1e0", "name=odd")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stdout + r.stderr
    saved = yaml.safe_load((tmp_path / "runs" / "odd" / "config.yaml").read_text())
    assert saved["train"]["lr"] == 3e-4 and saved["train"]["gamma"] == 0.1
    assert saved["data"]["limit"] == 256 and isinstance(saved["data"]["limit"], int)
    assert saved["train"]["epochs"] == 1 and isinstance(saved["train"]["epochs"], int)


@pytest.mark.parametrize("text,key,value", [
    ("train.lr=3e-4", "train.lr", 3e-4), ("train.lr=1.0e-3", "train.lr", 1e-3), ("train.lr=+2E-3", "train.lr", 2e-3),
    ("train.lr=.5", "train.lr", 0.5), ("data.limit=1e6", "data.limit", 1_000_000), ("train.epochs=2.0", "train.epochs", 2),
    ("train.milestones=[1e1,2e1]", "train.milestones", [10, 20]), ("diffusion.beta_1=5e-5", "diffusion.beta_1", 5e-5),
])
def test_yaml_12_numbers_in_overrides(text, key, value):
    from ddpm.config import get_dotted, load_config

    got = get_dotted(load_config(SEED_YAML, [text]), key)
    assert got == value and type(got) is type(value)


def test_yaml_12_keeps_other_scalars():
    from ddpm.config import YAMLLoader

    load = lambda s: yaml.load(s, Loader=YAMLLoader)  # noqa: E731
    assert load("a: 10")["a"] == 10 and load("a: 0x10")["a"] == 16 and load("a: true")["a"] is True
    assert load("a: null")["a"] is None and load("a: 1.2.3")["a"] == "1.2.3" and load("a: 3e")["a"] == "3e"
    assert load("a: e3")["a"] == "e3" and load("a: '3e-4'")["a"] == "3e-4"
    assert load("a: -.inf")["a"] == float("-inf") and load("a: 1e6")["a"] == 1e6
    assert yaml.safe_load("a: 3e-4")["a"] == "3e-4", "the global SafeLoader is left alone"


def test_sweep_file_accepts_exponent_floats(tmp_path):
    from ddpm.sweeps.spec import load_sweep

    p = tmp_path / "s.yaml"
    p.write_text(f"study: odd\nbase: {QUICK_YAML}\noverrides: {{train.lr: 3e-4}}\n"
                 "space:\n  train.lr: {type: float, low: 1e-4, high: 3e-3, log: true}\n"
                 "guidance: {omegas: [0, 1e0, 2.5e0]}\nn_trials: 1e1\ntimeout: 3.6e3\n")
    spec = load_sweep(p)
    assert (spec.space["train.lr"].low, spec.space["train.lr"].high) == (1e-4, 3e-3)
    assert spec.guidance.omegas == [0.0, 1.0, 2.5] and spec.n_trials == 10 and spec.timeout == 3600.0
    assert spec.base_config().train.lr == 3e-4


# ----------------------------------------------------------------------------------------------
# 2. non-finite (and out-of-range) numbers, in configs and on the command line


@pytest.mark.parametrize("override,needle", [
    ("train.lr=.nan", "train.lr = nan"), ("train.lr=.inf", "train.lr = inf"), ("train.lr=1e999", "train.lr = inf"),
    ("train.epochs=1e999", "train.epochs = inf"), ("sample.omega=-.inf", "sample.omega = -inf"),
    ("train.grad_clip=.NaN", "train.grad_clip = nan"), ("data.std=.Inf", "data.std = inf"),
    ("train.milestones=[1,.inf]", "train.milestones = inf"), ("train.seed=1e30", "train.seed"),
])
def test_non_finite_config_values(override, needle):
    r = ddpm("train", SEED_YAML, override)
    assert_one_line_error(r, "train", needle, "seed.yaml")


def test_non_finite_in_config_file(tmp_path):
    p = tmp_path / "nan.yaml"
    p.write_text("train:\n  lr: .nan\n")
    assert_one_line_error(ddpm("train", str(p)), "train", str(p), "train.lr = nan", "finite")


@pytest.mark.parametrize("argv,needle", [
    (["sample", "x.pt", "--eta", "-1"], "--eta"), (["sample", "x.pt", "--eta", "nan"], "--eta"),
    (["sample", "x.pt", "--n", "inf"], "--n"), (["sample", "x.pt", "--n", "0"], "--n"),
    (["sample", "x.pt", "--steps", "1e999"], "--steps"), (["sample", "x.pt", "--seed", "-3"], "--seed"),
    (["sample", "x.pt", "--seed", "99999999999999999999999"], "--seed"),
    (["eval", "x.pt", "--eta", "-0.5"], "--eta"), (["eval", "x.pt", "--batch-size", "nan"], "--batch-size"),
    (["sweep", "s.yaml", "--timeout", "-5"], "--timeout"), (["sweep", "s.yaml", "--timeout", "inf"], "--timeout"),
    (["sweep", "s.yaml", "--timeout", "0"], "--timeout"), (["sweep", "s.yaml", "--n-trials", "2.5"], "--n-trials"),
    (["sweep", "s.yaml", "--workers", "0"], "--workers"), (["worker", "s.yaml", "--threads", "-1"], "--threads"),
    (["bench", "--fast-eta", "-1"], "--fast-eta"), (["bench", "--omega", "nan"], "--omega"),
])
def test_bad_numeric_flags(argv, needle):
    r = ddpm(*argv)
    line = assert_one_line_error(r, argv[0], needle)
    assert repr(argv[argv.index(needle) + 1]) in line, "the value is named"
    assert r.returncode == 2


@pytest.mark.slow
@pytest.mark.parametrize("cmd,omega", [("sample", "nan"), ("sample", "0,inf"), ("eval", "1,-inf,2"), ("eval", "1e999")])
def test_non_finite_omega_flag(tiny_run, cmd, omega):
    before = checksums(tiny_run)
    r = ddpm(cmd, str(tiny_run), "--omega", omega, "--device", "cpu")
    assert_one_line_error(r, cmd, "--omega", "finite")
    assert checksums(tiny_run) == before


# ----------------------------------------------------------------------------------------------
# 3. structurally malformed configs and sweep files


CONFIGS = {
    "section is a list": ("model: [1, 2]\n", "model must be a mapping"),
    "section is a string": ("train: fast\n", "train must be a mapping"),
    "section is an int": ("diffusion: 3\n", "diffusion must be a mapping"),
    "list for a scalar": ("train:\n  lr: [1, 2]\n", "train.lr = [1, 2]: expected a number"),
    "dict for a scalar": ("model:\n  num_feat: {a: 1}\n", "model.num_feat = {'a': 1}: expected an integer"),
    "scalar for a list": ("train:\n  milestones: 5\n", "train.milestones = 5: expected list of int"),
    "nested list in a list": ("train:\n  milestones: [[1]]\n", "train.milestones = [1]: expected an integer"),
    "list for a string": ("name: [a, b]\n", "name = ['a', 'b']: expected a string"),
    "base is an int": ("base: 5\n", "base = 5: must name another experiment file"),
    "base is a list": ("base: [seed.yaml]\n", "base = ['seed.yaml']"),
    "base is missing": ("base: nope.yaml\n", "base = 'nope.yaml': no such config file"),
    "bare scalar file": ("42\n", "top level must be a mapping"),
    "top-level list": ("- train\n- model\n", "top level must be a mapping"),
    "key is an int": ("1: 2\n", "key 1 under the top level is not a name"),
    "key is null in a section": ("train:\n  null: 3\n", "key None under train is not a name"),
    "unhashable key": ("? [a, b]\n: 1\n", "not valid YAML"),
    "two documents": ("train: {}\n---\nmodel: {}\n", "not valid YAML"),
    "date for a string": ("name: 2024-01-01\n", "name = datetime.date(2024, 1, 1): expected a string"),
    "control character": ("name: a\x00b\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_malformed_config_file(tmp_path, case):
    text, needle = CONFIGS[case]
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    before = checksums(p)
    r = ddpm("train", str(p), "out_dir=" + str(tmp_path / "runs"))
    assert_one_line_error(r, "train", str(p), needle)
    assert r.returncode == 2 and checksums(p) == before and not (tmp_path / "runs").exists()


def test_non_utf8_config_and_sweep(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    assert_one_line_error(ddpm("train", str(p)), "train", str(p), "not UTF-8", "0xe9")
    s = tmp_path / "sweep.yaml"
    s.write_bytes(b"study: x\xff\nbase: seed.yaml\n")
    assert_one_line_error(ddpm("sweep", str(s)), "sweep", str(s), "not UTF-8")


@pytest.mark.parametrize("override,needle", [
    ("train.lr.x=1", "'lr' is not a section"), ("name.x=1", "'name' is not a section"),
    ("model={a: 1}", "unknown key 'model.a'"), ("model=[1]", "model must be a mapping"),
    ("train.lr={1: 2}", "train.lr = {1: 2}"),
])
def test_malformed_overrides(override, needle):
    assert_one_line_error(ddpm("train", SEED_YAML, override), "train", needle)


def _sweep(tmp_path: Path, **changes) -> Path:
    raw = {"study": "hard", "base": str(QUICK_YAML), "space": {"train.lr": {"type": "float", "low": 1e-4,
           "high": 1e-3, "log": True}}, "guidance": None, "objectives": ["test_loss"], "n_trials": 1,
           "out_dir": str(tmp_path / "runs")}
    for k, v in changes.items():
        if v is ...:
            raw.pop(k, None)
        else:
            raw[k] = v
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


SWEEPS = {
    "space entry is a string": ({"space": {"train.lr": "log 1e-4..1e-3"}}, "space.train.lr must be a mapping"),
    "space is a list": ({"space": ["train.lr"]}, "space must be a mapping"),
    "type is a list": ({"space": {"train.lr": {"type": ["float"], "low": 0.1, "high": 1}}}, "space.train.lr.type = ['float']"),
    "low is -inf": ({"space": {"train.lr": {"type": "float", "low": float("-inf"), "high": 1}}}, "space.train.lr.low = -inf: not a finite"),
    "high is nan": ({"space": {"train.lr": {"type": "float", "low": 0.1, "high": float("nan")}}}, "space.train.lr.high = nan"),
    "nan choice": ({"space": {"train.lr": {"type": "categorical", "choices": [0.1, float("nan")]}}}, "nan is not a finite number"),
    "guidance is a list": ({"guidance": [0, 1]}, "guidance must be a mapping"),
    "omegas is a string": ({"guidance": {"omegas": "0,1"}}, "guidance.omegas = '0,1'"),
    "omega is nan": ({"guidance": {"omegas": [0, float("nan")]}}, "guidance.omegas = nan: not a finite"),
    "omega is inf": ({"guidance": {"omegas": [float("inf")]}}, "guidance.omegas = inf"),
    "guidance eta negative": ({"guidance": {"omegas": [0], "eta": -1}}, "guidance.eta = -1.0: must be >= 0"),
    "guidance sampler is a list": ({"guidance": {"omegas": [0], "sampler": ["ddim"]}}, "guidance.sampler = ['ddim']"),
    "guidance select is a list": ({"guidance": {"omegas": [0], "select": ["fid"]}}, "guidance.select = ['fid']"),
    "metric is a list": ({"objectives": [{"metric": ["fid"]}]}, "objectives[0].metric = ['fid']"),
    "direction is a dict": ({"objectives": [{"metric": "test_loss", "direction": {"a": 1}}]}, "direction = {'a': 1}"),
    "objectives is an int": ({"objectives": 5}, "objectives must be a non-empty list"),
    "heartbeat is a list": ({"heartbeat": [10]}, "heartbeat must be a mapping"),
    "heartbeat inf": ({"heartbeat": {"interval": float("inf")}}, "heartbeat.interval = inf"),
    "enqueue is an int": ({"enqueue": 5}, "enqueue must be a list"),
    "enqueue value is a list": ({"enqueue": [{"train.lr": [0.001]}]}, "enqueue[0].train.lr = [0.001]: outside"),
    "enqueue entry is a string": ({"enqueue": ["train.lr=1e-3"]}, "enqueue[0] must be a mapping"),
    "sampler name is a list": ({"sampler": {"name": ["tpe"]}}, "sampler.name = ['tpe']"),
    "sampler option nan": ({"sampler": {"name": "tpe", "seed": float("nan")}}, "sampler.seed = nan"),
    "prune_on metric is a list": ({"pruner": "median", "prune_on": {"metric": ["test_loss"]}}, "prune_on = ['test_loss']"),
    "timeout is inf": ({"timeout": float("inf")}, "timeout = inf: not a finite"),
    "n_trials is nan": ({"n_trials": float("nan")}, "n_trials = nan"),
    "base is a dict": ({"base": {"a": 1}}, "base = {'a': 1}"),
    "description is a dict": ({"description": {"a": 1}}, "description = {'a': 1}"),
    "overrides nan": ({"overrides": {"train.lr": float("nan")}}, "train.lr = nan"),
}


@pytest.mark.parametrize("case", sorted(SWEEPS))
def test_malformed_sweep_file(tmp_path, case):
    changes, needle = SWEEPS[case]
    p = _sweep(tmp_path, **changes)
    r = ddpm("sweep", str(p), "--no-wandb")
    assert_one_line_error(r, "sweep", needle)
    assert r.returncode == 2 and not (tmp_path / "runs").exists(), "nothing is created for a bad sweep file"


def test_sweep_file_that_is_a_scalar(tmp_path):
    p = tmp_path / "sweep.yaml"
    p.write_text("just a string\n")
    assert_one_line_error(ddpm("sweep", str(p)), "sweep", str(p), "top level must be a mapping")


# ----------------------------------------------------------------------------------------------
# 4. checkpoints of the right format with missing or wrong keys


def _crafted(tiny_run: Path, tmp_path: Path, case: str) -> Path:
    import torch

    from ddpm.checkpoint import FORMAT, load_checkpoint, save_checkpoint

    ck = load_checkpoint(tiny_run / "checkpoints" / "last.pt")
    ck.pop("path")
    ck.pop("format")
    mutate = {
        "no config": lambda c: c.pop("config"),
        "no model": lambda c: c.pop("model"),
        "config is a string": lambda c: c.update(config="seed"),
        "config lacks model": lambda c: c["config"].pop("model"),
        "model is a list": lambda c: c.update(model=[1, 2]),
        "model holds strings": lambda c: c.update(model={k: "x" for k in c["model"]}),
        "ema is an int": lambda c: c.update(ema=3),
        "no optimizer": lambda c: c.pop("optimizer"),
        "no rng": lambda c: c.pop("rng"),
        "rng lacks noise": lambda c: c["rng"].pop("noise"),
        "epoch is a string": lambda c: c.update(epoch="1"),
        "history is a dict": lambda c: c.update(history={}),
        "weights of another width": lambda c: c.update(model={k: torch.zeros(1) for k in c["model"]}),
    }[case]
    mutate(ck)
    run = tmp_path / "runs" / "tiny"
    (run / "checkpoints").mkdir(parents=True)
    save_checkpoint(run / "checkpoints" / "last.pt", ck)
    shutil.copy(run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt")
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["format"] == FORMAT
    return run


@pytest.mark.slow
@pytest.mark.parametrize("case,needle", [
    ("no config", "'config'"), ("no model", "'model'"), ("config is a string", "'config' holds str"),
    ("config lacks model", "config.model"), ("model is a list", "'model' holds list"),
    ("model holds strings", "not a state dict of tensors"), ("ema is an int", "'ema' holds int"),
    ("weights of another width", "weights do not fit"),
])
@pytest.mark.parametrize("cmd", ["sample", "eval"])
def test_checkpoint_missing_keys_sample_eval(tiny_run, tmp_path, case, needle, cmd):
    run = _crafted(tiny_run, tmp_path, case)
    before = checksums(run)
    r = ddpm(cmd, str(run / "checkpoints" / "best.pt"), "--device", "cpu", "--n", "4",
                "--out", str(tmp_path / "out"))
    assert_one_line_error(r, cmd, "best.pt", needle)
    assert checksums(run) == before and not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case,needle", [
    ("no config", "'config'"), ("no optimizer", "'optimizer'"), ("no rng", "'rng'"),
    ("rng lacks noise", "rng lacks the noise"), ("epoch is a string", "'epoch' holds str"),
    ("history is a dict", "'history' holds dict"), ("config lacks model", "config.model"),
])
def test_checkpoint_missing_keys_resume(tiny_run, tmp_path, case, needle):
    run = _crafted(tiny_run, tmp_path, case)
    shutil.copy(tiny_run / "metrics.jsonl", run / "metrics.jsonl")
    before = checksums(run)
    r = ddpm("train", SEED_YAML, *tiny_overrides(tmp_path / "runs", name="tiny", **{"train.grid_every": 0}),
                "--resume")
    assert_one_line_error(r, "train", "last.pt", needle)
    assert checksums(run) == before


# ----------------------------------------------------------------------------------------------
# 5. options the machine cannot honour; 6. a model that does not fit the dataset


needs_no_cuda = pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")


@pytest.mark.parametrize("argv,needle", [
    pytest.param(["train", SEED_YAML, "train.device=cuda"], "train.device = 'cuda': no CUDA", marks=needs_no_cuda),
    (["train", SEED_YAML, "train.device=tpu"], "train.device = 'tpu'"),
    (["sample", "x.pt", "--device", "foo"], "--device 'foo': unknown device"),
    (["sample", "x.pt", "--device", "mps"], "--device 'mps': not supported"),
    (["eval", "x.pt", "--device", "cuda:7"], "--device 'cuda:7'"),
    (["eval", "train-classifier", "--device", "xla"], "--device 'xla'"),
    (["bench", "--quick", "--widths", "8", "train.device=meta"], "train.device = 'meta'"),
])
def test_devices_the_machine_cannot_honour(argv, needle):
    cmd = "eval train-classifier" if argv[:2] == ["eval", "train-classifier"] else argv[0]   # its own command
    assert_one_line_error(ddpm(*argv), cmd, needle)


def test_bf16_that_cannot_run_is_a_config_error(monkeypatch):
    """No CPU here lacks bf16 autocast, so the refusal path is driven through its probe's answer."""
    import torch

    from ddpm import runtime
    from ddpm.config import TrainConfig
    from ddpm.errors import ConfigError

    assert runtime.autocast_dtype(TrainConfig(precision="bf16"), torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(runtime, "_bf16_runs", lambda device: "no bf16 kernels")
    with pytest.raises(ConfigError, match=r"train.precision = 'bf16': cannot run on cpu here \(no bf16 kernels\)"):
        runtime.autocast_dtype(TrainConfig(precision="bf16"), torch.device("cpu"))
    assert runtime.autocast_dtype(TrainConfig(precision="auto"), torch.device("cpu")) is None


@pytest.mark.parametrize("override,needle", [
    ("model.image_size=32", "model.image_size = 32: mnist images are 28x28"),
    ("model.image_size=12", "model.image_size = 12"),
    ("model.in_channels=3", "model.in_channels = 3: mnist images have 1 channel"),
    ("model.num_classes=5", "model.num_classes = 5: mnist has labels 0..9"),
])
def test_model_that_does_not_fit_the_dataset(tmp_path, override, needle):
    r = ddpm("train", SEED_YAML, *tiny_overrides(tmp_path / "runs"), override)
    assert_one_line_error(r, "train", needle)
    assert not (tmp_path / "runs").exists(), "refused before anything is written"


# ----------------------------------------------------------------------------------------------
# 7. OSError on output, run, report and cache paths


@pytest.fixture
def a_file(tmp_path) -> Path:
    f = tmp_path / "a-file"
    f.write_text("I am a file, not a folder\n")
    return f


def test_out_dir_is_a_file(tmp_path, a_file):
    r = ddpm("train", SEED_YAML, *tiny_overrides(a_file))
    assert_one_line_error(r, "train", str(a_file))
    assert r.returncode == 1 and a_file.read_text() == "I am a file, not a folder\n"


def test_run_dir_under_a_file(tmp_path, a_file):
    r = ddpm("train", SEED_YAML, *tiny_overrides(tmp_path / "runs"), "--run-dir", str(a_file / "run"))
    assert_one_line_error(r, "train", str(a_file / "run"), "Not a directory")


def test_out_dir_in_proc(tmp_path):
    r = ddpm("train", SEED_YAML, *tiny_overrides(Path("/proc/ddpm-probe")))
    assert_one_line_error(r, "train", "/proc/ddpm-probe")


@pytest.mark.slow
@pytest.mark.parametrize("cmd", ["sample", "eval"])
def test_sample_eval_out_under_a_file(tiny_run, a_file, cmd):
    before = checksums(tiny_run)
    r = ddpm(cmd, str(tiny_run), "--device", "cpu", "--n", "4", "--steps", "2", "--omega", "1",
                "--out", str(a_file / "out"), env={"DDPM_CACHE": str(a_file.parent / "cache")})
    assert_one_line_error(r, cmd, str(a_file / "out"))
    assert checksums(tiny_run) == before


@pytest.mark.slow
def test_eval_cache_is_a_file(tiny_run, tmp_path, a_file):
    # a fresh process: this one may hold the test-split statistics in memory already
    r = run_cli("eval", str(tiny_run), "--device", "cpu", "--n", "4", "--steps", "2", "--omega", "1",
                "--out", str(tmp_path / "ev"), env={"DDPM_CACHE": str(a_file)})
    assert_one_line_error(r, "eval", str(a_file))


def test_report_out_is_a_file(study_db, a_file):
    before = checksums(study_db)
    r = ddpm("report", "probe", "--storage", f"sqlite:///{study_db}", "--out", str(a_file))
    assert_one_line_error(r, "report", str(a_file))
    assert checksums(study_db) == before


def _limited_fsize(limit: int):
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


@pytest.mark.slow
def test_file_size_limit_while_saving_a_checkpoint(tmp_path):
    """A file that may not grow (RLIMIT_FSIZE: EFBIG, the same path through the code as ENOSPC)."""
    cmd = [sys.executable, "-m", "ddpm", "train", SEED_YAML, *tiny_overrides(tmp_path / "runs", **{"train.grid_every": 0})]
    env = {**os.environ, "DDPM_PROGRESS": "0", "WANDB_MODE": "disabled"}
    r = subprocess.run(cmd, cwd=REPO, env=env, text=True, capture_output=True, timeout=300,
                       preexec_fn=_limited_fsize(64 * 1024))
    line = assert_one_line_error(r, "train", "File too large")
    assert ".pt" in line and str(tmp_path / "runs") in line
    left = [p.name for p in (tmp_path / "runs").rglob("*.tmp")]
    assert not left, f"temporary files left behind: {left}"


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (root only): a real ENOSPC."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or \
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root); the EFBIG case covers the same code path")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_disk_full_while_sampling(tiny_run, small_disk):
    before = checksums(tiny_run)
    r = run_cli("sample", str(tiny_run), "--device", "cpu", "--n", "400", "--steps", "2", "--omega", "1",
                "--out", str(small_disk / "samples"))
    assert_one_line_error(r, "sample", str(small_disk / "samples"), "No space left on device")
    assert checksums(tiny_run) == before


@pytest.mark.slow
def test_disk_full_while_training(tmp_path, small_disk):
    r = ddpm("train", SEED_YAML, *tiny_overrides(small_disk / "runs", **{"train.grid_every": 0}))
    assert_one_line_error(r, "train", str(small_disk / "runs"), "No space left on device")


@pytest.mark.slow
def test_a_trial_whose_run_folder_is_unwritable_fails_alone(tmp_path):
    import optuna

    p = _sweep(tmp_path, n_trials=2, overrides={**TINY, "train.grid_every": 0}, sampler={"name": "random", "seed": 0})
    (tmp_path / "runs" / "hard").mkdir(parents=True)
    (tmp_path / "runs" / "hard" / "trial-0").write_text("a file where trial-0's folder goes\n")
    r = run_cli("sweep", str(p), "--no-wandb")
    assert "Traceback" not in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    assert r.returncode == 0, r.stderr[-3000:]
    trials = optuna.load_study(study_name="hard", storage=f"sqlite:///{tmp_path / 'runs' / 'hard' / 'study.db'}").trials
    # what was in the way is never deleted or written: trial 0 runs beside it, in trial-0-v2
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[0].user_attrs["run_dir"].endswith("trial-0-v2")
    assert (tmp_path / "runs" / "hard" / "trial-0").read_text() == "a file where trial-0's folder goes\n"


# ----------------------------------------------------------------------------------------------
# 8. corrupt SQLite study files: one line naming the file, the file untouched


def _corrupt(study_db: Path, tmp_path: Path, how: str) -> Path:
    bad = tmp_path / "runs" / "probe" / "study.db"
    bad.parent.mkdir(parents=True)
    data = bytearray(study_db.read_bytes())
    page = 4096
    if how == "pages after the first":
        data[page:] = b"\xa5" * (len(data) - page)
    elif how == "one page in the middle":
        data[2 * page:3 * page] = random.Random(0).randbytes(page)
    elif how == "a page header mid-file":
        mid = len(data) // page // 2 * page
        data[mid:mid + 64] = b"\xff" * 64
    elif how == "not sqlite":
        data = bytearray(b"this is not a database\n" * 400)
    elif how == "truncated":
        data = data[: len(data) // 2]
    bad.write_bytes(bytes(data))
    return bad


# SQLite keeps no page checksums: bytes changed inside a stored text value read back as another value, and
# no reader can tell. What it can tell (b-tree pages, headers, a foreign file) must be one line, file untouched.
CORRUPTIONS = ["pages after the first", "one page in the middle", "a page header mid-file", "not sqlite"]


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("cmd", ["trials", "studies", "report", "sweep"])
def test_corrupt_study_file(study_db, tmp_path, how, cmd):
    bad = _corrupt(study_db, tmp_path, how)
    before = checksums(bad.parent)
    url = f"sqlite:///{bad}"
    argv = {"trials": ["trials", "probe", "--storage", url],
            "studies": ["studies", "--out-dir", str(tmp_path / "runs")],
            "report": ["report", "probe", "--storage", url, "--out", str(tmp_path / "rep")],
            "sweep": ["sweep", str(_sweep(tmp_path, study="probe")), "--no-wandb"]}[cmd]
    r = ddpm(*argv)
    assert_one_line_error(r, cmd, str(bad), "corrupt or not a SQLite database")
    assert checksums(bad.parent) == before, "the corrupt file (and its folder) are left exactly as they were"
    assert not (tmp_path / "rep").exists()


def test_truncated_study_file(study_db, tmp_path):
    bad = _corrupt(study_db, tmp_path, "truncated")
    before = checksums(bad.parent)
    r = ddpm("trials", "probe", "--storage", f"sqlite:///{bad}")
    assert_one_line_error(r, "trials", str(bad))
    assert checksums(bad.parent) == before


# ----------------------------------------------------------------------------------------------
# the CLI's own plumbing


def test_argparse_errors_are_one_line():
    r = ddpm("train")
    assert_one_line_error(r, "train", "the following arguments are required: config", "--help")
    r = ddpm("sample", "x.pt", "--bogus")
    assert_one_line_error(r, "sample", "--bogus")


def test_os_error_text_names_both_paths():
    from ddpm.cli import os_error_text

    assert os_error_text(FileExistsError(17, "File exists", "/a/b")) == "/a/b: File exists"
    assert os_error_text(OSError(18, "Invalid cross-device link", "/a", None, "/b")) == "/a -> /b: Invalid cross-device link"
    assert os_error_text(OSError(28, "No space left on device")) == "No space left on device"


# ----------------------------------------------------------------------------------------------
# every class once more as a real `python -m ddpm` process (stderr, exit code and no traceback as a user sees them)


def _subprocess_cases(tmp_path: Path, tiny_run: Path, study_db: Path) -> dict[str, tuple[list[str], str, str, int]]:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model: [1, 2]\n")
    sweep = _sweep(tmp_path / "s", guidance={"omegas": [0, float("nan")]})
    ckpt_run = _crafted(tiny_run, tmp_path / "ck", "no model")
    corrupt = _corrupt(study_db, tmp_path / "db", "one page in the middle")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    return {
        "non-finite override": (["train", SEED_YAML, "train.lr=1e999"], "train", "train.lr = inf", 2),
        "negative --eta": (["sample", "x.pt", "--eta", "-1"], "sample", "--eta", 2),
        "malformed config": (["train", str(bad_yaml)], "train", "model must be a mapping", 2),
        "malformed sweep": (["sweep", str(sweep)], "sweep", "guidance.omegas = nan", 2),
        "checkpoint without model": (["sample", str(ckpt_run), "--device", "cpu"], "sample", "'model'", 2),
        "device": (["sample", str(tiny_run), "--device", "cuda:99"], "sample", "--device 'cuda:99'", 2),
        "model does not fit": (["train", SEED_YAML, "model.in_channels=3", f"out_dir={tmp_path / 'r'}"], "train",
                               "model.in_channels = 3", 2),
        "out_dir is a file": (["train", SEED_YAML, *tiny_overrides(a_file)], "train", str(a_file), 1),
        "corrupt study": (["trials", "probe", "--storage", f"sqlite:///{corrupt}"], "trials", str(corrupt), 2),
    }


SUBPROCESS_CASES = ["non-finite override", "negative --eta", "malformed config", "malformed sweep",
                    "checkpoint without model", "device", "model does not fit", "out_dir is a file", "corrupt study"]


@pytest.mark.slow
@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_each_class_as_a_real_process(tmp_path, tiny_run, study_db, case):
    argv, cmd, needle, code = _subprocess_cases(tmp_path, tiny_run, study_db)[case]
    before = checksums(tiny_run, study_db)
    r = run_cli(*argv)
    assert_one_line_error(r, cmd, needle)
    assert r.returncode == code and r.stdout.strip() == ""
    assert checksums(tiny_run, study_db) == before


def test_a_model_the_machine_cannot_hold(tmp_path):
    """A width whose first weights need 10 TB: torch's allocation error becomes one line (and nothing is written)."""
    r = ddpm("train", SEED_YAML, *tiny_overrides(tmp_path / "runs"), "model.num_feat=800000")
    assert_one_line_error(r, "train", "out of memory", "can't allocate memory", "model.num_feat")
    assert r.returncode == 1 and not (tmp_path / "runs").exists()

