"""Config: the seed's defaults, YAML round trips, overrides, and one-line errors for every bad input."""
from __future__ import annotations

import math

import pytest
import yaml

from ddpm.config import ExperimentConfig, config_from_dict, load_config, save_config
from ddpm.errors import ConfigError
from ddpm.samplers import SAMPLERS
from ddpm.schedules import SCHEDULES

from helpers import REPO, run_cli


def test_seed_yaml_is_the_seed_dmconfig_exactly():
    cfg = load_config(REPO / "experiments" / "seed.yaml")
    assert (cfg.model.image_size, cfg.model.in_channels, cfg.model.num_classes) == (28, 1, 10)
    d, t = cfg.diffusion, cfg.train
    assert (d.condition_mask_value, d.T, d.beta_1, d.beta_T, d.mask_p) == (-1, 400, 1e-4, 2e-2, 0.1)
    assert (cfg.model.num_feat, cfg.sample.omega) == (64, 2.0)
    assert (t.batch_size, t.epochs, t.lr, t.milestones, t.gamma) == (256, 10, 1e-4, [20], 0.1)
    assert (cfg.data.mean, cfg.data.std, d.schedule) == (0.1307, 0.3081, "linear")
    assert cfg.to_dict() == ExperimentConfig().to_dict(), "the dataclass defaults are the seed's too"


def test_seed_modified_and_cpu_preset():
    m = load_config(REPO / "experiments" / "seed-modified.yaml")
    assert (m.diffusion.T, m.diffusion.mask_p, m.model.num_feat, m.diffusion.beta_1, m.diffusion.beta_T) == \
        (200, 0.2, 128, 1e-3, 0.2)
    assert m.train.epochs == 10 and m.sample.omega == 2.0
    load_config(REPO / "experiments" / "cpu-quick.yaml")


def test_overrides_are_typed():
    cfg = load_config(REPO / "experiments" / "seed.yaml", ["model.num_feat=128", "train.epochs=2",
                                                           "train.milestones=[1,2]", "data.limit=null"])
    assert cfg.model.num_feat == 128 and cfg.train.epochs == 2 and cfg.train.milestones == [1, 2]


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_config_yaml_round_trip(tmp_path, schedule, sampler):
    cfg = load_config(None, extra={"diffusion.schedule": schedule, "sample.sampler": sampler})
    save_config(cfg, tmp_path / "c.yaml")
    again = config_from_dict(yaml.safe_load((tmp_path / "c.yaml").read_text()))
    assert again == cfg


BAD = [
    ("model.num_fet=64", "unknown key 'model.num_fet' (did you mean 'model.num_feat'?)"),
    ("train.epochs=two", "train.epochs = 'two': expected an integer"),
    ("diffusion.T=0", "diffusion.T = 0: must be >= 1"),
    ("train.sample_chunk=0", "train.sample_chunk = 0: must be >= 1 or null"),
    ("diffusion.beta_1=0", "diffusion.beta_1 = 0.0: must lie in (0, 1)"),
    ("diffusion.beta_T=1.5", "diffusion.beta_T = 1.5: must lie in (0, 1)"),
    ("diffusion.beta_1=0.05", "diffusion.beta_1 = 0.05: must be <= diffusion.beta_T"),
    ("diffusion.mask_p=1.0", "diffusion.mask_p = 1.0: must lie in [0, 1)"),
    ("diffusion.mask_p=-0.1", "diffusion.mask_p = -0.1: must lie in [0, 1)"),
    ("model.num_feat=12", "model.num_feat = 12: must be a positive multiple of 8"),
    ("diffusion.schedule=cosin", "diffusion.schedule = 'cosin': unknown name; valid: cosine, linear, quadratic, sigmoid"),
    ("sample.sampler=euler", "sample.sampler = 'euler': unknown name; valid: ddim, ddpm"),
    ("data.dataset=cifar", "data.dataset = 'cifar': unknown name; valid:"),
]


@pytest.mark.parametrize("override,message", BAD)
def test_bad_values_name_file_key_and_value(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "experiments" / "seed.yaml", [override])
    text = str(e.value)
    assert "experiments/seed.yaml" in text and message in text and "\n" not in text


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml.*not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    p.write_text("model: 3\n")
    with pytest.raises(ConfigError, match="model must be a mapping"):
        load_config(p)


@pytest.mark.slow
def test_cli_bad_input_is_one_line_exit_2_no_traceback():
    r = run_cli("train", "experiments/seed.yaml", "model.num_feat=12")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "model.num_feat = 12" in lines[0] and "seed.yaml" in lines[0]


# ----------------------------------------------------------------------------------------------
# the terminal alpha_bar_T guard (ddpm/schedules.py MAX_TERMINAL_ALPHA_BAR)


