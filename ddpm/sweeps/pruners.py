"""Optuna pruners by name (a registry): median, hyperband, successive_halving, none.

A pruner sees one intermediate value per epoch (the sweep's ``prune_on`` metric) and may stop a
trial early; Optuna prunes single-objective studies only.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import optuna

from ddpm.errors import ConfigError
from ddpm.registry import Registry

PRUNERS: Registry[type] = Registry("pruner")
register_pruner: Callable[[str], Callable[[type], type]] = PRUNERS.register


register_pruner("median")(optuna.pruners.MedianPruner)        # stop below the median of earlier trials at that epoch
register_pruner("hyperband")(optuna.pruners.HyperbandPruner)  # Li et al. 2018 (Hyperband)
register_pruner("successive_halving")(optuna.pruners.SuccessiveHalvingPruner)  # Li et al. 2020 (ASHA); W&B's "hyperband"
register_pruner("none")(optuna.pruners.NopPruner)


def check_pruner_kwargs(name: str, kwargs: dict[str, Any], where: str) -> None:
    params = inspect.signature(PRUNERS[name].__init__).parameters
    if any(p.kind is p.VAR_POSITIONAL for p in params.values()):  # NopPruner(*args, **kwargs)
        allowed: list[str] = []
    else:
        allowed = sorted(p for p in params if p != "self")
    for k in kwargs:
        if k not in allowed:
            opts = ", ".join(allowed) if allowed else "none"
            raise ConfigError(f"{where}: pruner {name} has no option '{k}' (allowed: {opts})")


def make_pruner(name: str, kwargs: dict[str, Any]) -> optuna.pruners.BasePruner:
    try:
        return PRUNERS.lookup(name, "pruner")(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"pruner {name}: {e}") from None
