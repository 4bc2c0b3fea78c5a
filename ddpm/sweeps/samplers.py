"""Optuna samplers by name (a registry): tpe, random, grid (enqueued points only), cmaes, nsga2.

Each factory gets the sampler's YAML mapping minus ``name`` (``seed`` and any constructor keyword of
the Optuna class) and the search space; adding one is one function plus ``@register_sampler``.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import optuna

from ddpm.errors import ConfigError
from ddpm.registry import Registry

SamplerFactory = Callable[[dict[str, Any], dict[str, Any], int], optuna.samplers.BaseSampler]
OPTUNA_SAMPLERS: Registry[SamplerFactory] = Registry("Optuna sampler")
SAMPLER_CLASSES = OPTUNA_SAMPLERS.meta_of("cls")


def register_sampler(name: str, cls: type) -> Callable[[SamplerFactory], SamplerFactory]:
    return OPTUNA_SAMPLERS.register(name, cls=cls)


@register_sampler("tpe", optuna.samplers.TPESampler)
def _tpe(kwargs: dict[str, Any], space: dict[str, Any], n_objectives: int) -> optuna.samplers.BaseSampler:
    # Bergstra et al. 2011 (TPE); a few random start-up trials suit short CPU studies
    kwargs = {"n_startup_trials": 2, **kwargs}
    return optuna.samplers.TPESampler(**kwargs)


@register_sampler("random", optuna.samplers.RandomSampler)
def _random(kwargs: dict[str, Any], space: dict[str, Any], n_objectives: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(**kwargs)


class EnqueuedOnlySampler(optuna.samplers.BaseSampler):
    """``sampler: grid``: serves only the points enqueued when the study was created (``ddpm.sweeps.grid``),
    each a waiting trial that the storage hands to one worker; asked for a fresh point, it raises.

    ``seed`` orders the enqueued grid (a seeded shuffle); it is not offset per worker or per resume.
    """

    def __init__(self, seed: Optional[int] = None) -> None:
        self.seed = seed

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return {}

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        raise RuntimeError(f"sampler grid: trial {trial.number} is not an enqueued grid point (asked for "
                           f"{param_name}); grid workers only run the study's waiting trials")


@register_sampler("grid", EnqueuedOnlySampler)
def _grid(kwargs: dict[str, Any], space: dict[str, Any], n_objectives: int) -> optuna.samplers.BaseSampler:
    grid_values(space)  # a continuous key is an error here, not in the first trial
    return EnqueuedOnlySampler(**kwargs)


@register_sampler("cmaes", optuna.samplers.CmaEsSampler)
def _cmaes(kwargs: dict[str, Any], space: dict[str, Any], n_objectives: int) -> optuna.samplers.BaseSampler:
    # Hansen 2016 (CMA-ES); needs the `cmaes` package; categorical keys fall back to random sampling
    try:
        import cmaes  # noqa: F401
    except ImportError:
        raise ConfigError("sampler cmaes needs the 'cmaes' package: pip install cmaes "
                          "(or choose tpe, random, grid, nsga2)") from None
    return optuna.samplers.CmaEsSampler(warn_independent_sampling=False, **kwargs)


@register_sampler("nsga2", optuna.samplers.NSGAIISampler)
def _nsga2(kwargs: dict[str, Any], space: dict[str, Any], n_objectives: int) -> optuna.samplers.BaseSampler:
    # Deb et al. 2002 (NSGA-II), multi-objective
    return optuna.samplers.NSGAIISampler(**kwargs)


def grid_values(space: dict[str, Any]) -> dict[str, list[Any]]:
    """Every value of every key of a finite space (categorical, or int/float with a step)."""
    out: dict[str, list[Any]] = {}
    for key, searched in space.items():
        values = searched.finite_values()
        if values is None:
            raise ConfigError(f"sampler grid needs a finite space: {key} is a continuous {searched.kind}; "
                              f"make it type: categorical with the values to try")
        out[key] = values
    return out


def check_sampler_kwargs(name: str, kwargs: dict[str, Any], where: str) -> None:
    params = inspect.signature(SAMPLER_CLASSES[name].__init__).parameters
    allowed = sorted(p for p in params if p not in ("self", "search_space") and not p.startswith("_"))
    for k in kwargs:
        if k not in allowed:
            raise ConfigError(f"{where}: sampler {name} has no option '{k}' (allowed: {', '.join(allowed)})")


def make_optuna_sampler(name: str, kwargs: dict[str, Any], space: dict[str, Any], n_objectives: int
                 ) -> optuna.samplers.BaseSampler:
    if name not in OPTUNA_SAMPLERS:
        raise ConfigError(f"sampler {name!r} is unknown; valid: {', '.join(sorted(OPTUNA_SAMPLERS))}")
    try:
        return OPTUNA_SAMPLERS[name](dict(kwargs), space, n_objectives)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"sampler {name}: {e}") from None
