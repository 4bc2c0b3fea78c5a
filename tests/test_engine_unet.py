"""The UNet's time and condition embeddings keep full resolution under bf16 autocast (issue 15)."""
from __future__ import annotations

import torch

from ddpm.unet import ConditionalUnet

T = 400


def _net(seed: int = 0) -> ConditionalUnet:
    torch.manual_seed(seed)
    return ConditionalUnet(in_channels=1, num_feat=8, num_classes=10).eval()


def _seed_forward(net: ConditionalUnet, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The forward pass as it was before the embeddings moved to fp32 (inputs cast to x's dtype)."""
    F = net.num_feat
    t, c = t.to(x.dtype).view(-1, 1), c.to(x.dtype)
    temb1, temb2 = net.timeembed1(t).view(-1, 2 * F, 1, 1), net.timeembed2(t).view(-1, F, 1, 1)
    cemb1, cemb2 = net.conditionembed1(c).view(-1, 2 * F, 1, 1), net.conditionembed2(c).view(-1, F, 1, 1)
    down0 = net.init_conv(x)
    down1 = net.fusion1(net.downblock1(down0), temb2, cemb2)
    down2 = net.fusion2(net.downblock2(down1), temb1, cemb1)
    up0 = net.upblock0(net.to_vec(down2))
    up1 = net.fusion3(net.upblock1(up0, down2), temb2, cemb2)
    up2 = net.fusion4(net.upblock2(up1, down1), temb2, cemb2)
    return net.outblock(torch.cat((up2, down0), dim=1))


def test_bf16_rounding_of_t_over_T_is_the_problem():
    """The premise: t/T rounded to bf16 keeps 328 of 400 distinct values."""
    t = torch.arange(1, T + 1) / T
    assert torch.unique(t.to(torch.bfloat16)).numel() == 328
    assert torch.unique(t).numel() == T


def test_time_embedding_sees_every_step_under_bf16_autocast():
    net = _net()
    x = torch.randn(T, 1, 28, 28)
    t = torch.arange(1, T + 1, dtype=torch.float32) / T
    c = torch.nn.functional.one_hot(torch.arange(T) % 10, 10).float()
    seen: dict[str, tuple] = {}

    def keep(name):
        def hook(module, inputs, output):
            seen[name] = (inputs[0], output, torch.is_autocast_enabled("cpu"))
        return hook

    hooks = [getattr(net, name).register_forward_hook(keep(name))
             for name in ("timeembed1", "timeembed2", "conditionembed1", "conditionembed2")]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, t, c)
    for h in hooks:
        h.remove()
    for name, (inp, emb, autocast_on) in seen.items():
        # computed in fp32 with autocast off: 400 distinct inputs, outputs for t and t+1 differ for every t
        assert not autocast_on and inp.dtype == emb.dtype == torch.float32, name
    assert torch.unique(seen["timeembed1"][0]).numel() == T
    for name in ("timeembed1", "timeembed2"):
        flat = seen[name][1].flatten(1)
        assert bool((flat[1:] != flat[:-1]).any(dim=1).all()), name
        # and they still differ once cast to the activation dtype the fusion blocks receive
        assert torch.unique(flat.to(torch.bfloat16), dim=0).shape[0] > 328, name
    assert out.dtype == torch.bfloat16 and bool(torch.isfinite(out).all())


def test_before_the_fix_bf16_autocast_merged_steps():
    """The old path under autocast: the Linear's bf16 input collapses some neighbouring t (what the fix removes)."""
    net = _net()
    t = (torch.arange(1, T + 1, dtype=torch.float32) / T).view(-1, 1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        flat = net.timeembed1(t).float()
    assert not bool((flat[1:] != flat[:-1]).any(dim=1).all())


def test_fp32_outputs_are_unchanged_without_autocast():
    net = _net(seed=3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 1, 28, 28, generator=g)
    t = torch.randint(1, T + 1, (16,), generator=g).float() / T
    c = torch.nn.functional.one_hot(torch.arange(16) % 10, 10).float()
    c[::4] = -1.0  # the null condition
    with torch.no_grad():
        assert torch.equal(net(x, t, c), _seed_forward(net, x, t, c))
    net.train()
    assert torch.equal(net(x, t.view(-1, 1), c), _seed_forward(net, x, t, c))
