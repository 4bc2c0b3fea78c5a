"""W&B sweep configuration files, read as sweep files: ``ddpm sweep wandb-sweep.yaml`` maps a W&B Sweeps YAML
(https://docs.wandb.ai/models/sweeps/sweep-config-keys) onto the native sweep mapping (``ddpm.sweeps.spec``) and
resolves that, so both formats give the same ``SweepSpec``. A file is W&B's when it has a top-level ``method``
or ``parameters`` and no ``space``::

    method: bayes                                 # grid -> sampler grid, random -> random, bayes -> tpe
    metric: {name: fid, goal: minimize}           # -> objectives (an OBJECTIVE_METRICS name or an alias)
    run_cap: 8                                    # -> n_trials (required for random and bayes)
    parameters:
      train.lr: {distribution: log_uniform_values, min: 1.0e-4, max: 3.0e-3}
      diffusion: {parameters: {schedule: {values: [linear, cosine]}}}   # nested: diffusion.schedule
      train.epochs: {value: 2}                    # a constant -> overrides
    early_terminate: {type: hyperband, min_iter: 1, eta: 3}
    ddpm: {base: ../experiments/cpu-quick.yaml, overrides: {...}, guidance: {...}}   # our extension

Parameters (named by dotted config keys, or nested ``parameters:`` mappings): ``values`` -> categorical;
``value`` -> a fixed override; ``min``/``max`` -> int (both integers) or float; ``distribution``: uniform,
int_uniform, log_uniform_values and inv_log_uniform_values (both log-uniform on [min, max]), log_uniform and
inv_log_uniform (the bounds are natural-log exponents), q_uniform (a step q; min and max multiples of q; under
``method: grid`` W&B's grid stops before max, as ``numpy.arange`` does, and so does ours), q_log_uniform(_values)
with q = 1 and integer bounds (an integer log-uniform). ``early_terminate: hyperband`` is W&B's asynchronous
successive halving (a run is stopped at epoch min_iter * eta^k unless in the top 1/eta there; W&B's
``hyperband_stopping.py``): Optuna's SuccessiveHalvingPruner(min_resource=min_iter, reduction_factor=eta), on
the per-epoch value of the metric (fid -> sample_fid, accuracy -> sample_accuracy, val_loss).

No base experiment in W&B's format: trials start from experiments/seed.yaml unless ``ddpm: {base: ...}`` names
one (relative to the file). ``ddpm:`` takes the native keys W&B has no word for (study, base, overrides,
guidance, prune_on, n_trials, timeout, storage, out_dir, report, confirm, enqueue, enqueue_baseline, heartbeat,
sampler options such as seed). ``program``/``command`` (the script W&B's agent starts) are not run: a trial
runs ddpm's train(). ``entity``/``project`` -> tracking.entity/project. A W&B feature without a counterpart
(normal or beta priors, per-value probabilities, metric.target/impute, method custom, ...) is a one-line error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

from ddpm.config import _from_dict, _show, _unknown_in_section
from ddpm.errors import ConfigError
from ddpm.sweeps.metrics import OBJECTIVE_METRICS
from ddpm.sweeps.wandb_parameters import Constant, flatten_parameters, no_counterpart, parse_parameter

DEFAULT_BASE = Path(__file__).resolve().parents[2] / "experiments" / "seed.yaml"
METHODS = {"grid": "grid", "random": "random", "bayes": "tpe"}          # W&B method -> our sampler
# W&B metric names a team may have logged -> ours (after lower-casing and dropping one prefix below)
METRIC_ALIASES = {"validation_loss": "val_loss", "valid_loss": "val_loss", "val/loss": "val_loss",
                  "val/noise_loss": "val_loss", "test/noise_loss": "test_loss", "acc": "accuracy",
                  "val_accuracy": "accuracy", "val_acc": "accuracy", "sampling_seconds": "sample_seconds"}
METRIC_PREFIXES = ("objective/", "best/", "eval/", "summary/")
PRUNE_ON = {"fid": "sample_fid", "accuracy": "sample_accuracy", "val_loss": "val_loss", "test_loss": "test_loss"}
# native keys the W&B file itself gives (not allowed under ddpm:) -> the W&B key that gives them
GIVEN_BY = {"space": "parameters", "objectives": "metric", "pruner": "early_terminate", "description": "description"}


def is_wandb_sweep(raw: dict[str, Any]) -> bool:
    return ("method" in raw or "parameters" in raw) and "space" not in raw


# ----------------------------------------------------------------------------------------------
# the W&B file as written: each key's type (W&B's JSON schema, src/sweeps/config/schema.json)


@dataclass
class WandbMetric:
    name: str
    goal: Optional[str] = None          # W&B's default: minimize
    target: Any = None                  # no counterpart: W&B stops the sweep once a run reaches it
    impute: Any = None                  # no counterpart: Optuna's samplers skip failed trials
    impute_while_running: Any = None


@dataclass
class WandbEarlyTerminate:
    type: Optional[str] = None
    min_iter: Optional[int] = None
    max_iter: Optional[int] = None
    s: Any = None                       # a number (W&B: the count of bands below max_iter)
    eta: float = 3
    strict: bool = True                 # W&B's own stopping code does not read it


@dataclass
class WandbSweepFile:
    method: Any = None
    metric: Optional[WandbMetric] = None
    parameters: Any = None
    early_terminate: Optional[WandbEarlyTerminate] = None
    run_cap: Optional[int] = None
    name: Optional[str] = None
    description: Any = ""
    program: Optional[str] = None       # the script W&B's agent would start: not run (trials run ddpm's train())
    command: Optional[list[Any]] = None
    entity: Optional[str] = None        # -> tracking.entity
    project: Optional[str] = None       # -> tracking.project
    apiVersion: Any = None
    kind: Any = None
    metrics: Any = None                 # the rest: no counterpart
    scheduler: Any = None
    controller: Any = None
    job: Any = None
    image_uri: Any = None
    ddpm: Optional[dict[str, Any]] = None   # our extension: native sweep keys


METRIC_UNMAPPED = {"target": "a study ends by its run_cap or ddpm.timeout, not when a trial reaches a value",
                   "impute": "Optuna's samplers leave failed trials out instead of imputing a value",
                   "impute_while_running": "Optuna's samplers see finished trials only"}
UNMAPPED = {"metrics": "several objectives: write a native sweep file with objectives: [...]",
            "scheduler": "ddpm runs its own Optuna study", "controller": "ddpm runs its own Optuna study",
            "job": "trials run ddpm's train(), not a Launch job", "image_uri": "trials run ddpm's train(), not an image"}


# ----------------------------------------------------------------------------------------------
# the whole file -> the native sweep mapping


def _metric_name(name: str, src: str) -> str:
    n = name.strip().lower().replace("-", "_")
    for prefix in ("",) + METRIC_PREFIXES:
        if prefix and not n.startswith(prefix):
            continue
        bare = n[len(prefix):]
        found = bare if bare in OBJECTIVE_METRICS else METRIC_ALIASES.get(bare)
        if found is not None:
            return found
    raise ConfigError(f"{src}: metric.name = {name!r}: not a metric ddpm scores trials on; use one of "
                      f"{', '.join(OBJECTIVE_METRICS)}")


def _objective(m: Optional[WandbMetric], src: str) -> Optional[dict[str, str]]:
    if m is None:
        return None
    for k, why in METRIC_UNMAPPED.items():
        if getattr(m, k) is not None:
            raise no_counterpart(f"{src}: metric.{k}", getattr(m, k), why)
    name = _metric_name(m.name, src)
    if m.goal is not None and m.goal not in ("minimize", "maximize"):
        raise ConfigError(f"{src}: metric.goal = {_show(m.goal)}: must be minimize or maximize")
    if m.goal is None and OBJECTIVE_METRICS[name].direction == "maximize":
        raise ConfigError(f"{src}: metric.goal is missing: W&B then minimizes, but {name} is better higher; write "
                          f"goal: maximize (or goal: minimize to keep W&B's default)")
    return {"metric": name, "direction": m.goal or "minimize"}


def _pruner(et: Optional[WandbEarlyTerminate], objective: Optional[dict[str, str]], src: str) -> Any:
    """W&B's hyperband (asynchronous successive halving at epochs min_iter * eta^k) -> Optuna's
    SuccessiveHalvingPruner (Li et al. 2018, ASHA; Jamieson & Talwalkar 2016)."""
    if et is None:
        return "none"
    where = f"{src}: early_terminate"
    if et.type != "hyperband":
        raise ConfigError(f"{where}.type = {_show(et.type)}: W&B's only early_terminate type is hyperband")
    if objective is None:
        raise ConfigError(f"{where}: hyperband stops runs by the metric; add metric: {{name: fid, goal: minimize}}")
    if et.max_iter is not None or et.s is not None:
        hint = ""
        if et.max_iter is not None and isinstance(et.s, (int, float)):  # W&B's bands: max_iter / eta^i, i = 1..s (>= 1)
            bands = sorted(int(et.max_iter / et.eta ** i) for i in range(1, int(et.s) + 1) if et.max_iter / et.eta ** i >= 1)
            hint = f"; here W&B's bands are epochs {', '.join(map(str, bands))}: write min_iter: {bands[0]}" if bands else ""
        raise no_counterpart(f"{where}.max_iter/s", [et.max_iter, et.s], "successive halving is set by its "
                              f"first band and has no last one{hint}")
    if et.min_iter is None or et.min_iter < 1:
        raise ConfigError(f"{where}.min_iter = {_show(et.min_iter)}: the first epoch at which runs may stop (>= 1)")
    if not float(et.eta).is_integer() or et.eta < 2:
        raise no_counterpart(f"{where}.eta", et.eta, "Optuna's successive halving keeps the top 1/eta for an "
                              "integer eta >= 2")
    return {"name": "successive_halving", "min_resource": et.min_iter, "reduction_factor": int(et.eta),
            "min_early_stopping_rate": 0}


def _check_unmapped(f: WandbSweepFile, src: str) -> None:
    for k, why in UNMAPPED.items():
        if getattr(f, k) is not None:
            raise no_counterpart(f"{src}: {k}", getattr(f, k), why)
    if f.method not in METHODS:
        if f.method == "custom":
            raise no_counterpart(f"{src}: method", f.method, "ddpm runs its own Optuna study; use grid, random or bayes")
        raise ConfigError(f"{src}: method = {_show(f.method)}: must be one of {', '.join(METHODS)}")


def _extension(ext: Optional[dict[str, Any]], method: str, src: str) -> dict[str, Any]:
    """``ddpm:``: native sweep keys W&B has no word for; the sampler given as options of the method's sampler."""
    from ddpm.sweeps.spec import SweepFile

    ext = dict(ext or {})
    allowed = [f.name for f in fields(SweepFile) if f.name not in GIVEN_BY]
    for k in ext:
        if k in GIVEN_BY:
            raise ConfigError(f"{src}: ddpm.{k}: given by the W&B key {GIVEN_BY[k]}; set it there")
        if k not in allowed:
            raise _unknown_in_section(src, "ddpm.", k, allowed)
    options = ext.pop("sampler", None) or {}
    if not isinstance(options, dict) or "name" in options:
        raise ConfigError(f"{src}: ddpm.sampler = {_show(options)}: options of the sampler method {method} picks "
                          f"(e.g. {{seed: 0}}); the sampler itself is set by method")
    ext["sampler"] = {"name": METHODS[method], "seed": 0, **options}
    return ext


