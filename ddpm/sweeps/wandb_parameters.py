"""The ``parameters:`` of a W&B sweep file (``ddpm.sweeps.wandb_format``): each W&B distribution mapped by one
converter (a registry) onto a native ``space:`` entry (``ddpm.sweeps.space``), or onto a fixed override
(``value:``). The laws are W&B's own (``src/sweeps/params.py`` of wandb/sweeps): log_uniform is exp(U(min, max)),
inv_log_uniform_values is 1/X with X log-uniform on [1/max, 1/min] (the log-uniform law on [min, max]),
q_uniform is round(U(min, max)/q)*q, and W&B's grid lists q_uniform as numpy.arange(min, max, q).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ddpm.config import _from_dict, _show, _unknown_in_section
from ddpm.errors import ConfigError
from ddpm.registry import Registry

GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")   # what W&B's grid accepts
NO_COUNTERPART = {
    "categorical_w_probabilities": "Optuna's samplers draw categories without per-value probabilities",
    **{d: "Optuna's distributions are bounded (uniform, log-uniform, stepped, categorical); there is no normal, "
          "log-normal or beta prior" for d in ("normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta")},
}


def no_counterpart(where: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{where} = {_show(value)}: a W&B sweep feature with no counterpart here ({why})")


@dataclass
class WandbParameter:
    distribution: Optional[str] = None
    value: Any = None
    values: Optional[list[Any]] = None
    probabilities: Any = None
    min: Any = None                     # a number; whether it is an integer decides int_uniform vs uniform
    max: Any = None
    q: Any = None
    mu: Any = None
    sigma: Any = None
    a: Any = None
    b: Any = None


# ----------------------------------------------------------------------------------------------
# parameters: one converter per W&B distribution (a registry); each returns a native space entry, or a
# Constant (a fixed override)


@dataclass(frozen=True)
class Constant:
    value: Any


Converter = Callable[[WandbParameter, str, str], Any]    # (parameter, where, method) -> space entry | Constant
DISTRIBUTIONS: Registry[Converter] = Registry("W&B distribution")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where} = {_show(value)}: expected a finite number")
    return value


def _bounds(p: WandbParameter, where: str) -> tuple[float, float]:
    low, high = _number(p.min, f"{where}.min"), _number(p.max, f"{where}.max")
    if low > high:
        raise ConfigError(f"{where}: min ({low}) must be <= max ({high})")
    return low, high


def _positive(low: float, where: str) -> None:
    if low <= 0:
        raise ConfigError(f"{where}.min = {low}: a log scale needs min > 0")


@DISTRIBUTIONS.register("constant", keys=("value",))
def _constant(p: WandbParameter, where: str, method: str) -> Any:
    return Constant(p.value)


@DISTRIBUTIONS.register("categorical", keys=("values",))
def _categorical(p: WandbParameter, where: str, method: str) -> Any:
    return {"type": "categorical", "choices": p.values}


@DISTRIBUTIONS.register("int_uniform", keys=("min", "max"))
def _int_uniform(p: WandbParameter, where: str, method: str) -> Any:
    low, high = _bounds(p, where)
    if not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: int_uniform needs integer min and max (got {low}, {high})")
    return {"type": "int", "low": int(low), "high": int(high)}


@DISTRIBUTIONS.register("uniform", keys=("min", "max"))
def _uniform(p: WandbParameter, where: str, method: str) -> Any:
    low, high = _bounds(p, where)
    return {"type": "float", "low": float(low), "high": float(high)}


@DISTRIBUTIONS.register("log_uniform_values", "inv_log_uniform_values", keys=("min", "max"))
def _log_uniform_values(p: WandbParameter, where: str, method: str) -> Any:
    # inv_log_uniform_values: 1/X with X log-uniform on [1/max, 1/min], the same law as log-uniform on [min, max]
    low, high = _bounds(p, where)
    _positive(low, where)
    return {"type": "float", "low": float(low), "high": float(high), "log": True}


@DISTRIBUTIONS.register("log_uniform", keys=("min", "max"))
def _log_uniform(p: WandbParameter, where: str, method: str) -> Any:
    low, high = _bounds(p, where)      # exponents: X = exp(U(min, max))
    return {"type": "float", "low": math.exp(low), "high": math.exp(high), "log": True}


@DISTRIBUTIONS.register("inv_log_uniform", keys=("min", "max"))
def _inv_log_uniform(p: WandbParameter, where: str, method: str) -> Any:
    low, high = _bounds(p, where)      # X = exp(-U(min, max))
    return {"type": "float", "low": math.exp(-high), "high": math.exp(-low), "log": True}


def _multiple(x: float, q: float) -> bool:
    return math.isclose(x / q, round(x / q), rel_tol=0, abs_tol=1e-9)


@DISTRIBUTIONS.register("q_uniform", keys=("min", "max", "q"))
def _q_uniform(p: WandbParameter, where: str, method: str) -> Any:
    low, high = _bounds(p, where)
    q = _number(p.q if p.q is not None else 1, f"{where}.q")
    if q <= 0:
        raise ConfigError(f"{where}.q = {q}: must be > 0")
    if not (_multiple(low, q) and _multiple(high, q)):
        raise no_counterpart(f"{where}", {"min": low, "max": high, "q": q}, "W&B rounds to multiples of q counted "
                              "from 0, Optuna steps by q from min; make min and max multiples of q")
    if method == "grid":  # W&B's grid lists numpy.arange(min, max, q): max itself is not a grid point
        high = low + q * max(math.ceil((high - low) / q - 1e-9) - 1, 0)
    if all(float(x).is_integer() for x in (low, high, q)):
        return {"type": "int", "low": int(low), "high": int(high), "step": int(q)}
    return {"type": "float", "low": float(low), "high": float(high), "step": float(q)}


@DISTRIBUTIONS.register("q_log_uniform_values", "q_log_uniform", keys=("min", "max", "q"))
def _q_log_uniform(p: WandbParameter, where: str, method: str) -> Any:
    low, high = _bounds(p, where)
    if p.distribution == "q_log_uniform":  # exponents
        low, high = math.exp(low), math.exp(high)
    else:
        _positive(low, where)
    q = p.q if p.q is not None else 1
    ints = all(math.isclose(x, round(x), rel_tol=1e-9) for x in (low, high))
    if q != 1 or not ints:
        raise no_counterpart(f"{where}.q", q, "Optuna cannot combine a step with a log scale; q: 1 with integer "
                              "bounds is an integer log-uniform, else use log_uniform_values")
    return {"type": "int", "low": round(low), "high": round(high), "log": True}


def _inferred(raw: dict[str, Any], where: str) -> str:
    """W&B's default distribution: values -> categorical, value -> constant, integer min/max -> int_uniform,
    other min/max -> uniform."""
    if "values" in raw:
        return "categorical_w_probabilities" if "probabilities" in raw else "categorical"
    if "value" in raw:
        return "constant"
    if "min" in raw and "max" in raw:
        ints = all(isinstance(raw[k], int) and not isinstance(raw[k], bool) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    raise ConfigError(f"{where}: give values: [...], value: x, or min and max (with a distribution); "
                      f"got {_show(raw)}")


def parse_parameter(key: str, raw: dict[str, Any], method: str, src: str) -> Any:
    where = f"{src}: parameters.{key}"
    p: WandbParameter = _from_dict(WandbParameter, raw, f"parameters.{key}.", src, _unknown_in_section)
    dist = p.distribution if p.distribution is not None else _inferred(raw, where)
    if dist in NO_COUNTERPART:
        raise no_counterpart(f"{where}.distribution", dist, NO_COUNTERPART[dist])
    converter = DISTRIBUTIONS.lookup(dist, f"{where}.distribution")
    keys = DISTRIBUTIONS.meta[dist]["keys"]
    for k in raw:
        if k != "distribution" and k not in keys:
            raise ConfigError(f"{where}.{k}: not a key of distribution {dist} (its keys: {', '.join(keys)})")
    for k in keys:
        if k not in raw and k != "q":
            raise ConfigError(f"{where}: distribution {dist} needs '{k}'")
    if method == "grid" and dist not in GRID_DISTRIBUTIONS:
        raise ConfigError(f"{where}.distribution = {dist!r} with method grid: a grid (W&B's and ours) takes "
                          f"{', '.join(GRID_DISTRIBUTIONS)} only")
    return converter(p, where, method)


def flatten_parameters(params: Any, prefix: str, src: str) -> list[tuple[str, dict[str, Any]]]:
    """Dotted keys and nested ``parameters:`` mappings, as one list of (dotted key, entry)."""
    where = f"{src}: parameters{'.' + prefix.rstrip('.') if prefix else ''}"
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{where} must be a non-empty mapping of config keys, got {_show(params)}")
    out: list[tuple[str, dict[str, Any]]] = []
    for k, v in params.items():
        key = f"{prefix}{k}"
        if not isinstance(v, dict):
            raise ConfigError(f"{src}: parameters.{key} must be a mapping like {{values: [...]}} or "
                              f"{{min: 0.0, max: 1.0}}, got {_show(v)}")
        if "parameters" in v:
            if len(v) != 1:
                raise ConfigError(f"{src}: parameters.{key}: a nested parameters mapping holds nothing beside it "
                                  f"(found {', '.join(str(x) for x in v if x != 'parameters')})")
            out += flatten_parameters(v["parameters"], f"{key}.", src)
        else:
            out.append((key, v))
    return out
