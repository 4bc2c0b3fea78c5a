"""Sweep files: the shipped ones parse; every bad input is a one-line error naming file, key and value."""
from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

from helpers import REPO, run_cli
from ddpm.errors import ConfigError, DDPMError
from ddpm.sweeps.pruners import PRUNERS, make_pruner
from ddpm.sweeps.samplers import OPTUNA_SAMPLERS, make_optuna_sampler
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
    p.write_text(yaml.safe_dump(data, sort_keys=False))  # the space keeps its order (a `when` names earlier keys)
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


@pytest.mark.slow
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


@pytest.mark.parametrize("name", sorted(OPTUNA_SAMPLERS))
def test_every_sampler_builds(tmp_path, name):
    spec = load_sweep(write(tmp_path, with_(space={"diffusion.schedule": ["linear", "cosine"],
                                                   "diffusion.T": {"type": "int", "low": 100, "high": 200, "step": 100}},
                                            sampler={"name": name, "seed": 0})))
    try:
        sampler = make_optuna_sampler(spec.sampler, spec.sampler_kwargs, spec.space, 1)
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


# ----------------------------------------------------------------------------------------------
# conditional spaces (when:) and the schedules a key means something for

SCHED = {"type": "categorical", "choices": ["linear", "quadratic", "cosine", "sigmoid"]}
BETA_T = {"type": "float", "low": 4e-2, "high": 2e-1, "log": True}
NON_COSINE = {"diffusion.schedule": ["linear", "quadratic", "sigmoid"]}


def _space(**entries) -> dict:
    return {k.replace("__", "."): v for k, v in entries.items()}


BAD_WHEN = [
    ("when names an unknown key", _space(diffusion__schedule=SCHED, diffusion__beta_T={**BETA_T, "when": {"diffusion.shedule": ["linear"]}}),
     "space.diffusion.beta_T.when: 'diffusion.shedule' is not a key searched above this one (earlier keys: diffusion.schedule)"),
    ("when names a later key", _space(diffusion__beta_T={**BETA_T, "when": {"diffusion.schedule": ["linear"]}}, diffusion__schedule=SCHED),
     "space.diffusion.beta_T.when: 'diffusion.schedule' is not a key searched above this one (earlier keys: none: this is the first key)"),
    ("when value not a choice", _space(diffusion__schedule=SCHED, diffusion__beta_T={**BETA_T, "when": {"diffusion.schedule": ["linear", "cosin"]}}),
     "space.diffusion.beta_T.when.diffusion.schedule: 'cosin' is not a value diffusion.schedule can take (its values: ['linear', 'quadratic', 'cosine', 'sigmoid'])"),
    ("when on a continuous key", _space(train__lr={"type": "float", "low": 1e-4, "high": 1e-3}, train__batch_size={"type": "int", "low": 32, "high": 64, "when": {"train.lr": [1e-4]}}),
     "space.train.batch_size.when: 'train.lr' is a continuous float"),
    ("empty when", _space(diffusion__schedule=SCHED, diffusion__beta_T={**BETA_T, "when": {}}), "space.diffusion.beta_T.when is empty"),
    ("when with no values", _space(diffusion__schedule=SCHED, diffusion__beta_T={**BETA_T, "when": {"diffusion.schedule": []}}),
     "space.diffusion.beta_T.when.diffusion.schedule = []"),
    ("beta_T searched for cosine", _space(diffusion__schedule=SCHED, diffusion__beta_T=BETA_T),
     "space.diffusion.beta_T is searched for schedule cosine, which ignores it (a pure-noise dimension for the sampler); "
     "add when: {diffusion.schedule: [linear, quadratic, sigmoid]}"),
    ("beta_1 searched for a cosine base", _space(diffusion__beta_1={"type": "float", "low": 1e-5, "high": 1e-3, "log": True}),
     "space.diffusion.beta_1 is searched for schedule cosine, which ignores it (a pure-noise dimension for the sampler); remove it from the space"),
    ("when scopes beta_T but keeps cosine", _space(diffusion__schedule=SCHED, diffusion__beta_T={**BETA_T, "when": {"diffusion.schedule": ["linear", "cosine"]}}),
     "space.diffusion.beta_T is searched for schedule cosine"),
]