def _space(f: WandbSweepFile, overrides: dict[str, Any], src: str) -> dict[str, Any]:
    from ddpm.sweeps.spec import _check_config_key

    space: dict[str, Any] = {}
    for key, raw in flatten_parameters(f.parameters, "", src):
        _check_config_key(key, f"{src}: parameters")
        entry = parse_parameter(key, raw, f.method, src)
        if isinstance(entry, Constant):
            if key in overrides:
                raise ConfigError(f"{src}: parameters.{key} (a constant) is also set in ddpm.overrides; keep one")
            overrides[key] = entry.value
        else:
            space[key] = entry
    if not space:
        raise ConfigError(f"{src}: parameters: every parameter is a constant (value:); search at least one, e.g. "
                          f"train.lr: {{distribution: log_uniform_values, min: 1.0e-4, max: 3.0e-3}}")
    return space


def wandb_to_native(raw: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The W&B file as a native sweep mapping, and where each native key came from (for error messages)."""
    src = str(path)
    f: WandbSweepFile = _from_dict(WandbSweepFile, raw, "", src, _unknown_in_section)
    _check_unmapped(f, src)
    native = _extension(f.ddpm, f.method, src)
    origin = {k: f"ddpm.{k}" for k in native}
    overrides = native.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{src}: ddpm.overrides must be a mapping of config keys, got {_show(overrides)}")
    overrides = dict(overrides)
    for k in ("entity", "project"):
        if getattr(f, k) is not None:
            if f"tracking.{k}" in overrides:
                raise ConfigError(f"{src}: {k} is also set as tracking.{k} in ddpm.overrides; keep one")
            overrides[f"tracking.{k}"] = getattr(f, k)
    native["space"] = _space(f, overrides, src)
    native["overrides"] = overrides
    objective = _objective(f.metric, src)
    if objective is None and f.method == "bayes":
        raise ConfigError(f"{src}: method bayes needs metric (what it optimizes), e.g. metric: {{name: fid, goal: minimize}}")
    if objective is not None:
        native["objectives"] = [objective]
    native["pruner"] = _pruner(f.early_terminate, objective, src)
    if native["pruner"] != "none" and "prune_on" not in native:
        if objective["metric"] not in PRUNE_ON:
            raise ConfigError(f"{src}: early_terminate with metric {objective['metric']}: no per-epoch value to stop "
                              f"runs on; per-epoch metrics: {', '.join(PRUNE_ON)}")
        native["prune_on"] = PRUNE_ON[objective["metric"]]
    _budget(f, native, src)
    native.setdefault("study", f.name if f.name is not None else path.stem)
    native.setdefault("base", str(DEFAULT_BASE))
    native["description"] = f.description
    origin.update(space="parameters", objectives="metric", pruner="early_terminate",
                  study=origin.get("study", "name"), n_trials=origin.get("n_trials", "run_cap"),
                  sampler=origin.get("sampler", "method"))
    return native, origin


def _budget(f: WandbSweepFile, native: dict[str, Any], src: str) -> None:
    if f.run_cap is not None:
        if "n_trials" in native:
            raise ConfigError(f"{src}: run_cap and ddpm.n_trials both set the number of trials; keep one")
        native["n_trials"] = f.run_cap
    elif f.method != "grid" and native.get("n_trials") is None and native.get("timeout") is None:
        raise ConfigError(f"{src}: method {f.method} without run_cap: W&B would run until stopped; set run_cap "
                          f"(the number of trials) or ddpm: {{timeout: seconds}}")
    if "base" not in native and not DEFAULT_BASE.is_file():
        raise ConfigError(f"{src}: a W&B sweep file has no base experiment and the default {DEFAULT_BASE} is "
                          f"missing; name one: ddpm: {{base: path/to/experiment.yaml}}")


def load_wandb_sweep(raw: dict[str, Any], path: Path, storage: Optional[str] = None) -> Any:
    """The ``SweepSpec`` of a W&B sweep file: mapped, then resolved as the native file would be; an error about
    a native key names the W&B key it came from."""
    from ddpm.sweeps.spec import sweep_from_dict

    native, origin = wandb_to_native(raw, path)
    try:
        return sweep_from_dict(native, path, storage)
    except ConfigError as e:
        raise ConfigError(_renamed(str(e), str(path), origin)) from None


def _renamed(message: str, src: str, origin: dict[str, str]) -> str:
    """``src: space.x ...`` -> ``src: parameters.x ...``: the key as the W&B file spells it."""
    m = re.match(rf"{re.escape(src)}: ([A-Za-z_]+)(\[0\]\.metric)?", message)
    if m is None or m.group(1) not in origin:
        return message
    return f"{src}: {origin[m.group(1)]}{message[m.end():]}"
