"""W&B sweep configuration files accepted by `ddpm sweep` (ddpm/sweeps/wandb_format.py): each maps onto the same
SweepSpec as the equivalent native sweep file, runs as a study with that space, and every W&B feature without a
counterpart is a one-line error."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from helpers import QUICK_YAML, SWEEP_TINY, assert_one_line_error, run_cli, sweep_file
from ddpm.errors import ConfigError
from ddpm.sweeps import load_sweep, run_study

# what a SweepSpec means; path, raw (the file as written) and description are how it was written
SAME = ("study", "base", "base_data", "space", "overrides", "guidance", "objectives", "sampler", "sampler_kwargs",
        "pruner", "pruner_kwargs", "prune", "n_trials", "timeout", "enqueue_baseline", "enqueue", "storage",
        "heartbeat", "out_dir", "report", "confirm")


def wandb_file(tmp_path: Path, name: str = "wandb.yaml", ddpm: dict[str, Any] | None = None, **changes: Any) -> Path:
    """A tiny W&B bayes sweep of cpu-quick (2 runs, test-loss metric) written to tmp_path/name, the counterpart of
    helpers.sweep_file(); ``ddpm=`` adds to the ddpm: extension, any other key replaces the file's."""
    data: dict[str, Any] = {
        "program": "train.py",
        "name": "tiny",
        "method": "bayes",
        "metric": {"name": "test_loss", "goal": "minimize"},
        "run_cap": 2,
        "parameters": {"train.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 3e-3}},
        "ddpm": {"base": str(QUICK_YAML), "overrides": dict(SWEEP_TINY), "guidance": None,
                 "out_dir": str(tmp_path / "runs")},
    }
    data["ddpm"].update(ddpm or {})
    data.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def assert_same_spec(a: Any, b: Any) -> None:
    for k in SAME:
        assert getattr(a, k) == getattr(b, k), (k, getattr(a, k), getattr(b, k))


# ----------------------------------------------------------------------------------------------
# the same SweepSpec as the native file


def test_a_wandb_bayes_file_is_the_native_tpe_sweep(tmp_path):
    """Dotted and nested parameter names, inferred and named distributions, a constant, hyperband: the same spec
    as the native file written by hand (TPE, successive halving on the per-epoch test loss)."""
    wb = load_sweep(wandb_file(tmp_path, parameters={
        "train.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 3e-3},
        "model": {"parameters": {"num_feat": {"values": [8, 12]}}},
        "diffusion": {"parameters": {"mask_p": {"min": 0.05, "max": 0.2}}},       # floats: uniform
        "train.batch_size": {"min": 32, "max": 64},                               # integers: int_uniform
        "sample.omega": {"value": 1.5}},
        early_terminate={"type": "hyperband", "min_iter": 1, "eta": 3}))
    native = load_sweep(sweep_file(
        tmp_path, name="native.yaml", space={
            "train.lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
            "model.num_feat": {"type": "categorical", "choices": [8, 12]},
            "diffusion.mask_p": {"type": "float", "low": 0.05, "high": 0.2},
            "train.batch_size": {"type": "int", "low": 32, "high": 64}},
        objectives=[{"metric": "test_loss", "direction": "minimize"}],
        pruner={"name": "successive_halving", "min_resource": 1, "reduction_factor": 3, "min_early_stopping_rate": 0},
        prune_on="test_loss", overrides={"sample.omega": 1.5}))
    assert_same_spec(wb, native)
    assert wb.space["train.lr"].distribution == FloatDistribution(1e-4, 3e-3, log=True)
    assert wb.space["model.num_feat"].distribution == CategoricalDistribution([8, 12])
    assert wb.space["train.batch_size"].distribution == IntDistribution(32, 64)
    assert wb.overrides["sample.omega"] == 1.5 and wb.sampler == "tpe" and wb.n_trials == 2
    assert wb.description == "" and wb.raw["space"]   # stored with the study: the mapping, in the native format


def test_a_wandb_grid_file_is_the_native_grid_sweep(tmp_path):
    """grid -> our grid sampler, its size the product of the values; q_uniform lists numpy.arange(min, max, q) as
    W&B's grid does (max excluded), int_uniform every integer of [min, max]."""
    params = {"model.num_feat": {"values": [8, 12]},
              "train.lr": {"distribution": "q_uniform", "min": 0.001, "max": 0.004, "q": 0.001},
              "train.batch_size": {"distribution": "int_uniform", "min": 63, "max": 64}}
    wb = load_sweep(wandb_file(tmp_path, method="grid", run_cap=None, parameters=params))
    native = load_sweep(sweep_file(tmp_path, name="native.yaml", sampler={"name": "grid", "seed": 0}, n_trials=None,
                                   space={"model.num_feat": [8, 12],
                                          "train.lr": {"type": "float", "low": 0.001, "high": 0.003, "step": 0.001},
                                          "train.batch_size": {"type": "int", "low": 63, "high": 64}}))
    assert_same_spec(wb, native)
    assert wb.sampler == "grid" and wb.n_trials == wb.grid_size() == 2 * 3 * 2
    assert wb.space["train.lr"].finite_values() == pytest.approx([0.001, 0.002, 0.003])


LAWS = [  # (W&B parameter under method random, the Optuna distribution it maps to)
    ({"values": ["a", 1, None]}, CategoricalDistribution(["a", 1, None])),
    ({"min": 1, "max": 4}, IntDistribution(1, 4)),
    ({"min": 0.5, "max": 4}, FloatDistribution(0.5, 4.0)),
    ({"distribution": "uniform", "min": 1, "max": 4}, FloatDistribution(1.0, 4.0)),
    ({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}, FloatDistribution(1e-4, 1e-2, log=True)),
    ({"distribution": "inv_log_uniform_values", "min": 1e-4, "max": 1e-2}, FloatDistribution(1e-4, 1e-2, log=True)),
    ({"distribution": "log_uniform", "min": math.log(1e-4), "max": math.log(1e-2)},
     FloatDistribution(math.exp(math.log(1e-4)), math.exp(math.log(1e-2)), log=True)),
    ({"distribution": "inv_log_uniform", "min": 2.0, "max": 5.0}, FloatDistribution(math.exp(-5), math.exp(-2), log=True)),
    ({"distribution": "q_uniform", "min": 0.05, "max": 0.3, "q": 0.05}, FloatDistribution(0.05, 0.3, step=0.05)),
    ({"distribution": "q_uniform", "min": 16, "max": 64, "q": 16}, IntDistribution(16, 64, step=16)),
    ({"distribution": "q_log_uniform_values", "min": 8, "max": 64}, IntDistribution(8, 64, log=True)),
    ({"distribution": "q_log_uniform_values", "min": 8, "max": 64, "q": 1}, IntDistribution(8, 64, log=True)),
]


@pytest.mark.parametrize("entry,expected", LAWS, ids=lambda x: str(x)[:40] if isinstance(x, dict) else "")
def test_each_wandb_distribution_maps_to_its_optuna_counterpart(tmp_path, entry, expected):
    spec = load_sweep(wandb_file(tmp_path, method="random", parameters={"model.num_feat": entry}))
    assert spec.space["model.num_feat"].distribution == expected


def test_inv_log_uniform_values_is_the_log_uniform_law():
    """W&B: X = exp(-U) with U uniform on [-log max, -log min], quantile x at U's quantile 1 - x (params.py); the
    log-uniform quantile on [min, max] is exp(log min + x (log max - log min)): the same for every x."""
    lo, hi = 1e-4, 1e-2
    for x in (0.0, 0.1, 0.37, 0.5, 0.9, 1.0):
        wandb_q = math.exp(-(-math.log(hi) + (1 - x) * (math.log(hi) - math.log(lo))))
        assert wandb_q == pytest.approx(math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo))), rel=1e-12)


