"""Algorithm 1 (condition dropout, loss) and Algorithm 2 (guided posterior step), against closed forms."""
from __future__ import annotations

import math

import pytest
import torch

from ddpm.diffusion import ConditionalDDPM
from ddpm.samplers import SAMPLERS, make_sampler, timestep_subsequence
from ddpm.unet import ConditionalUnet


def test_network_output_shape_and_capacity_knob(tiny_cfg):
    for bpl in (1, 2):
        net = ConditionalUnet(1, 16, 10, blocks_per_level=bpl)
        x = torch.randn(5, 1, 28, 28)
        out = net(x, torch.rand(5), torch.eye(10)[:5])
        assert out.shape == (5, 1, 28, 28)
    small = sum(p.numel() for p in ConditionalUnet(1, 16, 10, 1).parameters())
    big = sum(p.numel() for p in ConditionalUnet(1, 16, 10, 2).parameters())
    assert big > small


def test_dropout_happens_at_rate_mask_p(tiny_cfg):
    model = ConditionalDDPM(tiny_cfg(**{"diffusion.mask_p": 0.3}))
    c = model.one_hot(torch.arange(20000) % 10)
    g = torch.Generator().manual_seed(0)
    dropped_c, drop = model.drop_conditions(c, g)
    rate = drop.float().mean().item()
    sd = math.sqrt(0.3 * 0.7 / 20000)
    assert abs(rate - 0.3) < 5 * sd
    # a dropped condition is the all -1 vector (condition_mask_value), a kept one is the one-hot
    assert torch.all(dropped_c[drop] == -1.0)
    assert torch.equal(dropped_c[~drop], c[~drop])


@pytest.mark.slow
def test_forward_drops_conditions_inside_the_loss(tiny_cfg):
    """The seed never dropped (it read a missing field): count null conditions reaching the network."""
    model = ConditionalDDPM(tiny_cfg(**{"diffusion.mask_p": 0.5}))
    seen = []
    model.network.register_forward_hook(lambda m, inp, out: seen.append(inp[2].detach().clone()))
    x = torch.randn(4000, 1, 28, 28) * 0 + 0.1
    model(x[:4000], torch.arange(4000) % 10, generator=torch.Generator().manual_seed(1))
    c = seen[0]
    null = (c == -1).all(dim=1).float().mean().item()
    assert 0.45 < null < 0.55


def test_time_enters_as_t_over_T(tiny_cfg):
    model = ConditionalDDPM(tiny_cfg())
    seen = []
    model.network.register_forward_hook(lambda m, inp, out: seen.append(inp[1].detach().clone()))
    x = torch.randn(512, 1, 28, 28)
    model(x, torch.zeros(512, dtype=torch.long))
    t = seen[0]
    assert float(t.min()) >= 1 / model.T - 1e-6 and float(t.max()) <= 1.0 + 1e-6
    assert float(t.max()) > 0.5  # raw t (1..T) would exceed 1


def test_embeddings_are_trainable_unless_frozen(tiny_cfg):
    for frozen in (False, True):
        model = ConditionalDDPM(tiny_cfg(**{"model.freeze_embeddings": frozen}))
        loss = model(torch.randn(8, 1, 28, 28), torch.arange(8))
        loss.backward()
        g = model.network.timeembed1.layers[0].weight.grad
        if frozen:
            assert g is None
        else:
            assert g is not None and g.abs().sum() > 0


def test_batched_guidance_equals_two_passes(tiny_cfg):
    model = ConditionalDDPM(tiny_cfg()).eval()
    x, t, c = torch.randn(6, 1, 28, 28), torch.full((6,), 7), model.one_hot(torch.arange(6))
    with torch.no_grad():
        a = model.guided_eps(x, t, c, 2.0, batched=True)
        b = model.guided_eps(x, t, c, 2.0, batched=False)
        e_c, e_u = model.eps(x, t, c), model.eps(x, t, model.null_condition(6, "cpu"))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a, 3.0 * e_c - 2.0 * e_u, rtol=1e-4, atol=1e-5)


