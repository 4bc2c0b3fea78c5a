"""Round trips and closed forms of the sampling entry point (``ddpm.sampling``, ``ddpm.samplers``).

checkpoint -> load -> sample for every experiment file x every registered schedule x every registered
image sampler, and for every registered prediction target (ddpm.objectives, with zero terminal SNR where the
target allows it) x every sampler: the parameters come from the registries, so a new schedule, sampler or
prediction target is tested without a line here. The closed-form tests replay the sampling loop by hand (float64 constants computed from the
schedule function, not from ``NoiseSchedule``) on a fixed model and generator.
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddpm.checkpoint import load_model, save_checkpoint
from ddpm.config import config_from_dict, load_config, save_config
from ddpm.diffusion import ConditionalDDPM
from ddpm.errors import ConfigError
from ddpm.objectives import PREDICTIONS
from ddpm.samplers import SAMPLERS, timestep_subsequence
from ddpm.sampling import Sampling, cap_steps
from ddpm.schedules import SCHEDULE_PARAMS, SCHEDULES, smallest_beta_T

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(p.name for p in (REPO / "experiments").glob("*.yaml"))
T = 20


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these nets are tiny, and on a shared 2-core machine two spinning threads made each
    forward pass ~10x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_experiment(name: str, schedule: str, **extra) -> "ExperimentConfig":  # noqa: F821
    """``experiments/<name>`` shrunk to seconds: width 8, T 20 with a beta_T under the alpha_bar_T guard, 3 steps."""
    d = load_config(REPO / "experiments" / name).diffusion
    beta_T = smallest_beta_T(schedule, T, d.beta_1) if "beta_T" in SCHEDULE_PARAMS[schedule] else None
    values = {"model.num_feat": 8, "diffusion.T": T, "diffusion.schedule": schedule, "sample.steps": 3,
              "diffusion.beta_T": max(beta_T if beta_T is not None else d.beta_T, d.beta_1), "train.device": "cpu",
              "tracking.wandb": "disabled", **extra}
    return load_config(REPO / "experiments" / name, extra=values)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_checkpoint_load_sample_round_trip(tmp_path, experiment, schedule, sampler):
    _round_trip(tmp_path, tiny_experiment(experiment, schedule), sampler)


PREDICTION_VARIANTS = [(p, False) for p in sorted(PREDICTIONS)] + [
    (p, True) for p in sorted(PREDICTIONS) if PREDICTIONS[p].finite_at_zero_snr]


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("prediction,zero_snr", PREDICTION_VARIANTS,
                         ids=[f"{p}{'-zero-terminal-snr' if z else ''}" for p, z in PREDICTION_VARIANTS])
def test_every_prediction_target_round_trips(tmp_path, prediction, zero_snr, sampler):
    loaded = _round_trip(tmp_path, tiny_experiment("seed.yaml", "linear", **{
        "diffusion.prediction": prediction, "diffusion.zero_terminal_snr": zero_snr,
        "train.loss_weighting": "min_snr"}), sampler)
    assert loaded.prediction.name == prediction                 # the checkpoint's config builds the same target
    assert (loaded.schedule.alpha_bar_host[T] == 0.0) == zero_snr


def _round_trip(tmp_path: Path, cfg, sampler: str) -> ConditionalDDPM:
    """config -> YAML -> config, checkpoint -> load_model (what `ddpm sample`/`eval` use) -> sample; the model."""
    save_config(cfg, tmp_path / "config.yaml")             # config -> YAML -> config
    assert load_config(tmp_path / "config.yaml").to_dict() == cfg.to_dict()
    torch.manual_seed(0)
    model = ConditionalDDPM(cfg).eval()
    ema = None
    if cfg.train.ema_decay is not None:                     # an EMA that differs from the raw weights
        ema = ConditionalDDPM(cfg).eval()
        with torch.no_grad():
            for p in ema.parameters():
                p.add_(0.01)
    save_checkpoint(tmp_path / "checkpoints" / "best.pt",
                    {"config": cfg.to_dict(), "model": model.state_dict(),
                     "ema": ema.state_dict() if ema is not None else None})
    loaded, loaded_cfg, ckpt = load_model(tmp_path, "cpu")  # a run folder -> checkpoints/best.pt
    assert loaded_cfg.to_dict() == cfg.to_dict() and ckpt["path"].endswith("best.pt")
    expected = ema if ema is not None else model
    assert all(torch.equal(a, b) for a, b in zip(expected.state_dict().values(), loaded.state_dict().values()))

    sampling = Sampling.from_config(loaded_cfg, "cpu", sampler=sampler)
    assert (sampling.name, sampling.steps) == (sampler, 3)
    labels = torch.arange(4)
    a = sampling.sample(loaded, labels, torch.Generator().manual_seed(1))
    b = sampling.sample(expected, labels, torch.Generator().manual_seed(1))
    assert a.shape == (4, 1, 28, 28) and torch.isfinite(a).all()
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    return loaded


# ---- the entry point: steps, path, defaults --------------------------------------------------------------


def test_steps_out_of_range_is_a_one_line_error_not_a_clamp(tiny_cfg):
    cfg = tiny_cfg()
    for bad in (0, T + 1, True, 2.5):
        with pytest.raises(ConfigError, match=rf"^--steps {bad!r}: must lie in 1\.\.{T} ") as e:
            Sampling.from_config(cfg, "cpu", steps=bad, steps_key="--steps")
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=rf"^steps = {T + 1}: must lie in 1\.\.{T}"):
        Sampling.from_config(cfg, "cpu", steps=T + 1)
    from ddpm.evaluation.guidance import generate

    model = ConditionalDDPM(cfg)
    with pytest.raises(ConfigError, match="must lie in"):   # the library used to clamp this silently
        generate(model, cfg, torch.arange(2), 1.0, "ddim", T + 5, 0.0, torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"sample\.steps = 21: must lie in 1\.\.20"):
        tiny_cfg(**{"sample.steps": T + 1})
    assert cap_steps(50, T) == T and cap_steps(5, T) == 5 and cap_steps(None, T) is None


def test_sampling_reads_the_path_and_the_sample_defaults(tiny_cfg):
    cfg = tiny_cfg(**{"sample.sampler": "ddim", "sample.steps": 4, "sample.eta": 0.3, "sample.omega": 1.5})
    s = Sampling.from_config(cfg, "cpu")
    assert (s.name, s.steps, s.eta, s.omega) == ("ddim", 4, 0.3, 1.5)
    assert s.sampler.batched and s.options["fold_batchnorm"] and s.options["chunk"] == 64
    o = Sampling.from_config(cfg, "cpu", sampler="ddpm", steps=7, eta=0.0, omega=0.0)
    assert (o.name, o.steps, o.eta, o.omega) == ("ddpm", 7, 0.0, 0.0)
    faithful = Sampling.from_config(tiny_cfg(**{"train.path": "faithful"}), "cpu")
    assert not faithful.sampler.batched and faithful.options["chunk"] is None
    assert not faithful.options["fold_batchnorm"]
    assert "cuda_graph" not in Sampling.from_config(cfg, "cpu", cuda_graph=True).options   # CUDA only


def test_schedule_owns_its_host_alpha_bar_table(tiny_cfg):
    model = ConditionalDDPM(tiny_cfg())
    sch = model.schedule
    assert sch.alpha_bar_host == sch.alpha_t_bar.tolist() and len(sch.alpha_bar_host) == T + 1
    assert sch.alpha_bar_host[0] == 1.0
    before = set(vars(sch))
    Sampling.from_config(tiny_cfg(**{"sample.sampler": "ddim", "sample.steps": 3}), "cpu").sample(
        model, torch.arange(2), torch.Generator().manual_seed(0))
    assert set(vars(sch)) == before                         # the sampler patches nothing onto the schedule


def test_config_validation_imports_no_model():
    code = ("import sys; from ddpm.config import load_config; load_config('experiments/seed.yaml'); "
            "bad = [m for m in ('ddpm.diffusion', 'ddpm.unet', 'ddpm.sampling') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_unet_takes_the_config_names_and_state_dict_keys_carry_none(tiny_cfg):
    from ddpm.unet import ConditionalUnet

    net = ConditionalUnet(in_channels=1, num_feat=8, num_classes=10)
    assert (net.num_feat, net.num_classes) == (8, 10)
    keys = ConditionalDDPM(tiny_cfg()).state_dict().keys()
    assert not any("feat" in k or "classes" in k for k in keys)   # renaming the attributes moved no weight


# ---- closed forms ---------------------------------------------------------------------------------------


def _abar64(cfg) -> list[float]:
    """alpha_bar_0..T in float64 straight from the schedule function (DDPM eq. 4: abar_t = prod alpha_s)."""
    d = cfg.diffusion
    betas = SCHEDULES[d.schedule](d.T, d.beta_1, d.beta_T).to(torch.float64)
    return [1.0] + torch.cumprod(1.0 - betas, 0).tolist()


def _replay(model: ConditionalDDPM, labels: torch.Tensor, omega: float, steps: int, seed: int, step) -> torch.Tensor:
    """The sampling loop by hand: x_T ~ N(0, I), then per (t, t_prev) the guided eps (the fixed model
    output), z from the same generator (none at the last step) and ``step`` in float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((len(labels), *model.image_shape), generator=g)
    c = model.one_hot(labels)
    taus = timestep_subsequence(model.T, steps) + [0]
    for t, t_prev in zip(taus[:-1], taus[1:]):
        with torch.no_grad():
            eps = model.guided_eps(x, torch.full((len(labels),), t), c, omega, batched=True)
        z = torch.randn(x.shape, generator=g) if t_prev > 0 else torch.zeros_like(x)
        x = step(x.double(), eps.double(), z.double(), t, t_prev).float()
    return model.denormalize(x)


