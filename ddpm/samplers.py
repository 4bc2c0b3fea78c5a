"""Samplers (a registry): ancestral DDPM (Algorithm 2, optionally respaced) and DDIM.

Adding a sampler is one ``Sampler`` subclass plus ``@register_sampler("name")``. Every sampler takes
integer labels and a guidance weight and returns images denormalised and clamped to [0, 1].
Callers go through ``ddpm.sampling.Sampling`` (config -> sampler, options, validated steps); this module
imports no model, so config validation can read ``SAMPLERS`` and ``check_steps`` without a circle.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Optional

import torch

from ddpm.errors import ConfigError
from ddpm.progress import progress_steps
from ddpm.registry import Registry

if TYPE_CHECKING:  # type hints only: importing the model here made config -> samplers -> diffusion -> config
    from ddpm.diffusion import ConditionalDDPM

SAMPLERS: Registry[type["Sampler"]] = Registry("sampler", stamp_name=True)
register_sampler: Callable[[str], Callable[[type["Sampler"]], type["Sampler"]]] = SAMPLERS.register


def check_steps(steps: Optional[int], T: int, key: str = "sample.steps") -> Optional[int]:
    """``steps`` if it is null or an integer in 1..T, else a one-line ConfigError naming ``key`` (the one
    check of a sampling step count: configs, ``ddpm sample``/``eval`` flags and library calls)."""
    if steps is None:
        return None
    flag = key.startswith("-")                                  # `--steps 500` vs `sample.steps = 500`
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise ConfigError(f"{key}{' ' if flag else ' = '}{steps!r}: must lie in 1..{T} (the model's diffusion.T)"
                          f"{'' if flag else ' or be null (all T steps)'}")
    return steps


def timestep_subsequence(T: int, steps: Optional[int]) -> list[int]:
    """Evenly spaced time steps T = tau_S > ... > tau_1 >= 1 (all of T..1 when steps is None or T).
    One step is the single jump T -> 0 (x_T is pure noise, so the step must start at T, not at 1)."""
    if steps is None or steps >= T:
        return list(range(T, 0, -1))
    if steps == 1:
        return [T]
    taus = torch.linspace(1, T, steps, dtype=torch.float64).round().long().unique().tolist()
    return sorted(taus, reverse=True)


class Sampler:
    name = "base"

    def __init__(self, steps: Optional[int] = None, eta: float = 0.0, batched_guidance: bool = True):
        self.steps, self.eta, self.batched = steps, eta, batched_guidance

    def step(self, model: ConditionalDDPM, x: torch.Tensor, out: torch.Tensor, t: int, t_prev: int,
             noise: torch.Tensor) -> torch.Tensor:
        """x_{t_prev} from x_t and ``out``, the guided network output on its prediction target's scale: read it
        through ``model.to_eps`` / ``model.predict_x0`` (the one conversion; for eps prediction, out is eps~)."""
        raise NotImplementedError

    @torch.inference_mode()
    def sample(self, model: ConditionalDDPM, labels: torch.Tensor, omega: float,
               generator: Optional[torch.Generator] = None, autocast_dtype: Optional[torch.dtype] = None,
               show_progress: bool = False, memory_format: torch.memory_format = torch.contiguous_format,
               cuda_graph: bool = False, fold_batchnorm: bool = False, chunk: Optional[int] = None
               ) -> torch.Tensor:
        """x_T ~ N(0, I); for each step: the guided output (eps~ on the model's target scale), then ``step``;
        returns denormalised images in [0, 1].

        ``cuda_graph`` (CUDA only, ignored elsewhere): capture the guided network pass once and replay it
        each step, which removes the per-step kernel-launch cost (untested on CPU-only machines).
        ``fold_batchnorm``: sample from ``model.inference_copy()``, BatchNorm folded into the convolutions
        (equal up to float rounding, fewer passes over memory). ``chunk``: images per network pass (see
        ``ConditionalDDPM.guided_eps``; ignored by the unbatched, seed-faithful guidance)."""
        if fold_batchnorm:
            model = model.inference_copy()
        dev = next(model.parameters()).device
        was_training = model.training
        model.eval()
        B = labels.shape[0]
        c = model.one_hot(labels).to(dev)
        x = torch.randn((B, *model.image_shape), device=dev, generator=generator).contiguous(memory_format=memory_format)
        taus = timestep_subsequence(model.T, self.steps)
        amp = (torch.autocast(dev.type, dtype=autocast_dtype) if autocast_dtype is not None
               else contextlib.nullcontext())
        try:
            if cuda_graph and dev.type == "cuda":
                guided = _cuda_graph_eps(model, x, c, omega, self.batched, amp, chunk)
            else:
                def guided(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
                    with amp:
                        return model.guided_output(x, tt, c, omega, batched=self.batched, chunk=chunk)
            for i in progress_steps(range(len(taus)), "sampling", enabled=show_progress):
                t, t_prev = taus[i], (taus[i + 1] if i + 1 < len(taus) else 0)
                tt = torch.full((B,), t, device=dev, dtype=torch.long)
                out = guided(x, tt)
                # z ~ N(0, I) if t > 1 else z = 0 (Algorithm 2 line 3)
                noise = (torch.randn(x.shape, device=dev, generator=generator) if t_prev > 0
                         else torch.zeros_like(x))
                x = self.step(model, x, out, t, t_prev, noise)
        finally:
            model.train(was_training)
        return model.denormalize(x.float()).contiguous()


def _cuda_graph_eps(model: ConditionalDDPM, x: torch.Tensor, c: torch.Tensor, omega: float, batched: bool,
                    amp, chunk: Optional[int] = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """guided_output captured as one CUDA graph on static input buffers; a call copies x and t in and replays."""
    static_x = x.clone()
    static_t = torch.ones(x.shape[0], device=x.device, dtype=torch.long)
    side = torch.cuda.Stream(x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side):  # warm-up off the capture stream (cuDNN autotuning, allocations)
        for _ in range(2):
            with amp:
                model.guided_output(static_x, static_t, c, omega, batched=batched, chunk=chunk)
    torch.cuda.current_stream(x.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        with amp:
            static_eps = model.guided_output(static_x, static_t, c, omega, batched=batched, chunk=chunk)

    def run(x_now: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        static_x.copy_(x_now)
        static_t.copy_(tt)
        graph.replay()
        return static_eps.clone()
    return run


def _abar(model: ConditionalDDPM, t: int) -> float:
    """alpha_bar_t as a Python float from the schedule's host-side table (no device sync per step)."""
    return model.schedule.alpha_bar_host[t]


@register_sampler("ddpm")
class DDPMSampler(Sampler):
    """Algorithm 2 with sigma_t = sqrt(beta_t). With steps < T: respaced ancestral sampling
    (Nichol & Dhariwal 2021, Sec. 4): beta'_t = 1 - abar_t / abar_t_prev on the sub-sequence. At abar_t = 0
    (zero terminal SNR) the eps form would divide by sqrt(alpha_t) = 0: the step goes through x0_hat instead."""

    def step(self, model, x, out, t, t_prev, noise):
        abar_t, abar_prev = _abar(model, t), _abar(model, t_prev)
        alpha = abar_t / abar_prev
        beta = 1.0 - alpha
        if model.x0_range is None and abar_t > 0.0:
            eps = model.to_eps(x, out, abar_t)
            if t_prev == t - 1:  # the exact Algorithm 2 step from the schedule table
                s = model.schedule
                coef = (s.beta_t[t] / s.sqrt_oneminus_alpha_bar[t])       # (1 - alpha_t) / sqrt(1 - abar_t)
                return s.oneover_sqrt_alpha[t] * (x - coef * eps) + s.sqrt_beta_t[t] * noise
            return (x - beta / (1.0 - abar_t) ** 0.5 * eps) / alpha ** 0.5 + beta ** 0.5 * noise
        # the same mean written through a (clipped) x0_hat (DDPM eq. 7, posterior mean mu~(x_t, x0))
        x0 = model.predict_x0(x, out, abar_t)
        mean = (abar_prev ** 0.5 * beta / (1.0 - abar_t)) * x0 + (alpha ** 0.5 * (1.0 - abar_prev) / (1.0 - abar_t)) * x
        return mean + beta ** 0.5 * noise


@register_sampler("ddim")
class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021, eq. 12): x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
    sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))."""

    def step(self, model, x, out, t, t_prev, noise):
        abar_t, abar_prev = _abar(model, t), _abar(model, t_prev)
        x0 = model.predict_x0(x, out, abar_t)
        if model.x0_range is not None:  # keep eps consistent with the clipped x0 (Song et al. 2021, eq. 12)
            eps = (x - abar_t ** 0.5 * x0) / (1.0 - abar_t) ** 0.5
        else:
            eps = model.to_eps(x, out, abar_t)
        sigma = self.eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)) ** 0.5
        dir_xt = max(1.0 - abar_prev - sigma ** 2, 0.0) ** 0.5 * eps
        return abar_prev ** 0.5 * x0 + dir_xt + sigma * noise


def make_sampler(name: str, steps: Optional[int] = None, eta: float = 0.0,
                 batched_guidance: bool = True) -> Sampler:
    if name not in SAMPLERS:
        raise ConfigError(f"sampler {name!r}: unknown; valid: {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[name](steps=steps, eta=eta, batched_guidance=batched_guidance)