def _with_running_stats(model: ConditionalDDPM) -> ConditionalDDPM:
    """Give every BatchNorm non-trivial running statistics and affine parameters (fresh ones are identity)."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.3, 3.0)
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)
    return model


def test_folded_batchnorm_copy_matches_the_network_and_leaves_it_alone(tiny_cfg):
    model = _with_running_stats(ConditionalDDPM(tiny_cfg()))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = model.inference_copy()
    n_bn = lambda m: sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    assert n_bn(model.network) > 0 and n_bn(folded.network) == 0
    x, t, c = torch.randn(6, 1, 28, 28), torch.randint(1, model.T + 1, (6,)), model.one_hot(torch.arange(6))
    with torch.no_grad():
        expected = model.eval().guided_eps(x, t, c, 2.0)
        got = folded.guided_eps(x, t, c, 2.0)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model.network.init_conv.conv1[1], torch.nn.BatchNorm2d)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampling_with_folded_batchnorm_equals_plain_sampling(tiny_cfg, name):
    model = _with_running_stats(ConditionalDDPM(tiny_cfg()))
    labels, sampler = torch.arange(10), make_sampler(name, steps=6, eta=1.0)
    a = sampler.sample(model, labels, 2.0, generator=torch.Generator().manual_seed(5))
    b = sampler.sample(model, labels, 2.0, generator=torch.Generator().manual_seed(5), fold_batchnorm=True,
                       memory_format=torch.channels_last)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
    assert model.training


@pytest.mark.parametrize("chunk", [1, 5, 7, 12, 100])
def test_chunked_guided_pass_equals_one_pass(tiny_cfg, chunk):
    model = _with_running_stats(ConditionalDDPM(tiny_cfg())).eval()
    x, t, c = torch.randn(6, 1, 28, 28), torch.randint(1, model.T + 1, (6,)), model.one_hot(torch.arange(6))
    with torch.no_grad():
        whole = model.guided_eps(x, t, c, 2.0)
        pieces = model.guided_eps(x, t, c, 2.0, chunk=chunk)
    torch.testing.assert_close(pieces, whole, rtol=1e-4, atol=1e-5)


def test_sampling_options_by_path_and_device(tiny_cfg):
    from ddpm.sampling import CPU_SAMPLE_CHUNK, sampling_options

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    fast = sampling_options(tiny_cfg().train, cpu)
    assert fast["chunk"] == CPU_SAMPLE_CHUNK and fast["fold_batchnorm"] and fast["autocast_dtype"] is None
    assert sampling_options(tiny_cfg().train, cuda)["chunk"] is None
    assert sampling_options(tiny_cfg(**{"train.sample_chunk": 16}).train, cuda)["chunk"] == 16
    faithful = sampling_options(tiny_cfg(**{"train.path": "faithful"}).train, cpu)
    assert faithful["chunk"] is None and not faithful["fold_batchnorm"]
    assert faithful["memory_format"] == torch.contiguous_format


def test_ddpm_step_is_the_algorithm_2_posterior_step(tiny_cfg):
    model = ConditionalDDPM(tiny_cfg())
    s = model.schedule
    x, eps, z = torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28)
    sampler = make_sampler("ddpm")
    for t in (model.T, 5, 1):
        beta, abar = float(s.beta_t[t]), float(s.alpha_t_bar[t])
        alpha = 1 - beta
        expected = 1 / math.sqrt(alpha) * (x - (1 - alpha) / math.sqrt(1 - abar) * eps) + math.sqrt(beta) * z
        torch.testing.assert_close(sampler.step(model, x, eps, t, t - 1, z), expected, rtol=1e-5, atol=1e-5)


def test_ddim_eta0_step_closed_form(tiny_cfg):
    model = ConditionalDDPM(tiny_cfg())
    x, eps = torch.randn(2, 1, 28, 28), torch.randn(2, 1, 28, 28)
    t, tp = 15, 10
    a, ap = float(model.schedule.alpha_t_bar[t]), float(model.schedule.alpha_t_bar[tp])
    x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
    expected = math.sqrt(ap) * x0 + math.sqrt(1 - ap) * eps
    out = make_sampler("ddim", eta=0.0).step(model, x, eps, t, tp, torch.randn_like(x))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_timestep_subsequence():
    assert timestep_subsequence(10, None) == list(range(10, 0, -1))
    sub = timestep_subsequence(400, 50)
    assert sub[0] == 400 and sub[-1] == 1 and len(sub) == 50 and sub == sorted(sub, reverse=True)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampling_is_deterministic_with_a_seed_and_in_range(tiny_cfg, name):
    model = ConditionalDDPM(tiny_cfg())
    labels = torch.arange(10)
    sampler = make_sampler(name, steps=8, eta=0.5)
    a = sampler.sample(model, labels, 2.0, generator=torch.Generator().manual_seed(3))
    b = sampler.sample(model, labels, 2.0, generator=torch.Generator().manual_seed(3))
    c = sampler.sample(model, labels, 2.0, generator=torch.Generator().manual_seed(4))
    assert a.shape == (10, 1, 28, 28)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert model.training, "sampling must restore the train mode"


@pytest.mark.slow
def test_loss_falls_over_a_few_dozen_steps(tiny_cfg):
    from ddpm.data import tensors

    torch.manual_seed(0)
    cfg = tiny_cfg(**{"model.num_feat": 16})
    model = ConditionalDDPM(cfg)
    x, y = tensors("mnist", "train", None, 0.1307, 0.3081, 256, val_size=5000)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for step in range(40):
        idx = torch.randint(0, 256, (64,), generator=g)
        loss = model(x[idx], y[idx], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-8:]) / 8 < 0.6 * sum(losses[:8]) / 8


def test_clipped_x0_step_equals_algorithm_2_inside_the_data_range(tiny_cfg):
    """With sample.clip_x0 the DDPM step goes through the posterior mean of a clipped x0_hat; inside the
    data range that is Algorithm 2's step exactly, outside it x0_hat is held to the pixel range."""
    plain = ConditionalDDPM(tiny_cfg())
    clipped = ConditionalDDPM(tiny_cfg(**{"sample.clip_x0": True}))
    lo, hi = clipped.x0_range
    assert lo == pytest.approx(-0.1307 / 0.3081) and hi == pytest.approx((1 - 0.1307) / 0.3081)
    sampler = make_sampler("ddpm")
    for t in (plain.T, 7, 2):
        abar = float(plain.schedule.alpha_t_bar[t])
        x0 = torch.rand(3, 1, 28, 28) * (hi - lo) * 0.9 + lo * 0.9
        eps, z = torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28)
        x = abar ** 0.5 * x0 + (1 - abar) ** 0.5 * eps
        torch.testing.assert_close(sampler.step(clipped, x, eps, t, t - 1, z), sampler.step(plain, x, eps, t, t - 1, z),
                                   rtol=1e-4, atol=1e-4)
    far = clipped.predict_x0(torch.full((1, 1, 2, 2), 50.0), torch.zeros(1, 1, 2, 2), 0.5)
    assert float(far.max()) == pytest.approx(hi)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_cosine_schedule_samples_stay_bounded_with_clipping(tiny_cfg, name):
    """Cosine betas reach 0.999: 1/sqrt(alpha_T) ~ 32 amplifies eps errors unless x0_hat is clipped."""
    model = ConditionalDDPM(tiny_cfg(**{"diffusion.schedule": "cosine", "sample.clip_x0": True}))
    sampler = make_sampler(name, steps=10)
    labels = torch.arange(10)
    # an untrained net's eps is far from the true noise: the worst case for the amplification
    x = sampler.sample(model, labels, 2.0, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    # the last x0_hat is clipped, so the final image is neither all-black nor all-white saturation noise
    assert 0.0 < float(x.mean()) < 1.0
