"""Training objectives (``ddpm.objectives``) against closed forms: the loss of every prediction target x loss
weighting, every sampler reading a v or x0 output exactly as an eps model reading that output converted by
hand, zero terminal SNR (alpha_bar_T = 0, finite sampling), and the seed default unchanged bit for bit.

Hand formulas use float64 constants computed from the schedule function, not from ``NoiseSchedule``.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ddpm.config import ExperimentConfig, load_config, seed_differences
from ddpm.diffusion import ConditionalDDPM
from ddpm.errors import ConfigError
from ddpm.objectives import LOSS_WEIGHTINGS, PREDICTIONS, weighted_mse
from ddpm.samplers import SAMPLERS, timestep_subsequence
from ddpm.schedules import SCHEDULES, NoiseSchedule, rescale_zero_terminal_snr
from helpers import REPO

T, GAMMA = 20, 5.0


def _abar64(cfg) -> torch.Tensor:
    """alpha_bar_0..T in float64 from the schedule function (DDPM eq. 4), rescaled by hand (Lin et al. 2024,
    Algorithm 1) when zero terminal SNR is on."""
    d = cfg.diffusion
    abar = torch.cumprod(1.0 - SCHEDULES[d.schedule](d.T, d.beta_1, d.beta_T).to(torch.float64), 0)
    if d.zero_terminal_snr:
        r = abar.sqrt()
        abar = ((r - r[-1]) * r[0] / (r[0] - r[-1])) ** 2
    return torch.cat([torch.ones(1, dtype=torch.float64), abar])


def _model(tiny_cfg, prediction="eps", seed=0, **extra) -> ConditionalDDPM:
    torch.manual_seed(seed)
    return ConditionalDDPM(tiny_cfg(**{"diffusion.prediction": prediction, **extra})).eval()


# ---- losses ---------------------------------------------------------------------------------------------


def _hand_target(prediction, x0, eps, ab):
    return {"eps": eps, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0, "x0": x0}[prediction]  # Salimans & Ho 2022


def _hand_weight(weighting, prediction, snr):
    if weighting == "uniform":
        return torch.ones_like(snr)
    m = torch.clamp(snr, max=GAMMA)                        # Hang et al. 2023: min(SNR, gamma) on the x0-MSE
    return {"eps": m / snr, "v": m / (snr + 1), "x0": m}[prediction]


@pytest.mark.parametrize("weighting", sorted(LOSS_WEIGHTINGS))
@pytest.mark.parametrize("prediction", sorted(PREDICTIONS))
def test_loss_is_its_closed_form(tiny_cfg, prediction, weighting):
    """Algorithm 1 replayed by hand: the same draws (dropout, t, eps) from the same generator, the network's
    output captured, then mean_b w(SNR_b) mean_chw (out - target)^2 in float64."""
    model = _model(tiny_cfg, prediction, **{"train.loss_weighting": weighting, "train.min_snr_gamma": GAMMA})
    model.train()
    outs = []
    model.network.register_forward_hook(lambda m, inp, out: outs.append(out.detach().double()))
    B = 64
    x0 = torch.randn(B, 1, 28, 28)
    loss = model(x0, torch.arange(B) % 10, generator=torch.Generator().manual_seed(4))

    g = torch.Generator().manual_seed(4)
    torch.rand(B, generator=g)                              # the condition dropout draw
    t = torch.randint(1, T + 1, (B,), generator=g)
    eps = torch.randn(x0.shape, generator=g).double()
    ab = _abar64(tiny_cfg())[t].view(-1, 1, 1, 1)
    target = _hand_target(prediction, x0.double(), eps, ab)
    w = _hand_weight(weighting, prediction, (ab / (1 - ab)).view(-1))
    hand = (w * (outs[0] - target).pow(2).flatten(1).mean(1)).mean()
    assert float(loss.detach()) == pytest.approx(float(hand), rel=1e-5)
    if weighting == "min_snr" and prediction != "x0":       # the weight differs from the plain mean
        assert abs(float(hand) - float((outs[0] - target).pow(2).mean())) > 1e-3 * float(hand)


def test_min_snr_is_one_loss_on_every_target_scale():
    """min(SNR, gamma)||x0 - x0_hat||^2 = w_eps ||eps - eps_hat||^2 = w_v ||v - v_hat||^2 for the same prediction
    (Hang et al. 2023, eq. 9-10): each target's weight carries its MSE's factor over the x0-MSE."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(8, 1, 4, 4, generator=g, dtype=torch.float64), torch.randn(8, 1, 4, 4, generator=g,
                                                                                      dtype=torch.float64)
    ab = torch.linspace(0.02, 0.98, 8, dtype=torch.float64).view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    v_hat = torch.randn(x0.shape, generator=g, dtype=torch.float64)          # any v output and what it implies
    outs = {"v": v_hat, "eps": PREDICTIONS["v"].to_eps(v_hat, x_t, ab), "x0": PREDICTIONS["v"].to_x0(v_hat, x_t, ab)}
    snr = (ab / (1 - ab)).view(-1)
    losses = {p: float(weighted_mse(outs[p], PREDICTIONS[p].target(x0, eps, ab),
                                    LOSS_WEIGHTINGS["min_snr"](snr, PREDICTIONS[p], GAMMA))) for p in outs}
    assert losses["eps"] == pytest.approx(losses["x0"], rel=1e-6)
    assert losses["v"] == pytest.approx(losses["x0"], rel=1e-6)


