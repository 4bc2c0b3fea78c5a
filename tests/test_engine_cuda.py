"""The GPU path (resident data, bf16 autocast, fused Adam, CUDA graphs): runs only where CUDA is available.

Skipped on CPU-only machines; scripts/gpu-check.sh runs this file on the GPU machine."""
from __future__ import annotations

import math

import pytest
import torch

from ddpm.config import load_config
from ddpm.diffusion import ConditionalDDPM
from ddpm.runtime import autocast_dtype, resolve_device
from ddpm.samplers import make_sampler

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

T = 400


def test_auto_device_and_precision_pick_cuda_bf16(tiny_cfg):
    cfg = tiny_cfg()
    device = resolve_device("auto")
    assert device.type == "cuda"
    assert autocast_dtype(cfg.train, device) == torch.bfloat16
    assert autocast_dtype(load_config(None, extra={"train.path": "faithful"}).train, device) is None


@pytest.mark.parametrize("path", ["fast", "faithful"])
def test_one_epoch_trains_on_cuda(tiny_cfg, path):
    from ddpm.train import train

    cfg = tiny_cfg(**{"train.device": "cuda", "train.path": path, "name": f"cuda-{path}"})
    run = train(cfg, quiet=True)
    (row,) = run.history
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["test_loss"])
    assert next(run.model.parameters()).device.type == "cuda"
    assert run.best_checkpoint.is_file()


def test_time_embedding_keeps_every_step_under_cuda_bf16():
    torch.manual_seed(0)
    net = ConditionalDDPM(load_config(None, extra={"model.num_feat": 8})).network.cuda().eval()
    t = torch.arange(1, T + 1, device="cuda", dtype=torch.float32) / T
    out: list[torch.Tensor] = []
    hook = net.timeembed1.register_forward_hook(lambda m, i, o: out.append(o))
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        net(torch.randn(T, 1, 28, 28, device="cuda"), t, torch.zeros(T, 10, device="cuda"))
    hook.remove()
    flat = out[0].flatten(1)
    assert flat.dtype == torch.float32
    assert bool((flat[1:] != flat[:-1]).any(dim=1).all())


@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_cuda_graph_sampling_matches_eager(amp):
    """The same seed gives the same images with and without the captured graph (same kernels, replayed)."""
    torch.manual_seed(0)
    cfg = load_config(None, extra={"model.num_feat": 16, "diffusion.T": 20, "diffusion.beta_T": 0.5})
    model = ConditionalDDPM(cfg).cuda()
    labels = torch.arange(20, device="cuda") % 10
    images = []
    for graph in (False, True):
        g = torch.Generator(device="cuda").manual_seed(7)
        images.append(make_sampler("ddpm").sample(model, labels, 2.0, generator=g, autocast_dtype=amp,
                                                  cuda_graph=graph))
    assert images[0].shape == (20, 1, 28, 28)
    assert bool(torch.isfinite(images[0]).all())
    torch.testing.assert_close(images[1], images[0], atol=2e-2 if amp else 1e-3, rtol=0)


def test_cuda_sampling_matches_cpu_in_fp32(monkeypatch):
    """20 guided steps on the GPU and on the CPU from the same x_T: fp32 (TF32 off) agrees to rounding."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    cfg = load_config(None, extra={"model.num_feat": 8, "diffusion.T": 20, "diffusion.beta_T": 0.5})
    model = ConditionalDDPM(cfg).eval()
    labels = torch.arange(10) % 10
    x = torch.randn(10, 1, 28, 28)
    outs = []
    for dev in ("cpu", "cuda"):
        m, xt = model.to(dev), x.to(dev)
        c = m.one_hot(labels).to(dev)
        with torch.no_grad():
            for t in range(cfg.diffusion.T, 0, -1):
                tt = torch.full((10,), t, device=dev, dtype=torch.long)
                xt = xt - 0.05 * m.guided_eps(xt, tt, c, 2.0)
        outs.append(xt.cpu())
    torch.testing.assert_close(outs[1], outs[0], atol=1e-3, rtol=1e-3)