@pytest.mark.parametrize("name,space,message", BAD_WHEN, ids=[b[0] for b in BAD_WHEN])
def test_bad_when_is_one_line_error(tmp_path, name, space, message):
    overrides = {"train.epochs": 1, **({"diffusion.schedule": "cosine"} if "cosine base" in name else {})}
    with pytest.raises(ConfigError) as e:
        load_sweep(write(tmp_path, with_(space=space, overrides=overrides)))
    text = str(e.value)
    assert message in text
    assert "\n" not in text and text.startswith(str(tmp_path))


def test_when_with_a_grid_sampler_is_refused(tmp_path):
    space = _space(diffusion__schedule=["linear", "cosine"], diffusion__beta_T={"type": "categorical", "choices": [0.04, 0.08], "when": {"diffusion.schedule": "linear"}})
    with pytest.raises(ConfigError, match=r"space.diffusion.beta_T.when with sampler grid: a grid runs the full product"):
        load_sweep(write(tmp_path, with_(space=space, sampler={"name": "grid"})))


def test_enqueued_point_must_meet_its_conditions(tmp_path):
    space = _space(diffusion__schedule=SCHED, diffusion__beta_T={**BETA_T, "when": NON_COSINE})
    ok = load_sweep(write(tmp_path, with_(space=space, enqueue=[{"diffusion.schedule": "linear", "diffusion.beta_T": 0.1},
                                                               {"diffusion.beta_T": 0.1}, {"diffusion.schedule": "cosine"}])))
    assert len(ok.enqueue) == 3
    with pytest.raises(ConfigError, match=r"enqueue\[0\].diffusion.beta_T: not searched here \(diffusion.schedule in "
                                          r"\['linear', 'quadratic', 'sigmoid'\], but this entry has diffusion.schedule = 'cosine'\)"):
        load_sweep(write(tmp_path, with_(space=space, enqueue=[{"diffusion.schedule": "cosine", "diffusion.beta_T": 0.1}])))


def test_baseline_params_leave_out_what_the_base_does_not_search(tmp_path):
    space = _space(diffusion__schedule=SCHED, diffusion__beta_T={**BETA_T, "when": NON_COSINE})
    linear = load_sweep(write(tmp_path, with_(space=space, enqueue_baseline=True)))
    assert linear.baseline_params() == {"diffusion.schedule": "linear", "diffusion.beta_T": 0.04}
    cosine = load_sweep(write(tmp_path, with_(space=space, enqueue_baseline=True,
                                              overrides={"diffusion.schedule": "cosine"})))
    assert cosine.baseline_params() == {"diffusion.schedule": "cosine"}


def test_schedules_sweep_proposes_only_meaningful_points():
    """Every trial of sweeps/schedules.yaml (random proposals and the space's corners) passes the terminal
    guard, and a cosine trial has no beta_1/beta_T params (its config keeps the base's end points)."""
    from ddpm.schedules import MAX_TERMINAL_ALPHA_BAR, terminal_alpha_bar
    from ddpm.sweeps.spec import suggest_params, trial_config

    spec = load_sweep(REPO / "sweeps" / "schedules.yaml")
    base = spec.base_config().diffusion
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    corners = [{"diffusion.schedule": s, "diffusion.T": T, "diffusion.beta_1": b1, "diffusion.beta_T": bT}
               for s in ("linear", "quadratic", "sigmoid") for T in (200, 400) for b1 in (1e-5, 1e-3) for bT in (4e-2, 2e-1)]
    for c in corners:
        study.enqueue_trial(c)
    seen = []

    def objective(trial):
        params = suggest_params(spec.space, trial)
        d = trial_config(spec, params, f"trial-{trial.number}").diffusion   # raises on a degenerate point
        seen.append(terminal_alpha_bar(d.schedule, d.T, d.beta_1, d.beta_T))
        if params["diffusion.schedule"] == "cosine":
            assert (d.beta_1, d.beta_T) == (base.beta_1, base.beta_T)
        return 0.0

    study.optimize(objective, n_trials=len(corners) + 60)
    assert len(seen) == len(corners) + 60 and max(seen) <= MAX_TERMINAL_ALPHA_BAR
    for t in study.trials:
        betas = {"diffusion.beta_1", "diffusion.beta_T"} & set(t.params)
        assert betas == (set() if t.params["diffusion.schedule"] == "cosine" else {"diffusion.beta_1", "diffusion.beta_T"})
    assert {t.params["diffusion.schedule"] for t in study.trials} == {"linear", "quadratic", "cosine", "sigmoid"}