def test_terminal_alpha_bar_is_the_product_of_one_minus_beta():
    from ddpm.schedules import terminal_alpha_bar

    # closed form of the linear schedule: beta_t = beta_1 + (beta_T - beta_1) (t - 1) / (T - 1)
    for T, b1, bT in [(400, 1e-4, 2e-2), (200, 1e-4, 4e-2), (100, 1e-4, 1e-2)]:
        expected = math.prod(1 - (b1 + (bT - b1) * i / (T - 1)) for i in range(T))
        assert terminal_alpha_bar("linear", T, b1, bT) == pytest.approx(expected, rel=1e-9)
    assert terminal_alpha_bar("linear", 400, 1e-4, 2e-2) == pytest.approx(0.0175, abs=1e-4)   # the seed's
    assert terminal_alpha_bar("linear", 100, 1e-4, 1e-2) == pytest.approx(0.602, abs=1e-3)   # issue 11's


def test_degenerate_endpoint_is_a_one_line_error_with_the_computed_alpha_bar():
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "experiments" / "seed.yaml", ["diffusion.T=100", "diffusion.beta_T=0.01"])
    text = str(e.value)
    assert "\n" not in text and "experiments/seed.yaml" in text
    for part in ("diffusion.schedule = 'linear'", "diffusion.T = 100", "diffusion.beta_1 = 0.0001",
                 "diffusion.beta_T = 0.01", "alpha_bar_T = 0.602 exceeds 0.1", "raise diffusion.beta_T to >= 0.0452"):
        assert part in text, part
    # the suggested beta_T is the bound's edge: it passes, a little less does not
    load_config(REPO / "experiments" / "seed.yaml", ["diffusion.T=100", "diffusion.beta_T=0.0453"])
    with pytest.raises(ConfigError, match="alpha_bar_T"):
        load_config(REPO / "experiments" / "seed.yaml", ["diffusion.T=100", "diffusion.beta_T=0.045"])
    # a schedule that ignores beta_T (cosine) is judged on its own alpha_bar_T
    load_config(REPO / "experiments" / "seed.yaml", ["diffusion.T=100", "diffusion.beta_T=0.01",
                                                      "diffusion.schedule=cosine"])
    with pytest.raises(ConfigError, match=r"diffusion.T = 1, .*alpha_bar_T = 1 exceeds 0.1.*; raise diffusion.T$"):
        load_config(None, extra={"diffusion.T": 1})


@pytest.mark.slow
def test_cli_rejects_a_degenerate_endpoint_and_writes_nothing(tmp_path):
    r = run_cli("train", "experiments/seed.yaml", "diffusion.T=100", "diffusion.beta_T=0.01",
                f"out_dir={tmp_path / 'runs'}")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "alpha_bar_T = 0.602 exceeds 0.1" in lines[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_experiment_passes_the_guard(path):
    from ddpm.schedules import MAX_TERMINAL_ALPHA_BAR, terminal_alpha_bar

    d = load_config(path).diffusion
    assert terminal_alpha_bar(d.schedule, d.T, d.beta_1, d.beta_T) <= MAX_TERMINAL_ALPHA_BAR


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sweep_base_and_baseline_pass_the_guard(path):
    from ddpm.sweeps.spec import load_sweep, trial_config

    spec = load_sweep(path)            # validates base + overrides
    trial_config(spec, spec.baseline_params(), "baseline")


def test_a_checkpoint_of_a_degenerate_config_still_loads():
    """What was trained before the guard stays readable (ddpm sample / eval); only new configs are refused."""
    from ddpm.checkpoint import checkpoint_config

    raw = load_config(None, extra={"diffusion.T": 20, "diffusion.beta_T": 0.5}).to_dict()
    raw["diffusion"]["beta_T"] = 0.02
    with pytest.raises(ConfigError, match="alpha_bar_T"):
        config_from_dict(raw)
    assert checkpoint_config({"config": raw, "path": "old.pt"}).diffusion.beta_T == 0.02


def test_seed_differences_ignore_only_runtime_keys():
    from ddpm.config import RUNTIME_KEYS, seed_differences

    assert seed_differences(load_config(REPO / "experiments" / "seed.yaml")) == []
    runtime = load_config(REPO / "experiments" / "seed.yaml", ["name=x", "out_dir=/tmp/y", "train.device=cpu",
                                                                "tracking.wandb=disabled", "train.grid_every=0"])
    assert seed_differences(runtime) == [] and "tracking" in RUNTIME_KEYS
    quick = seed_differences(load_config(REPO / "experiments" / "cpu-quick.yaml"))
    assert {"data.limit", "model.num_feat", "diffusion.T", "diffusion.beta_T", "train.lr"} <= set(quick)
    assert seed_differences(load_config(None, extra={"diffusion.mask_p": 0.2})) == ["diffusion.mask_p"]
    raw = ExperimentConfig().to_dict()
    del raw["train"]["lr"]                               # an older config without a key: not provably the seed's
    assert seed_differences(raw) == ["train.lr"]
    assert seed_differences(load_config(None, extra={"sample.omega": 4.0}), ignore=("sample.omega",)) == []
