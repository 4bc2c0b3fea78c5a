"""Sweep files: the shipped ones parse; every bad input is a one-line error naming file, key and value."""
from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import REPO, run_cli
from ddpm.errors import ConfigError, DDPMError
from ddpm.sweeps.pruners import PRUNERS, make_pruner
from ddpm.sweeps.samplers import SAMPLERS, make_sampler
from ddpm.sweeps.spec import load_sweep
from ddpm.sweeps.storage import open_storage, redact_url

GOOD = {
    "study": "t",
    "base": str(REPO / "experiments" / "cpu-quick.yaml"),
    "overrides": {"train.epochs": 1},
    "space": {"diffusion.schedule": {"type": "categorical", "choices": ["linear", "cosine"]},
              "train.lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
              "diffusion.T": {"type": "int", "low": 100, "high": 400, "step": 100}},
    "guidance": {"omegas": [0, 1, 2], "n": 20, "sampler": "ddim", "steps": 5},
    "objectives": [{"metric": "fid", "direction": "minimize"}],
    "sampler": {"name": "tpe", "seed": 0},
    "pruner": {"name": "median", "n_warmup_steps": 1},
    "prune_on": "sample_fid",
    "n_trials": 4,
}


def write(tmp_path: Path, data: dict, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


DROP = object()


def with_(**changes) -> dict:
    d = yaml.safe_load(yaml.safe_dump(GOOD))
    for k, v in changes.items():
        if v is DROP:
            del d[k]
        else:
            d[k] = v
    return d


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweeps_parse(path):
    spec = load_sweep(path)
    assert spec.space and spec.objectives and (spec.n_trials or spec.timeout)
    assert spec.base.is_file()


def test_good_spec(tmp_path):
    spec = load_sweep(write(tmp_path, GOOD))
    assert spec.directions == ["minimize"] and spec.prune.metric == "sample_fid"
    assert spec.space["diffusion.T"].finite_values() == [100, 200, 300, 400]
    assert str(spec.study_dir) == "runs/t"


BAD = [
    ("unknown top key", with_(n_trails=3), "unknown key 'n_trails' (did you mean 'n_trials'?)"),
    ("empty space", with_(space={}), "space is empty"),
    ("space key not in config", with_(space={"model.num_feats": [8]}), "'model.num_feats' is not a config key (did you mean 'model.num_feat'?)"),
    ("space key is a section", with_(space={"model": [8]}), "'model' is a config section"),
    ("bad distribution type", with_(space={"train.lr": {"type": "uniform", "low": 0, "high": 1}}), "space.train.lr.type = 'uniform': must be one of float, int, categorical"),
    ("low above high", with_(space={"train.lr": {"type": "float", "low": 1, "high": 0.1}}), "low (1.0) must be <= high (0.1)"),
    ("log needs positive low", with_(space={"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}}), "log scale needs low > 0"),
    ("int with float bounds", with_(space={"diffusion.T": {"type": "int", "low": 1.5, "high": 4}}), "space.diffusion.T.low = 1.5: expected an integer"),
    ("unknown distribution key", with_(space={"train.lr": {"type": "float", "low": 0.1, "high": 1, "lg": True}}), "unknown key 'lg' (did you mean 'log'?)"),
    ("empty choices", with_(space={"diffusion.schedule": {"type": "categorical", "choices": []}}), "must be a non-empty list"),
    ("unknown sampler", with_(sampler={"name": "bayes"}), "sampler.name = 'bayes': unknown; valid: cmaes, grid, nsga2, random, tpe"),
    ("unknown sampler option", with_(sampler={"name": "tpe", "seeed": 0}), "sampler tpe has no option 'seeed'"),
    ("unknown pruner", with_(pruner={"name": "asha"}), "pruner.name = 'asha': unknown; valid: hyperband, median, none"),
    ("unknown pruner option", with_(pruner={"name": "median", "warmup": 1}), "pruner median has no option 'warmup'"),
    ("unknown metric", with_(objectives=[{"metric": "is"}]), "objectives[0].metric = 'is': unknown; valid: fid"),
    ("bad direction", with_(objectives=[{"metric": "fid", "direction": "down"}]), "must be minimize or maximize"),
    ("prune metric sense", with_(prune_on="sample_accuracy"), "prune_on = 'sample_accuracy' is better higher but the study's objective is to minimize"),
    ("pruner with two objectives", with_(objectives=["fid", "sample_seconds"]), "Optuna prunes single-objective studies only"),
    ("grid over a continuous key", with_(sampler={"name": "grid"}), "sampler grid needs a finite space: train.lr is a continuous float"),
    ("no budget", with_(n_trials=DROP), "set n_trials or timeout"),
    ("guidance metric without guidance", with_(guidance=None, prune_on="test_loss"), "is read from the guidance grid, but guidance is null"),
    ("baseline outside the space", with_(enqueue_baseline=True, space={"model.num_feat": [8, 16]}), "the base's model.num_feat = 32 is outside the space"),
    ("override not a config key", with_(overrides={"train.epoch": 1}), "'train.epoch' is not a config key (did you mean 'train.epochs'?)"),
    ("override fails validation", with_(overrides={"model.num_feat": 12}), "model.num_feat = 12: must be a positive multiple of 8"),
    ("missing base", with_(base="nope.yaml"), "base = 'nope.yaml': no such file"),
    ("bad study name", with_(study="a/b"), "study = 'a/b'"),
    ("bad omegas", with_(guidance={"omegas": []}), "guidance.omegas = []"),
    ("bad heartbeat", with_(heartbeat={"interval": 5, "grace_period": 5}), "must exceed heartbeat.interval"),
]


@pytest.mark.parametrize("name,data,message", BAD, ids=[b[0] for b in BAD])
def test_bad_spec_is_one_line_error(tmp_path, name, data, message):
    with pytest.raises(ConfigError) as e:
        load_sweep(write(tmp_path, data))
    text = str(e.value)
    assert message in text
    assert "\n" not in text and text.startswith(str(tmp_path))


def test_not_yaml(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("study: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_sweep(p)


def test_cli_prints_one_line_and_exits_2(tmp_path):
    p = write(tmp_path, with_(sampler={"name": "bayes"}))
    r = run_cli("sweep", str(p), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown; valid:" in lines[0] and "Traceback" not in r.stderr


def test_unreachable_storage_hides_password(tmp_path, capsys, monkeypatch):
    from ddpm.cli import main

    monkeypatch.chdir(tmp_path)
    url = "postgresql://ddpm:hunter2-secret@127.0.0.1:1/optuna"   # nothing listens on port 1
    assert main(["sweep", str(write(tmp_path, GOOD)), "--storage", url]) == 2
    out, err = capsys.readouterr()
    assert "is unreachable" in err and "ddpm:***@127.0.0.1:1" in err
    assert "hunter2" not in err + out and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("url,message", [
    ("mysql://u@h/db", "unknown scheme 'mysql'"),
    ("sqlite://relative.db", "three slashes"),
    ("runs/study.db", "unknown scheme '(none)'"),
])
def test_bad_storage_urls(url, message):
    with pytest.raises(DDPMError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_storage(url)


def test_storage_backends_open(tmp_path):
    for url in (f"sqlite:///{tmp_path}/a.db", f"journal:///{tmp_path}/a.log"):
        storage = open_storage(url)
        study = optuna.create_study(study_name="x", storage=storage)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        assert len(optuna.load_study(study_name="x", storage=open_storage(url)).trials) == 2


def test_redact_url():
    assert redact_url("postgresql://u:p%40ss@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_url("sqlite:///runs/a/study.db") == "sqlite:///runs/a/study.db"


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_builds(tmp_path, name):
    spec = load_sweep(write(tmp_path, with_(space={"diffusion.schedule": ["linear", "cosine"],
                                                   "diffusion.T": {"type": "int", "low": 100, "high": 200, "step": 100}},
                                            sampler={"name": name, "seed": 0})))
    try:
        sampler = make_sampler(spec.sampler, spec.sampler_kwargs, spec.space, 1)
    except ConfigError as e:  # cmaes without its optional package: a clear message, not a crash
        assert name == "cmaes" and "pip install cmaes" in str(e)
        return
    assert isinstance(sampler, optuna.samplers.BaseSampler)


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_every_pruner_builds(name):
    assert isinstance(make_pruner(name, {}), optuna.pruners.BasePruner)


def test_spec_docstring_example_parses(tmp_path):
    from ddpm.sweeps import spec as spec_mod

    doc = spec_mod.__doc__.split("::", 1)[1]
    data = yaml.safe_load(textwrap.dedent(doc))
    data["base"] = str(REPO / "experiments" / "cpu-quick.yaml")
    assert load_sweep(write(tmp_path, data)).study == "quickstart"