@pytest.mark.slow
def test_a_degenerate_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path, monkeypatch):
    from ddpm.sweeps import run_study

    monkeypatch.chdir(tmp_path)
    tiny = {"data.limit": 64, "data.test_limit": 32, "model.num_feat": 8, "diffusion.T": 20, "diffusion.beta_T": 0.5,
            "train.epochs": 1, "train.batch_size": 32, "train.grid_every": 0, "sample.steps": None,
            "tracking.wandb": "disabled"}
    data = with_(overrides=tiny, space={"diffusion.beta_T": [0.02, 0.5]}, guidance=None, objectives=["test_loss"],
                 pruner="none", prune_on=DROP, sampler={"name": "random", "seed": 0}, n_trials=2,
                 enqueue=[{"diffusion.beta_T": 0.02}, {"diffusion.beta_T": 0.5}], out_dir=str(tmp_path / "runs"))
    study = run_study(load_sweep(write(tmp_path, data)))
    first, second = study.trials
    assert first.state.name == "FAIL" and second.state.name == "COMPLETE"
    reason = first.user_attrs["failure_reason"]
    assert "ConfigError" in reason and "diffusion.beta_T = 0.02" in reason and "alpha_bar_T = 0.817 exceeds 0.1" in reason


# ----------------------------------------------------------------------------------------------
# a best omega at the edge of the guidance grid


def test_omega_at_edge():
    from ddpm.sweeps.metrics import omega_at_edge

    rows = [{"omega": w, "fid": 1.0} for w in (0, 1, 2, 4)]
    assert omega_at_edge(rows, 4.0) == "best omega 4 is the largest tried; the optimum may lie beyond it"
    assert omega_at_edge(rows, 2) is None and omega_at_edge(rows, 1.0) is None
    assert omega_at_edge(rows, 0.0) is None                       # 0: the lowest weight a sweep accepts
    assert omega_at_edge(rows[1:], 1.0) == "best omega 1 is the smallest tried; the optimum may lie below it"
    assert omega_at_edge(rows[:1], 0.0) is None and omega_at_edge([], 4.0) is None   # nothing to compare
    assert omega_at_edge(rows, None) is None


