"""Config: the seed's defaults, YAML round trips, overrides, and one-line errors for every bad input."""
from __future__ import annotations

import pytest
import yaml

from ddpm.config import ExperimentConfig, config_from_dict, load_config, save_config
from ddpm.errors import ConfigError
from ddpm.samplers import SAMPLERS
from ddpm.schedules import SCHEDULES

from conftest import REPO, run_cli


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


def test_cli_bad_input_is_one_line_exit_2_no_traceback():
    r = run_cli("train", "experiments/seed.yaml", "model.num_feat=12")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "model.num_feat = 12" in lines[0] and "seed.yaml" in lines[0]
