"""Beta schedules (a registry) and the seed's ``scheduler(t)`` contract.

A schedule's name is a promise (improved-diffusion): a changed formula gets a new name. Adding a
schedule is one function ``(T, beta_1, beta_T) -> betas`` plus ``@register_schedule("name")``; a
schedule that ignores its end points says so (``uses=()``), so sweeps do not search them for it.

The terminal guard: a schedule whose ``alpha_bar_T`` exceeds ``MAX_TERMINAL_ALPHA_BAR`` is rejected
by config validation (see ``terminal_alpha_bar``).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ddpm.registry import Registry

ScheduleFn = Callable[[int, float, float], torch.Tensor]
SCHEDULES: Registry[ScheduleFn] = Registry("schedule")
SCHEDULE_PARAMS = SCHEDULES.meta_of("uses")     # the diffusion.* end points each schedule reads
END_POINTS = ("beta_1", "beta_T")


def register_schedule(name: str, uses: tuple[str, ...] = END_POINTS) -> Callable[[ScheduleFn], ScheduleFn]:
    return SCHEDULES.register(name, uses=tuple(uses))


@register_schedule("linear")
def linear(T: int, beta_1: float, beta_T: float) -> torch.Tensor:
    # DDPM (Ho et al. 2020) Sec. 4 and the seed: beta_t linearly interpolated between beta_1 and beta_T
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64)


@register_schedule("quadratic")
def quadratic(T: int, beta_1: float, beta_T: float) -> torch.Tensor:
    # linear in sqrt(beta) (the DDPM codebase's "quad"), same end points as linear
    return torch.linspace(beta_1 ** 0.5, beta_T ** 0.5, T, dtype=torch.float64) ** 2


@register_schedule("cosine", uses=())
def cosine(T: int, beta_1: float, beta_T: float) -> torch.Tensor:
    # Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) * pi/2),
    # beta_t = 1 - alpha_bar(t)/alpha_bar(t-1) clipped at 0.999; s = 0.008. beta_1/beta_T are unused.
    s = 0.008
    steps = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos(((steps / T + s) / (1 + s)) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


@register_schedule("sigmoid")
def sigmoid(T: int, beta_1: float, beta_T: float) -> torch.Tensor:
    # sigmoid(linspace(-6, 6, T)) rescaled to [beta_1, beta_T] (GeoDiff, Xu et al. 2022)
    x = torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64))
    x = (x - x[0]) / (x[-1] - x[0])
    return beta_1 + (beta_T - beta_1) * x


# The terminal guard. Training draws x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (DDPM eq. 4), but
# sampling starts from x_T ~ N(0, I) (Algorithm 2, line 1). alpha_bar_T is the share of x_T's variance
# that is still the image (for unit-variance data): where it is large, the model never learns to start
# from pure noise and a trial loses on its end point, not its schedule shape (issue 11: T = 100 with
# linear betas 1e-4..1e-2 keeps alpha_bar_T = 0.60). Ho et al. 2020 end at alpha_bar_T = 4e-5; the seed's
# linear 1e-4..2e-2 at T = 400 at 0.0175; cpu-quick's T = 200, beta_T = 4e-2 at 0.0172; the quadratic
# schedule on the seed's end points at 0.056. The bound 0.1 accepts all of these (and every shipped
# experiment and sweep base) and rejects a start where a tenth or more of x_T is still signal
# (signal-to-noise ratio alpha_bar / (1 - alpha_bar) above 0.11, Kingma et al. 2021's SNR(T)).
MAX_TERMINAL_ALPHA_BAR = 0.1


def terminal_alpha_bar(name: str, T: int, beta_1: float, beta_T: float, zero_terminal_snr: bool = False) -> float:
    """alpha_bar_T = prod_{t=1..T} (1 - beta_t) of the registered schedule (DDPM eq. 4's alpha_bar_t at t = T);
    0 exactly when rescaled to zero terminal SNR."""
    if zero_terminal_snr:
        return 0.0
    betas = SCHEDULES[name](T, beta_1, beta_T).to(torch.float64)
    return float(torch.exp(torch.log1p(-betas).sum()))


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024, Algorithm 1: shift and scale sqrt(alpha_bar) so that sqrt(alpha_bar_T) = 0 and
    sqrt(alpha_bar_1) is unchanged, then back to betas (beta_T becomes 1: x_T is pure noise, SNR(T) = 0).
    Needs v prediction (eps at t = T carries no information about x0; config validation enforces it)."""
    sqrt_abar = torch.cumprod(1.0 - betas.to(torch.float64), 0).sqrt()
    first, last = sqrt_abar[0].clone(), sqrt_abar[-1].clone()
    sqrt_abar = (sqrt_abar - last) * (first / (first - last))
    abar = sqrt_abar ** 2
    alphas = torch.cat([abar[:1], abar[1:] / abar[:-1]])
    return 1.0 - alphas


def smallest_beta_T(name: str, T: int, beta_1: float, bound: float = MAX_TERMINAL_ALPHA_BAR) -> float | None:
    """The least beta_T in [beta_1, 0.999] with alpha_bar_T <= bound at this T (bisection: alpha_bar_T falls
    as beta_T grows), or None when no beta_T reaches it (T too small, or a schedule that ignores beta_T)."""
    if "beta_T" not in SCHEDULE_PARAMS[name] or terminal_alpha_bar(name, T, beta_1, 0.999) > bound:
        return None
    lo, hi = beta_1, 0.999
    if terminal_alpha_bar(name, T, beta_1, lo) <= bound:
        return lo
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if terminal_alpha_bar(name, T, beta_1, mid) <= bound else (mid, hi)
    return hi


SCHEDULER_KEYS = ("beta_t", "sqrt_beta_t", "alpha_t", "oneover_sqrt_alpha", "alpha_t_bar",
                  "sqrt_alpha_bar", "sqrt_oneminus_alpha_bar")


class NoiseSchedule(torch.nn.Module):
    """Precomputed per-step constants, indexed 1..T as in the seed (index 0 holds t = 0: alpha_bar = 1)."""

    def __init__(self, name: str, T: int, beta_1: float, beta_T: float, zero_terminal_snr: bool = False):
        super().__init__()
        if name not in SCHEDULES:
            raise KeyError(f"unknown schedule {name!r}; valid: {', '.join(sorted(SCHEDULES))}")
        self.name, self.T = name, T
        betas = SCHEDULES[name](T, beta_1, beta_T).to(torch.float64)
        if zero_terminal_snr:   # then alpha_T = 0: oneover_sqrt_alpha[T] is inf (samplers go through x0 there)
            betas = rescale_zero_terminal_snr(betas)
        alphas = 1.0 - betas                                        # alpha_t := 1 - beta_t
        alpha_bar = torch.cumprod(alphas, 0)                        # alpha_bar_t := prod_{s<=t} alpha_s
        pad = lambda x, v: torch.cat([torch.tensor([v], dtype=torch.float64), x])  # noqa: E731
        table = {
            "beta_t": pad(betas, 0.0),
            "sqrt_beta_t": pad(betas.sqrt(), 0.0),                  # sigma_t = sqrt(beta_t) (seed, Alg. 2)
            "alpha_t": pad(alphas, 1.0),
            "oneover_sqrt_alpha": pad(alphas.rsqrt(), 1.0),
            "alpha_t_bar": pad(alpha_bar, 1.0),
            "sqrt_alpha_bar": pad(alpha_bar.sqrt(), 1.0),
            "sqrt_oneminus_alpha_bar": pad((1 - alpha_bar).sqrt(), 0.0),
        }
        for k, v in table.items():
            self.register_buffer(k, v.float(), persistent=False)
        # alpha_bar_t for t = 0..T as Python floats, the same float32 values as the buffer: samplers read
        # it once per step on the host, so no step waits on a device -> host copy
        self.alpha_bar_host: list[float] = self.alpha_t_bar.tolist()

    def forward(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """The seed's ``scheduler(t_s)``: integer t in 1..T of shape (B,), (B,1) or () -> dict of (B,1,1,1)."""
        t = torch.as_tensor(t, device=self.beta_t.device).long().reshape(-1)
        if t.numel() and (int(t.min()) < 1 or int(t.max()) > self.T):
            raise ValueError(f"time steps must lie in 1..{self.T}")
        return {k: getattr(self, k)[t].view(-1, 1, 1, 1) for k in SCHEDULER_KEYS}

    def at(self, key: str, t: torch.Tensor) -> torch.Tensor:
        """One constant for t in 0..T, shaped (B,1,1,1): the hot-path lookup (no validation)."""
        return getattr(self, key)[t].view(-1, 1, 1, 1)
