"""Beta schedules against closed forms, and the seed's scheduler(t) contract, for every schedule."""
from __future__ import annotations

import math

import pytest
import torch

from ddpm.schedules import SCHEDULER_KEYS, SCHEDULES, NoiseSchedule

T, B1, BT = 50, 1e-4, 2e-2


def closed_form_betas(name: str) -> list[float]:
    if name == "linear":
        return [B1 + (BT - B1) * i / (T - 1) for i in range(T)]
    if name == "quadratic":
        return [(math.sqrt(B1) + (math.sqrt(BT) - math.sqrt(B1)) * i / (T - 1)) ** 2 for i in range(T)]
    if name == "cosine":
        f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        return [min(1 - f(t) / f(t - 1), 0.999) for t in range(1, T + 1)]
    if name == "sigmoid":
        s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
        xs = [-6 + 12 * i / (T - 1) for i in range(T)]
        lo, hi = s(xs[0]), s(xs[-1])
        return [B1 + (BT - B1) * (s(x) - lo) / (hi - lo) for x in xs]
    raise AssertionError(f"no closed form written for schedule {name}: add one")


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_scheduler_matches_closed_forms(name):
    sched = NoiseSchedule(name, T, B1, BT)
    betas = closed_form_betas(name)
    t = torch.arange(1, T + 1)
    out = sched(t)
    assert set(out) == set(SCHEDULER_KEYS)
    for k, v in out.items():
        assert v.shape == (T, 1, 1, 1), k
    abar = 1.0
    for i, b in enumerate(betas):
        abar *= 1 - b
        exp = {"beta_t": b, "sqrt_beta_t": math.sqrt(b), "alpha_t": 1 - b, "oneover_sqrt_alpha": 1 / math.sqrt(1 - b),
               "alpha_t_bar": abar, "sqrt_alpha_bar": math.sqrt(abar), "sqrt_oneminus_alpha_bar": math.sqrt(1 - abar)}
        for k, e in exp.items():
            assert float(out[k][i]) == pytest.approx(e, rel=1e-5, abs=1e-7), (name, k, i + 1)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_is_a_valid_diffusion(name):
    sched = NoiseSchedule(name, 400, 1e-4, 2e-2)
    b = sched.beta_t[1:]
    assert torch.all(b > 0) and torch.all(b < 1)
    abar = sched.alpha_t_bar[1:]
    assert torch.all(abar[1:] < abar[:-1]), "alpha_bar must decrease"


def test_seed_linear_values_at_ends():
    out = NoiseSchedule("linear", 400, 1e-4, 2e-2)(torch.tensor([1, 400]))
    assert float(out["beta_t"][0]) == pytest.approx(1e-4)
    assert float(out["beta_t"][1]) == pytest.approx(2e-2)


def test_scheduler_accepts_seed_shapes_and_rejects_out_of_range():
    sched = NoiseSchedule("linear", T, B1, BT)
    for t in (torch.tensor(3), torch.tensor([3]), torch.tensor([[3], [4]])):
        out = sched(t)
        assert out["beta_t"].shape[1:] == (1, 1, 1)
    with pytest.raises(ValueError):
        sched(torch.tensor([0]))
    with pytest.raises(ValueError):
        sched(torch.tensor([T + 1]))