def _edge_study():
    study = optuna.create_study()
    study.set_user_attr("objectives", [{"metric": "fid", "direction": "minimize"}])
    dist = {"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    for lr, best in ((1e-3, 4.0), (2e-3, 1.0)):
        study.add_trial(optuna.trial.create_trial(
            params={"train.lr": lr}, distributions=dist, value=10.0 * best,
            user_attrs={"best_omega": best, "guidance": [{"omega": w, "fid": 1.0} for w in (0.0, 1.0, 2.0, 4.0)]}))
    return study


def test_edge_omega_is_flagged_on_the_console_and_in_ddpm_trials(capsys, monkeypatch):
    from ddpm.cli.sweep import print_trials
    from ddpm.progress import console
    from ddpm.sweeps.runner import _report_trial

    monkeypatch.setattr(console, "width", 400)      # a wide terminal: the table's note column is not wrapped

    study = _edge_study()
    edge, inside = study.trials
    _report_trial(study, edge)
    _report_trial(study, inside)
    lines = [x for x in capsys.readouterr().err.splitlines() if "complete" in x]
    assert "note: best omega 4 is the largest tried; the optimum may lie beyond it" in lines[0]
    assert "note:" not in lines[1]
    print_trials(study)
    out = capsys.readouterr().err
    assert "best omega 4 is the largest tried" in out and "best omega 1 " not in out


def test_when_matches_numbers_as_written(tmp_path):
    """A stepped float's 0.30000000000000004 is the 0.3 a user wrote; true is not 1."""
    space = {"train.lr": {"type": "float", "low": 0.1, "high": 0.5, "step": 0.1},
             "train.gamma": {"type": "float", "low": 0.1, "high": 0.9, "when": {"train.lr": [0.3]}},
             "train.ema_decay": {"type": "categorical", "choices": [None, 0.999], "when": {"train.lr": 0.3}}}
    spec = load_sweep(write(tmp_path, with_(space=space)))
    assert spec.space["train.gamma"].active({"train.lr": spec.space["train.lr"].finite_values()[2]})
    assert not spec.space["train.gamma"].active({"train.lr": 0.2}) and not spec.space["train.gamma"].active({})
    flags = {"train.compile": [True, False], "train.grad_clip": {"type": "float", "low": 0.5, "high": 2, "when": {"train.compile": [1]}}}
    with pytest.raises(ConfigError, match=r"when.train.compile: 1 is not a value train.compile can take"):
        load_sweep(write(tmp_path, with_(space=flags)))


# ----------------------------------------------------------------------------------------------
# the base experiment is resolved once per study and stored with it


def test_editing_the_preset_does_not_change_a_running_study(tmp_path, monkeypatch, capsys):
    from conftest import TINY
    from ddpm.config import load_config
    from ddpm.sweeps import run_study

    monkeypatch.chdir(tmp_path)
    preset = tmp_path / "base.yaml"
    preset.write_text(f"base: {REPO / 'experiments' / 'cpu-quick.yaml'}\ntrain: {{gamma: 0.2}}\n")
    data = with_(base=str(preset), overrides={**TINY, "train.grid_every": 0}, space={"train.seed": [0, 1]},
                 guidance=None, objectives=["test_loss"], pruner="none", prune_on=DROP,
                 sampler={"name": "random", "seed": 0}, n_trials=1, out_dir=str(tmp_path / "runs"))
    sweep = write(tmp_path, data)
    study = run_study(load_sweep(sweep), n_trials=1)
    stored = study.user_attrs["base_config"]
    assert stored["train"]["gamma"] == 0.2 and stored["diffusion"]["mask_p"] == 0.1
    assert stored["model"]["num_feat"] == 32, "the base experiment itself, before the sweep's overrides"

    preset.write_text(f"base: {REPO / 'experiments' / 'cpu-quick.yaml'}\ntrain: {{gamma: 0.7}}\n"
                      f"diffusion: {{mask_p: 0.3}}\n")
    again = load_sweep(sweep)
    assert again.base_config().train.gamma == 0.7          # the file as it reads now, before the study is opened
    capsys.readouterr()
    study = run_study(again, n_trials=2)
    err = capsys.readouterr().err
    assert err.count("has changed since study 't' was created") == 1, err
    assert "diffusion.mask_p, train.gamma" in err and "trials use the base config stored with the study" in err
    assert again.base_config().train.gamma == 0.2 and study.user_attrs["base_config"] == stored
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    for t in done:   # each trial's saved config: the stored base, the sweep's overrides, its own params
        cfg = load_config(Path(t.user_attrs["run_dir"]) / "config.yaml")
        assert (cfg.train.gamma, cfg.diffusion.mask_p, cfg.model.num_feat) == (0.2, 0.1, 8)
        assert cfg.train.seed == t.params["train.seed"]