@pytest.mark.parametrize("prediction", sorted(PREDICTIONS))
def test_conversions_invert_the_target(prediction):
    """to_eps and to_x0 of the exact target give back eps and x0 (DDPM eq. 4 and Salimans & Ho 2022, Sec. 4)."""
    g = torch.Generator().manual_seed(1)
    x0, eps = (torch.randn(6, 1, 3, 3, generator=g, dtype=torch.float64) for _ in range(2))
    ab = torch.linspace(0.05, 0.95, 6, dtype=torch.float64).view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    p = PREDICTIONS[prediction]
    out = p.target(x0, eps, ab)
    torch.testing.assert_close(p.to_eps(out, x_t, ab), eps)
    torch.testing.assert_close(p.to_x0(out, x_t, ab), x0)


def test_held_out_noise_loss_is_the_eps_mse_for_every_target(tiny_cfg):
    """``noise_loss``: || eps - to_eps(out) ||^2 unweighted (what test/val report), the same draws as forward."""
    model = _model(tiny_cfg, "v", **{"train.loss_weighting": "min_snr"})
    outs = []
    model.network.register_forward_hook(lambda m, inp, out: outs.append((inp[0].detach().double(),
                                                                         out.detach().double())))
    B, x0 = 32, torch.randn(32, 1, 28, 28)
    got = model.noise_loss(x0, torch.arange(B) % 10, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    torch.rand(B, generator=g)
    t = torch.randint(1, T + 1, (B,), generator=g)
    eps = torch.randn(x0.shape, generator=g).double()
    ab = _abar64(tiny_cfg())[t].view(-1, 1, 1, 1)
    x_t, v = outs[0]
    hand = (ab.sqrt() * v + (1 - ab).sqrt() * x_t - eps).pow(2).mean()   # eps_hat = sqrt(abar) v + sqrt(1-abar) x_t
    assert float(got.detach()) == pytest.approx(float(hand), rel=1e-5)


# ---- samplers: a v or x0 output read exactly as eps converted by hand -----------------------------------


def _hand_eps_model(model_p: ConditionalDDPM, cfg_eps, ab: torch.Tensor) -> ConditionalDDPM:
    """An eps model whose network output is ``model_p``'s, converted to eps by hand in float64 per pass, so its
    guidance (1 + w) eps_c - w eps_u is applied on the eps scale after the conversion."""
    hand = ConditionalDDPM(cfg_eps).eval()
    pred = model_p.prediction.name

    def output(x, t, c):
        o, a = model_p.output(x, t, c).double(), ab[t].view(-1, 1, 1, 1)
        e = a.sqrt() * o + (1 - a).sqrt() * x.double() if pred == "v" else (x.double() - a.sqrt() * o) / (1 - a).sqrt()
        return e.float()
    hand.output = output  # type: ignore[method-assign]
    return hand


SAMPLINGS = [("ddpm", None, 0.0), ("ddpm", 6, 0.0), ("ddim", 6, 0.0), ("ddim", 6, 0.8)]


@pytest.mark.parametrize("clip", [False, True], ids=["no-clip", "clip-x0"])
@pytest.mark.parametrize("sampler,steps,eta", SAMPLINGS, ids=["ddpm", "ddpm-respaced", "ddim-eta0", "ddim-eta0.8"])
@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_sampling_a_target_equals_sampling_its_eps_by_hand(tiny_cfg, prediction, sampler, steps, eta, clip):
    """The whole guided loop (w = 2): a v/x0 model against an eps model fed the same outputs converted by hand."""
    extra = {"sample.clip_x0": clip}
    model = _model(tiny_cfg, prediction, **extra)
    hand = _hand_eps_model(model, tiny_cfg(**extra), _abar64(tiny_cfg()))
    labels = torch.arange(6)
    run = SAMPLERS[sampler](steps=steps, eta=eta)
    got = run.sample(model, labels, 2.0, generator=torch.Generator().manual_seed(3))
    want = run.sample(hand, labels, 2.0, generator=torch.Generator().manual_seed(3))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_guided_eps_is_guidance_on_the_eps_scale(tiny_cfg, prediction):
    """eps~ = (1 + w) to_eps(out_c) - w to_eps(out_u) (Ho & Salimans 2021 after conversion), batched or not."""
    model = _model(tiny_cfg, prediction)
    x, t, c = torch.randn(5, 1, 28, 28), torch.tensor([1, 4, 9, 15, 20]), model.one_hot(torch.arange(5))
    hand = _hand_eps_model(model, tiny_cfg(), _abar64(tiny_cfg()))
    with torch.no_grad():
        e_c, e_u = hand.output(x, t, c), hand.output(x, t, model.null_condition(5, "cpu"))
        for batched in (True, False):
            torch.testing.assert_close(model.guided_eps(x, t, c, 2.0, batched=batched), 3.0 * e_c - 2.0 * e_u,
                                       rtol=1e-4, atol=1e-4)


# ---- zero terminal SNR ----------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_zero_terminal_snr_rescale(schedule):
    """Lin et al. 2024, Algorithm 1: sqrt(abar) shifted and scaled so the last is 0 and the first unchanged."""
    before = NoiseSchedule(schedule, 50, 1e-4, 0.05)
    after = NoiseSchedule(schedule, 50, 1e-4, 0.05, zero_terminal_snr=True)
    assert after.alpha_bar_host[50] == 0.0 and float(after.alpha_t_bar[50]) == 0.0
    assert float(after.beta_t[50]) == 1.0
    assert after.alpha_bar_host[1] == pytest.approx(before.alpha_bar_host[1], rel=1e-6)
    r = torch.tensor(before.alpha_bar_host[1:], dtype=torch.float64).sqrt()
    hand = ((r - r[-1]) * r[0] / (r[0] - r[-1])) ** 2
    torch.testing.assert_close(torch.tensor(after.alpha_bar_host[1:], dtype=torch.float64), hand, rtol=1e-5, atol=1e-7)
    assert all(a > b for a, b in zip(after.alpha_bar_host, after.alpha_bar_host[1:]))  # SNR strictly falls
    betas = rescale_zero_terminal_snr(SCHEDULES[schedule](50, 1e-4, 0.05))
    assert float(betas[-1]) == 1.0 and bool((betas[:-1] < 1).all())


def test_zero_terminal_snr_needs_v_prediction(tiny_cfg):
    for prediction in ("eps", "x0"):
        with pytest.raises(ConfigError, match=rf"diffusion\.zero_terminal_snr = true needs diffusion\.prediction = "
                                              rf"'v' \(got '{prediction}'\)") as e:
            tiny_cfg(**{"diffusion.zero_terminal_snr": True, "diffusion.prediction": prediction})
        assert "\n" not in str(e.value)
    # with v, a schedule the terminal guard would refuse (alpha_bar_T = 0.82 at T 20, beta_T 0.02) is fine
    with pytest.raises(ConfigError, match="alpha_bar_T"):
        tiny_cfg(**{"diffusion.beta_T": 0.02})
    cfg = tiny_cfg(**{"diffusion.beta_T": 0.02, "diffusion.zero_terminal_snr": True, "diffusion.prediction": "v"})
    assert ConditionalDDPM(cfg).schedule.alpha_bar_host[T] == 0.0


ZTSNR = {"diffusion.zero_terminal_snr": True, "train.loss_weighting": "min_snr"}


@pytest.mark.parametrize("sampler,steps,eta", SAMPLINGS + [("ddpm", 1, 0.0), ("ddim", 1, 0.0), ("ddim", 6, 1.0)])
@pytest.mark.parametrize("clip", [False, True], ids=["no-clip", "clip-x0"])
def test_zero_terminal_snr_sampling_stays_finite(tiny_cfg, sampler, steps, eta, clip):
    model = _model(tiny_cfg, "v", **ZTSNR, **{"sample.clip_x0": clip})
    got = SAMPLERS[sampler](steps=steps, eta=eta).sample(model, torch.arange(4), 2.0,
                                                         generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(got).all()


def test_zero_terminal_snr_first_step_is_the_posterior_through_x0(tiny_cfg):
    """At t = T: abar_T = 0, so x0_hat = -v (Salimans & Ho: x0 = sqrt(abar) x_t - sqrt(1-abar) v), beta'_T = 1 and
    DDPM's step is sqrt(abar_{t'}) x0_hat + z (DDPM eq. 7 with alpha = 0); DDIM eta 0: sqrt(abar_{t'}) x0_hat +
    sqrt(1 - abar_{t'}) x_T (eps = x_T)."""
    model = _model(tiny_cfg, "v", **ZTSNR)
    ab = _abar64(tiny_cfg(**{"diffusion.prediction": "v"}, **ZTSNR))
    assert float(ab[T]) == 0.0
    g = torch.Generator().manual_seed(0)
    x, v, z = (torch.randn(3, 1, 28, 28, generator=g) for _ in range(3))
    for tp in (T - 1, 7):
        a = float(ab[tp])
        ddpm = SAMPLERS["ddpm"]().step(model, x, v, T, tp, z)
        torch.testing.assert_close(ddpm, math.sqrt(a) * -v + z, rtol=1e-5, atol=1e-5)
        ddim = SAMPLERS["ddim"]().step(model, x, v, T, tp, z)
        torch.testing.assert_close(ddim, math.sqrt(a) * -v + math.sqrt(1 - a) * x, rtol=1e-5, atol=1e-5)


def test_zero_terminal_snr_training_loss_is_finite(tiny_cfg):
    model = _model(tiny_cfg, "v", **ZTSNR).train()
    seen = []
    model.network.register_forward_hook(lambda m, inp, out: seen.append(inp[1].detach()))
    loss = model(torch.randn(96, 1, 28, 28), torch.arange(96) % 10, generator=torch.Generator().manual_seed(0))
    assert bool((seen[0] == 1.0).any())                    # t = T was drawn: SNR 0, x_t pure noise
    assert math.isfinite(float(loss.detach()))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert math.isfinite(float(model.noise_loss(torch.randn(32, 1, 28, 28), torch.arange(32) % 10).detach()))


# ---- the seed default: unchanged bit for bit ------------------------------------------------------------


def test_seed_defaults_are_eps_and_uniform():
    cfg = ExperimentConfig()
    assert (cfg.diffusion.prediction, cfg.diffusion.zero_terminal_snr) == ("eps", False)
    assert (cfg.train.loss_weighting, cfg.train.min_snr_gamma) == ("uniform", 5.0)
    assert seed_differences(load_config(REPO / "experiments" / "seed.yaml")) == []
    assert seed_differences(load_config(REPO / "experiments" / "v-minsnr.yaml")) == [
        "diffusion.prediction", "train.loss_weighting"]


def test_seed_loss_is_algorithm_1_bit_for_bit(tiny_cfg):
    """The seed's loss, written out: F.mse_loss(net(sqrt(abar) x0 + sqrt(1-abar) eps, t/T, c), eps), equal exactly."""
    model = _model(tiny_cfg).train()
    B, x0, y = 32, torch.randn(32, 1, 28, 28), torch.arange(32) % 10
    got = model(x0, y, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    c, _ = model.drop_conditions(model.one_hot(y), g)
    t = torch.randint(1, T + 1, (B,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    s = model.schedule
    x_t = s.sqrt_alpha_bar[t].view(-1, 1, 1, 1) * x0 + s.sqrt_oneminus_alpha_bar[t].view(-1, 1, 1, 1) * eps
    want = F.mse_loss(model.network(x_t, t.float() / T, c).float(), eps.float())
    assert torch.equal(got, want)
    assert torch.equal(model.noise_loss(x0, y, generator=torch.Generator().manual_seed(9)), want)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_seed_sampling_is_algorithm_2_bit_for_bit(tiny_cfg, sampler):
    """The seed's Algorithm 2 (all T steps, sigma_t = sqrt(beta_t)) and DDIM eta 0, written out with the guided
    eps~ = (1 + w) eps_c - w eps_u from one batched pass: equal exactly to what the samplers return."""
    model = _model(tiny_cfg)
    s, labels, w = model.schedule, torch.arange(4), 2.0
    g = torch.Generator().manual_seed(5)
    x = torch.randn((4, 1, 28, 28), generator=g)
    c = model.one_hot(labels)
    taus = timestep_subsequence(T, None if sampler == "ddpm" else 5) + [0]
    with torch.no_grad():
        for t, tp in zip(taus[:-1], taus[1:]):
            tt = torch.full((4,), t, dtype=torch.long)
            e = model.network(torch.cat([x, x]), torch.cat([tt, tt]).float() / T,
                              torch.cat([c, model.null_condition(4, "cpu")]))
            e_c, e_u = e.chunk(2)
            eps = (1.0 + w) * e_c.float() - w * e_u.float()
            z = torch.randn(x.shape, generator=g) if tp > 0 else torch.zeros_like(x)
            if sampler == "ddpm":
                coef = s.beta_t[t] / s.sqrt_oneminus_alpha_bar[t]      # Algorithm 2 line 4
                x = s.oneover_sqrt_alpha[t] * (x - coef * eps) + s.sqrt_beta_t[t] * z
            else:
                a, ap = s.alpha_bar_host[t], s.alpha_bar_host[tp]
                x0 = (x - (1.0 - a) ** 0.5 * eps) / a ** 0.5
                x = ap ** 0.5 * x0 + max(1.0 - ap, 0.0) ** 0.5 * eps + 0.0 * z
    want = model.denormalize(x.float()).contiguous()
    got = SAMPLERS[sampler](steps=None if sampler == "ddpm" else 5).sample(
        model, labels, w, generator=torch.Generator().manual_seed(5))
    assert torch.equal(got, want)


# ---- config keys: typed, checked, searchable in a sweep -------------------------------------------------


@pytest.mark.parametrize("key,value,message", [
    ("diffusion.prediction", "score", "diffusion.prediction = 'score': unknown name; valid: eps, v, x0"),
    ("train.loss_weighting", "snr", "train.loss_weighting = 'snr': unknown name; valid: min_snr, uniform"),
    ("train.min_snr_gamma", 0, "train.min_snr_gamma = 0.0: must be > 0"),
    ("diffusion.zero_terminal_snr", "yes", "diffusion.zero_terminal_snr = 'yes': expected true or false"),
])
def test_bad_objective_keys_are_one_line_errors(tiny_cfg, key, value, message):
    with pytest.raises(ConfigError) as e:
        tiny_cfg(**{key: value})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_objective_keys_are_searchable_in_a_sweep(tmp_path):
    from helpers import sweep_file
    from ddpm.sweeps.spec import load_sweep, trial_config

    space = {"diffusion.prediction": ["eps", "v", "x0"], "train.loss_weighting": ["uniform", "min_snr"],
             "train.min_snr_gamma": {"type": "float", "low": 1.0, "high": 8.0}}
    spec = load_sweep(sweep_file(tmp_path, space=space))
    cfg = trial_config(spec, {"diffusion.prediction": "v", "train.loss_weighting": "min_snr",
                              "train.min_snr_gamma": 2.5}, "trial-0")
    assert (cfg.diffusion.prediction, cfg.train.loss_weighting, cfg.train.min_snr_gamma) == ("v", "min_snr", 2.5)


@pytest.mark.slow
def test_a_v_model_trains_saves_and_samples_from_its_checkpoint(tiny_cfg, tmp_path):
    """train() -> best.pt -> load_model (what `ddpm sample`/`eval` use): the objective travels in the checkpoint."""
    from ddpm.checkpoint import load_model
    from ddpm.sampling import Sampling
    from ddpm.train import train

    cfg = tiny_cfg(**{"diffusion.prediction": "v", "diffusion.zero_terminal_snr": True,
                      "train.loss_weighting": "min_snr", "train.min_snr_gamma": 3.0, "train.grid_every": 0,
                      "data.val_size": 64, "name": "v-run"})
    run = train(cfg, quiet=True)
    rec = run.history[-1]
    assert all(math.isfinite(rec[k]) for k in ("train_loss", "test_loss", "val_loss"))
    model, loaded, _ = load_model(run.run_dir, "cpu")
    assert (loaded.diffusion.prediction, loaded.diffusion.zero_terminal_snr) == ("v", True)
    assert (loaded.train.loss_weighting, loaded.train.min_snr_gamma) == ("min_snr", 3.0)
    assert model.prediction.name == "v" and model.schedule.alpha_bar_host[T] == 0.0
    images = Sampling.from_config(loaded, "cpu", steps=5).sample(model, torch.arange(4), torch.Generator().manual_seed(0))
    assert torch.isfinite(images).all()
