"""Training objectives (two registries): what the network predicts, and how the per-time-step loss is weighted.

``PREDICTIONS`` (``diffusion.prediction``): the target the network is trained on and the one place its output
is converted back to eps and x0 for sampling. With x_t = sqrt(abar) x0 + sqrt(1 - abar) eps (DDPM eq. 4):
  eps  the seed (Ho et al. 2020): out = eps
  v    Salimans & Ho 2022, Sec. 4: v = sqrt(abar) eps - sqrt(1 - abar) x0; then x0 = sqrt(abar) x_t - sqrt(1 - abar) v
       and eps = sqrt(abar) v + sqrt(1 - abar) x_t, neither divides by sqrt(abar) (finite at zero terminal SNR)
  x0   out = x0; eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)
Each conversion is affine in ``out`` with coefficients shared by the conditional and unconditional outputs
(same x_t, same t), which is why guidance may be written on the output and still be guidance on eps.

``LOSS_WEIGHTINGS`` (``train.loss_weighting``): a weight per sample on the prediction's MSE, or None for the
plain mean (the seed). Min-SNR-gamma (Hang et al. 2023, eq. 9-10): weight min(SNR, gamma) on the x0-MSE, where
SNR = abar / (1 - abar) (Kingma et al. 2021); as ||eps - eps_hat||^2 = SNR ||x0 - x0_hat||^2 and
||v - v_hat||^2 = (SNR + 1) ||x0 - x0_hat||^2 this is min(SNR, gamma)/SNR on the eps-MSE, min(SNR, gamma)/(SNR+1)
on the v-MSE and min(SNR, gamma) on the x0-MSE. Adding an entry is one function plus one registry line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from ddpm.registry import Registry

Tensor = torch.Tensor
Abar = Any   # alpha_bar_t: a Python float (samplers) or a (B,1,1,1) tensor (training)


def _roots(abar: Abar) -> tuple[Any, Any]:
    """(sqrt(abar), sqrt(1 - abar)) for a float or a tensor."""
    return abar ** 0.5, (1.0 - abar) ** 0.5


@dataclass(frozen=True)
class Prediction:
    """A prediction target. ``target(x0, eps, abar)``: what the network learns; ``to_eps``/``to_x0(out, x_t,
    abar)``: its output as eps and as x0; ``x0_mse_factor(snr)``: its MSE over the x0-MSE (for loss weights)."""

    name: str
    target: Callable[[Tensor, Tensor, Abar], Tensor]
    to_eps: Callable[[Tensor, Tensor, Abar], Tensor]
    to_x0: Callable[[Tensor, Tensor, Abar], Tensor]
    x0_mse_factor: Callable[[Tensor], Tensor]
    finite_at_zero_snr: bool = False   # to_eps and to_x0 need no 1/sqrt(abar): allowed with zero terminal SNR


PREDICTIONS: Registry[Prediction] = Registry("diffusion.prediction")


def _eps_to_x0(out: Tensor, x_t: Tensor, abar: Abar) -> Tensor:
    # DDPM eq. 15: x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar) (the seed's formula, op for op)
    return (x_t - (1.0 - abar) ** 0.5 * out) / abar ** 0.5


def _v_target(x0: Tensor, eps: Tensor, abar: Abar) -> Tensor:
    a, s = _roots(abar)
    return a * eps - s * x0                      # Salimans & Ho 2022, eq. (after) 9: v = alpha eps - sigma x0


def _v_to_eps(out: Tensor, x_t: Tensor, abar: Abar) -> Tensor:
    a, s = _roots(abar)
    return a * out + s * x_t                     # eps = alpha v + sigma x_t (alpha^2 + sigma^2 = 1)


def _v_to_x0(out: Tensor, x_t: Tensor, abar: Abar) -> Tensor:
    a, s = _roots(abar)
    return a * x_t - s * out                     # Salimans & Ho 2022, Sec. 4: x0 = alpha x_t - sigma v


def _x0_to_eps(out: Tensor, x_t: Tensor, abar: Abar) -> Tensor:
    a, s = _roots(abar)
    return (x_t - a * out) / s                   # DDPM eq. 4 solved for eps (1 - abar > 0 for t >= 1)


PREDICTIONS.add_named(Prediction("eps", lambda x0, eps, abar: eps, lambda out, x_t, abar: out, _eps_to_x0,
                                 lambda snr: snr))
PREDICTIONS.add_named(Prediction("v", _v_target, _v_to_eps, _v_to_x0, lambda snr: snr + 1.0,
                                 finite_at_zero_snr=True))
PREDICTIONS.add_named(Prediction("x0", lambda x0, eps, abar: x0, _x0_to_eps, lambda out, x_t, abar: out,
                                 lambda snr: torch.ones_like(snr)))


# ---- loss weightings ------------------------------------------------------------------------------------

WeightFn = Callable[[Tensor, Prediction, float], Optional[Tensor]]
LOSS_WEIGHTINGS: Registry[WeightFn] = Registry("train.loss_weighting")


@LOSS_WEIGHTINGS.register("uniform")
def uniform(snr: Tensor, prediction: Prediction, gamma: float) -> Optional[Tensor]:
    """The seed: the plain mean of the prediction's squared error (DDPM's L_simple, eq. 14)."""
    return None


@LOSS_WEIGHTINGS.register("min_snr")
def min_snr(snr: Tensor, prediction: Prediction, gamma: float) -> Optional[Tensor]:
    """Hang et al. 2023: min(SNR, gamma) on the x0-MSE, expressed on this prediction's MSE."""
    return torch.minimum(snr, torch.full_like(snr, gamma)) / prediction.x0_mse_factor(snr)


def snr_of(abar: Tensor) -> Tensor:
    """SNR(t) = abar_t / (1 - abar_t) (Kingma et al. 2021, eq. 1 with alpha^2 = abar, sigma^2 = 1 - abar)."""
    return abar / (1.0 - abar)


def weighted_mse(out: Tensor, target: Tensor, weight: Optional[Tensor]) -> Tensor:
    """mean ||out - target||^2 (weight None: the seed's ``F.mse_loss``), else mean_b w_b mean_chw (out - target)^2."""
    out, target = out.float(), target.float()
    if weight is None:
        return torch.nn.functional.mse_loss(out, target)
    per_sample = (out - target).pow(2).flatten(1).mean(1)
    return (weight.reshape(-1).float() * per_sample).mean()