def test_a_wandb_file_without_ddpm_starts_from_the_seed_experiment(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text("method: random\nrun_cap: 3\nmetric: {name: Validation_Loss}\n"
                    "parameters:\n  train.lr: {min: 1.0e-5, max: 1.0e-3}\n")
    spec = load_sweep(path)
    seed = Path(__file__).resolve().parent.parent / "experiments" / "seed.yaml"
    assert spec.base == seed and spec.study == "plain" and spec.overrides == {}
    assert spec.objectives[0][0].name == "val_loss" and spec.directions == ["minimize"]
    assert spec.base_config().model.num_feat == 64 and spec.base_config().diffusion.T == 400


# ----------------------------------------------------------------------------------------------
# no counterpart, or wrong: one line naming the file, the key and the value

ERRORS = [  # (changes to the tiny W&B file, text the one-line message holds)
    ({"parameters": {"train.lr": {"distribution": "q_normal", "mu": 0, "sigma": 1}}},
     ["parameters.train.lr.distribution = 'q_normal'", "no counterpart", "normal"]),
    ({"parameters": {"model.num_feat": {"values": [8, 12], "probabilities": [0.3, 0.7]}}},
     ["categorical_w_probabilities", "no counterpart"]),
    ({"early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3}},
     ["early_terminate.max_iter/s = [27, 2]", "no counterpart", "min_iter: 3"]),
    ({"early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2.5}}, ["early_terminate.eta = 2.5", "integer"]),
    ({"metric": {"name": "loss", "goal": "minimize"}}, ["metric.name = 'loss'", "fid, accuracy"]),
    ({"metric": {"name": "accuracy"}}, ["metric.goal is missing", "goal: maximize"]),
    ({"metric": {"name": "fid", "goal": "minimize", "target": 10}}, ["metric.target = 10", "no counterpart"]),
    ({"method": "custom"}, ["method = 'custom'", "no counterpart"]),
    ({"method": "hyperopt"}, ["method = 'hyperopt'", "grid, random, bayes"]),
    ({"method": "grid", "parameters": {"train.lr": {"min": 1e-4, "max": 1e-3}}},
     ["parameters.train.lr.distribution = 'uniform' with method grid"]),
    ({"method": "random", "run_cap": None}, ["method random without run_cap"]),
    ({"parameters": {"train.lrr": {"values": [1e-3]}}}, ["parameters: 'train.lrr' is not a config key", "train.lr"]),
    ({"parameters": {"model.num_feat": {"distribution": "q_log_uniform_values", "min": 8, "max": 64, "q": 8}}},
     ["parameters.model.num_feat.q = 8", "no counterpart", "log scale"]),
    ({"parameters": {"model.num_feat": {"distribution": "int_uniform", "min": 8, "max": 64, "q": 8}}},
     ["parameters.model.num_feat.q: not a key of distribution int_uniform"]),
    ({"parameters": {"model": {"parameters": {"num_feat": {"values": [8]}}, "values": [1]}}},
     ["parameters.model: a nested parameters mapping holds nothing beside it"]),
    ({"ddpm": {"space": {}}}, ["ddpm.space: given by the W&B key parameters"]),
    ({"ddpm": {"guidance": None}, "metric": {"name": "fid", "goal": "minimize"}},
     ["metric = 'fid' is read from the guidance grid, but guidance is null"]),
    ({"ddpm": {"overrides": {**SWEEP_TINY, "diffusion.T": 2}}}, ["ddpm.base + overrides", "diffusion.T"]),
    ({"ddpm": {"sampler": {"name": "cmaes"}}}, ["ddpm.sampler", "set by method"]),
    ({"methd": "grid"}, ["unknown key 'methd'", "did you mean 'method'"]),
]


def _changed(tmp_path: Path, changes: dict[str, Any]) -> Path:
    changes = dict(changes)
    return wandb_file(tmp_path, ddpm=changes.pop("ddpm", None), **changes)


@pytest.mark.parametrize("changes,needles", ERRORS, ids=lambda x: str(x)[:50] if isinstance(x, dict) else "")
def test_a_wandb_feature_without_counterpart_is_a_one_line_error(tmp_path, changes, needles):
    path = _changed(tmp_path, changes)
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    for n in needles:
        assert n in msg, (n, msg)


@pytest.mark.slow
@pytest.mark.parametrize("i", [0, 2, 16])
def test_ddpm_sweep_refuses_a_wandb_file_in_one_line(tmp_path, i):
    changes, needles = ERRORS[i]
    path = _changed(tmp_path, changes)
    assert_one_line_error(run_cli("sweep", str(path), cwd=tmp_path), str(path), *needles)
    assert not (tmp_path / "runs").exists()     # nothing was created


# ----------------------------------------------------------------------------------------------
# both run as studies with the same space


def _distributions(spec: Any) -> dict[str, Any]:
    return {k: s.distribution for k, s in spec.space.items()}


@pytest.mark.slow
def test_a_wandb_grid_file_runs_as_a_grid_study(tmp_path):
    """`ddpm sweep wandb.yaml` (W&B grid: values x q_uniform with one arange point): every grid point once."""
    path = wandb_file(tmp_path, "wbgrid.yaml", method="grid", run_cap=None, parameters={
        "model": {"parameters": {"num_feat": {"values": [8, 16]}}},
        "train.lr": {"distribution": "q_uniform", "min": 0.001, "max": 0.002, "q": 0.001}})
    r = run_cli("sweep", str(path), cwd=tmp_path, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    spec = load_sweep(path)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'runs' / 'tiny' / 'study.db'}")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert sorted(t.params["model.num_feat"] for t in trials) == [8, 16]
    assert all(t.params["train.lr"] == pytest.approx(0.001) for t in trials)
    assert all(t.distributions == _distributions(spec) for t in trials)
    assert study.user_attrs["spec"]["space"]["model.num_feat"] == {"type": "categorical", "choices": [8, 16]}


@pytest.mark.slow
def test_a_wandb_bayes_file_runs_as_a_tpe_study_with_successive_halving(tmp_path):
    path = wandb_file(tmp_path, "wbbayes.yaml", parameters={
        "train.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 3e-3},
        "model.num_feat": {"values": [8, 16]}},
        early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2})
    spec = load_sweep(path)
    study = run_study(spec)
    assert isinstance(study.sampler, optuna.samplers.TPESampler)
    assert isinstance(study.pruner, optuna.pruners.SuccessiveHalvingPruner)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(t.distributions == _distributions(spec) for t in trials)
    assert all(set(t.intermediate_values) == {1} for t in trials)   # the per-epoch test loss went to the pruner
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE]