def test_respaced_ddpm_is_the_posterior_of_the_respaced_chain(tiny_cfg):
    """Nichol & Dhariwal 2021 Sec. 4: on a sub-sequence, beta'_i = 1 - abar_{t_i} / abar_{t_{i-1}}; the step is
    the posterior mean mu~(x_t, x0_hat) of DDPM eq. 7 with those betas plus sqrt(beta'_i) z (Algorithm 2's
    sigma^2 = beta, on the respaced chain)."""
    cfg = tiny_cfg(**{"sample.steps": 4})
    torch.manual_seed(0)
    model = ConditionalDDPM(cfg).eval()
    ab = _abar64(cfg)
    assert timestep_subsequence(T, 4) == [20, 14, 7, 1]    # respaced: most steps skip time steps

    def step(x, eps, z, t, tp):
        beta = 1.0 - ab[t] / ab[tp]
        x0 = (x - math.sqrt(1 - ab[t]) * eps) / math.sqrt(ab[t])                     # DDPM eq. 15
        mean = (math.sqrt(ab[tp]) * beta / (1 - ab[t])) * x0 + (math.sqrt(1 - beta) * (1 - ab[tp]) / (1 - ab[t])) * x
        return mean + math.sqrt(beta) * z

    labels = torch.arange(4)
    got = SAMPLERS["ddpm"](steps=4).sample(model, labels, 2.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, _replay(model, labels, 2.0, 4, 3, step), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_ddim_with_eta_is_song_eq_12(tiny_cfg, eta):
    """Song et al. 2021 eq. 12 with eq. 16's sigma = eta sqrt((1 - abar_prev)/(1 - abar_t)) sqrt(1 - abar_t/abar_prev)."""
    cfg = tiny_cfg(**{"sample.steps": 4})
    torch.manual_seed(0)
    model = ConditionalDDPM(cfg).eval()
    ab = _abar64(cfg)

    def sigma(t, tp):
        return eta * math.sqrt((1 - ab[tp]) / (1 - ab[t])) * math.sqrt(1 - ab[t] / ab[tp])

    def step(x, eps, z, t, tp):
        x0 = (x - math.sqrt(1 - ab[t]) * eps) / math.sqrt(ab[t])
        s = sigma(t, tp)
        return math.sqrt(ab[tp]) * x0 + math.sqrt(1 - ab[tp] - s ** 2) * eps + s * z

    labels = torch.arange(4)
    got = SAMPLERS["ddim"](steps=4, eta=eta).sample(model, labels, 2.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, _replay(model, labels, 2.0, 4, 3, step), rtol=1e-4, atol=1e-4)
    if eta == 1.0:  # eta = 1: the respaced DDPM posterior variance beta~ = (1 - abar_prev)/(1 - abar_t) beta'
        t, tp = 14, 7
        assert sigma(t, tp) ** 2 == pytest.approx((1 - ab[tp]) / (1 - ab[t]) * (1 - ab[t] / ab[tp]), rel=1e-12)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_one_step_jumps_from_T(tiny_cfg, name):
    """steps = 1 is the single step T -> 0 (it used to be [1], treating the pure noise x_T as x_1): every
    registered sampler then returns x0_hat(x_T, eps(x_T, T)) (DDPM eq. 15; no noise at the last step)."""
    assert timestep_subsequence(T, 1) == [T]
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = ConditionalDDPM(cfg).eval()
    ab = _abar64(cfg)
    seen = []
    model.network.register_forward_hook(lambda m, inp, out: seen.append(inp[1].detach().clone()))

    def step(x, eps, z, t, tp):
        assert (t, tp) == (T, 0)
        return (x - math.sqrt(1 - ab[t]) * eps) / math.sqrt(ab[t])

    labels = torch.arange(3)
    got = SAMPLERS[name](steps=1).sample(model, labels, 1.0, generator=torch.Generator().manual_seed(5))
    assert torch.all(seen[0] == 1.0)                        # the network saw t/T = 1
    torch.testing.assert_close(got, _replay(model, labels, 1.0, 1, 5, step), rtol=1e-4, atol=1e-4)


def test_config_round_trips_through_a_checkpoint_dict(tiny_cfg):
    cfg = tiny_cfg(**{"sample.sampler": "ddim", "sample.steps": 5, "sample.eta": 0.5})
    assert config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
