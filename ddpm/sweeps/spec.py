"""The sweep file (``sweeps/*.yaml``): schema, defaults and validation, one-line errors.

A sweep names a study, a base experiment (``experiments/*.yaml``, relative to the sweep file), fixed
overrides, a search space over dotted config keys, the guidance grid each trial is scored on, the
objective(s), the Optuna sampler and pruner, and the budget (``n_trials`` and/or ``timeout``)::

    study: quickstart
    base: ../experiments/cpu-quick.yaml
    overrides: {train.epochs: 3}
    space:
      diffusion.schedule: {type: categorical, choices: [linear, cosine]}
      train.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      diffusion.T: {type: int, low: 100, high: 400, step: 100}
      diffusion.beta_T: {type: float, low: 4.0e-2, high: 2.0e-1, log: true,
                         when: {diffusion.schedule: [linear]}}   # conditional: cosine ignores beta_T
    guidance: {omegas: [0, 1, 2, 4], n: 200, sampler: ddim, steps: 50}
    objectives: [{metric: fid, direction: minimize}]
    sampler: {name: tpe, seed: 0}
    pruner: {name: median, n_warmup_steps: 1}
    prune_on: sample_fid
    n_trials: 4
"""
from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ddpm.config import ExperimentConfig, _show, config_from_dict, get_dotted, load_config, read_yaml
from ddpm.errors import ConfigError
from ddpm.sweeps.confirm import ConfirmSpec, parse_confirm
from ddpm.sweeps.metrics import OBJECTIVE_METRICS, PRUNE_METRICS, ObjectiveMetric, PruneMetric
from ddpm.sweeps.pruners import PRUNERS, check_pruner_kwargs
from ddpm.sweeps.samplers import SAMPLERS, check_sampler_kwargs

TOP_KEYS = ("study", "description", "base", "overrides", "space", "guidance", "objectives", "sampler",
            "pruner", "prune_on", "n_trials", "timeout", "enqueue_baseline", "enqueue", "storage",
            "heartbeat", "out_dir", "report", "confirm")
DIRECTIONS = ("minimize", "maximize")


def _unknown(where: str, key: Any, allowed: tuple[str, ...] | list[str]) -> ConfigError:
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
    return ConfigError(f"{where}: unknown key '{key}'{hint}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    return value


def _component(raw: dict[str, Any], key: str, default: dict[str, Any], registry: Any, check: Any,
               src: str) -> tuple[str, dict[str, Any]]:
    """``sampler:`` / ``pruner:`` as a name or a mapping {name, **options}: (registered name, checked options)."""
    v = raw.get(key, default)
    opts = {"name": v} if isinstance(v, str) else dict(_mapping(v, f"{src}: {key}"))
    name = opts.pop("name", default["name"])
    if not isinstance(name, str) or name not in registry:
        raise ConfigError(f"{src}: {key}.name = {_show(name)}: unknown; valid: {', '.join(sorted(registry))}")
    _finite_options(opts, f"{src}: {key}")
    check(name, opts, f"{src}: {key}")
    return name, opts


def _number(value: Any, where: str, integer: bool = False) -> float | int:
    """A finite number (``1e6`` is accepted for an integer when integral); anything else is a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} = {_show(value)}: expected {'an integer' if integer else 'a number'}")
    if not math.isfinite(value):
        raise ConfigError(f"{where} = {value!r}: not a finite number; use a finite value")
    if integer and not float(value).is_integer():
        raise ConfigError(f"{where} = {value!r}: expected an integer")
    return int(value) if integer else float(value)


def _name(value: Any, where: str, registry: Any) -> str:
    """A registered name: anything else (a list, a mapping, a number, an unknown string) is a ConfigError."""
    if not isinstance(value, str) or value not in registry:
        raise ConfigError(f"{where} = {_show(value)}: unknown; valid: {', '.join(registry)}")
    return value


def _finite_options(opts: dict[str, Any], where: str) -> None:
    """Sampler/pruner options: Optuna takes them as given, so NaN/inf (or a non-string key) are refused here."""
    for k, v in opts.items():
        if not isinstance(k, str):
            raise ConfigError(f"{where}: option {_show(k)} is not a name")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{where}.{k} = {v!r}: not a finite number; use a finite value")


# ----------------------------------------------------------------------------------------------
# search space


def _same(a: Any, b: Any) -> bool:
    """YAML scalar equality where true is not 1 (a categorical may hold both) and a stepped float's
    0.30000000000000004 is the 0.3 a user wrote."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@dataclass(frozen=True)
class Distribution:
    """One searched key: float (optionally log or stepped), int (optionally stepped or log), categorical.

    ``when`` makes it conditional (an Optuna define-by-run conditional space): ((earlier key, allowed
    values), ...); the key is suggested only when every named earlier key took one of its values,
    otherwise the base config's value is used and the trial has no such param."""
    type: str
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[float] = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def active(self, params: dict[str, Any]) -> bool:
        """Whether this key is searched, given the values already chosen for earlier keys."""
        return all(k in params and any(_same(params[k], v) for v in values) for k, values in self.when)

    def suggest(self, trial: Any, name: str) -> Any:
        if self.type == "float":
            return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_categorical(name, list(self.choices))

    def finite_values(self) -> Optional[list[Any]]:
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int" and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.type == "float" and self.step is not None and not self.log:
            n = int(math.floor((self.high - self.low) / self.step + 1e-9))
            return [self.low + i * self.step for i in range(n + 1)]
        return None

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.type == "categorical":
            return f"choices {list(self.choices)}"
        extra = " log" if self.log else (f" step {self.step:g}" if self.step else "")
        return f"{self.type} {self.low:g}..{self.high:g}{extra}"

    def describe_when(self) -> str:
        return " and ".join(f"{k} in {list(v)}" for k, v in self.when)


DIST_KEYS = {"float": ("type", "low", "high", "step", "log", "when"),
             "int": ("type", "low", "high", "step", "log", "when"),
             "categorical": ("type", "choices", "when")}


def suggest_params(space: dict[str, Distribution], trial: Any) -> dict[str, Any]:
    """Suggest the space's keys in order, skipping a conditional key whose ``when`` is not met."""
    params: dict[str, Any] = {}
    for key, dist in space.items():
        if dist.active(params):
            params[key] = dist.suggest(trial, key)
    return params


def _parse_when(value: Any, where: str, earlier: dict[str, Distribution]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``when: {earlier.key: [values]}``: each key searched above this one, each value one it can take."""
    cond = _mapping(value, f"{where}.when")
    if not cond:
        raise ConfigError(f"{where}.when is empty; name an earlier key and its values, e.g. "
                          f"when: {{diffusion.schedule: [linear, quadratic]}}")
    out = []
    for k, vals in cond.items():
        k = str(k)
        if k not in earlier:
            listed = [e for e in earlier] or ["none: this is the first key"]
            raise ConfigError(f"{where}.when: '{k}' is not a key searched above this one (earlier keys: "
                              f"{', '.join(listed)}); a condition names a key listed before it in the space")
        finite = earlier[k].finite_values()
        if finite is None:
            raise ConfigError(f"{where}.when: '{k}' is a continuous {earlier[k].type}; a condition needs a key "
                              f"with listed values (categorical, or int with a step)")
        vals = vals if isinstance(vals, list) else [vals]
        if not vals:
            raise ConfigError(f"{where}.when.{k} = []: list the values of {k} for which this key is searched")
        for v in vals:
            if not any(_same(v, c) for c in finite):
                raise ConfigError(f"{where}.when.{k}: {v!r} is not a value {k} can take (its values: {finite})")
        out.append((k, tuple(vals)))
    return tuple(out)


def parse_distribution(value: Any, where: str, earlier: Optional[dict[str, Distribution]] = None) -> Distribution:
    """One ``space:`` entry; ``earlier`` holds the keys listed above it (what a ``when`` may name)."""
    if isinstance(value, list):  # shorthand: a list is a categorical
        value = {"type": "categorical", "choices": value}
    d = _mapping(value, where)
    kind = d.get("type")
    if not isinstance(kind, str) or kind not in DIST_KEYS:
        raise ConfigError(f"{where}.type = {_show(kind)}: must be one of {', '.join(DIST_KEYS)}")
    for k in d:
        if k not in DIST_KEYS[kind]:
            raise _unknown(where, k, DIST_KEYS[kind])
    when = _parse_when(d["when"], where, earlier or {}) if "when" in d else ()
    if kind == "categorical":
        choices = d.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices = {choices!r}: must be a non-empty list")
        for c in choices:
            if c is not None and not isinstance(c, (bool, int, float, str)):
                raise ConfigError(f"{where}.choices: {_show(c)} is not a scalar (number, string, bool or null)")
            if isinstance(c, float) and not math.isfinite(c):
                raise ConfigError(f"{where}.choices: {c!r} is not a finite number; use finite values")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}.choices = {choices!r}: has duplicates")
        return Distribution("categorical", choices=tuple(choices), when=when)
    integer = kind == "int"
    for k in ("low", "high"):
        if k not in d:
            raise ConfigError(f"{where}: {kind} needs '{k}'")
    low = _number(d["low"], f"{where}.low", integer)
    high = _number(d["high"], f"{where}.high", integer)
    if low > high:
        raise ConfigError(f"{where}: low ({low}) must be <= high ({high})")
    log = d.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log = {log!r}: expected true or false")
    step = d.get("step")
    if step is not None:
        step = _number(step, f"{where}.step", integer)
        if step <= 0:
            raise ConfigError(f"{where}.step = {step}: must be > 0")
        if log:
            raise ConfigError(f"{where}: step and log cannot be combined (Optuna samples either a grid or a log scale)")
    if log and low <= 0:
        raise ConfigError(f"{where}: log scale needs low > 0 (got {low})")
    return Distribution(kind, low, high, step, log, when=when)


# ----------------------------------------------------------------------------------------------
# the sweep


@dataclass
class GuidanceSpec:
    omegas: list[float]
    n: int = 200                        # images per omega (n/num_classes per digit)
    sampler: str = "ddim"
    steps: Optional[int] = 50
    eta: float = 0.0
    select: Optional[str] = None        # metric choosing the best omega (default: the first guidance objective)
    seed: int = 0


@dataclass
class PruneSpec:
    metric: str = "sample_fid"
    n: int = 100                        # images per epoch for a sample metric
    steps: int = 20                     # sampler steps for a sample metric


@dataclass
class HeartbeatSpec:
    interval: int = 10                  # seconds between a running trial's heartbeats (RDB storages)
    grace_period: int = 30              # a trial silent for this long is failed and retried
    max_retry: int = 2


@dataclass
class SweepSpec:
    study: str
    path: Path                          # the sweep file
    base: Path                          # the base experiment, resolved
    space: dict[str, Distribution]
    overrides: dict[str, Any] = field(default_factory=dict)
    guidance: Optional[GuidanceSpec] = None
    objectives: list[tuple[ObjectiveMetric, str]] = field(default_factory=list)
    sampler: str = "tpe"
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    pruner: str = "none"
    pruner_kwargs: dict[str, Any] = field(default_factory=dict)
    prune: Optional[PruneSpec] = None
    n_trials: Optional[int] = None
    timeout: Optional[float] = None
    enqueue_baseline: bool = False
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    storage: Optional[str] = None
    heartbeat: HeartbeatSpec = field(default_factory=HeartbeatSpec)
    out_dir: str = "runs"
    report: bool = False
    confirm: Optional[ConfirmSpec] = None  # re-score the top trials on the test split after the study
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def directions(self) -> list[str]:
        return [d for _, d in self.objectives]

    @property
    def study_dir(self) -> Path:
        return Path(self.out_dir) / self.study

    def base_config(self, extra: Optional[dict[str, Any]] = None) -> ExperimentConfig:
        """The base experiment with the sweep's overrides (and ``extra`` dotted keys) applied."""
        return load_config(self.base, extra={**self.overrides, **(extra or {})})

    def baseline_params(self) -> dict[str, Any]:
        """The base experiment's own value of every searched key (the baseline trial); a conditional key
        whose ``when`` the base's values do not meet is left out, as a trial would leave it."""
        cfg = self.base_config().to_dict()
        params: dict[str, Any] = {}
        for k, dist in self.space.items():
            if dist.active(params):
                params[k] = get_dotted(cfg, k)
        return params

    def grid_size(self) -> Optional[int]:
        if self.sampler != "grid":
            return None
        n = 1
        for d in self.space.values():
            n *= len(d.finite_values() or [])
        return n

    def objective_summary(self) -> list[dict[str, str]]:
        return [{"metric": m.name, "direction": d} for m, d in self.objectives]


def _config_keys() -> dict[str, Any]:
    return ExperimentConfig().to_dict()


def _check_config_key(key: str, where: str) -> None:
    defaults = _config_keys()
    node: Any = defaults
    parts = key.split(".")
    for i, p in enumerate(parts):
        if not isinstance(node, dict) or p not in node:
            siblings = list(node) if isinstance(node, dict) else []
            prefix = ".".join(parts[:i])
            options = [f"{prefix}.{s}" if prefix else s for s in siblings]
            close = difflib.get_close_matches(key, options, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: '{key}' is not a config key{hint}")
        node = node[p]
    if isinstance(node, dict):
        raise ConfigError(f"{where}: '{key}' is a config section, not a key; search one of its keys "
                          f"({', '.join(f'{key}.{k}' for k in node)})")
    if key in ("name", "out_dir"):
        raise ConfigError(f"{where}: '{key}' is set by the sweep (runs/<study>/trial-<n>) and cannot be searched")


def load_sweep(path: str | Path, storage: Optional[str] = None) -> SweepSpec:
    """Read and validate a sweep file; ``storage`` (the --storage flag) overrides the file's."""
    path = Path(path)
    raw = read_yaml(path)
    src = str(path)
    for k in raw:
        if k not in TOP_KEYS:
            raise _unknown(src, k, TOP_KEYS)
    study = raw.get("study")
    if not isinstance(study, str) or not study or "/" in study or study in (".", ".."):
        raise ConfigError(f"{src}: study = {study!r}: must be a non-empty name without '/'")
    if "base" not in raw or not isinstance(raw["base"], str):
        raise ConfigError(f"{src}: base = {raw.get('base')!r}: must name an experiment file, e.g. ../experiments/cpu-quick.yaml")
    base = (path.parent / raw["base"]).resolve()
    if not base.is_file():
        raise ConfigError(f"{src}: base = {raw['base']!r}: no such file ({base})")

    overrides = _mapping(raw.get("overrides"), f"{src}: overrides")
    for k in overrides:
        _check_config_key(str(k), f"{src}: overrides")
    space_raw = _mapping(raw.get("space"), f"{src}: space")
    if not space_raw:
        raise ConfigError(f"{src}: space is empty; search at least one config key, e.g. "
                          f"train.lr: {{type: float, low: 1.0e-4, high: 3.0e-3, log: true}}")
    space: dict[str, Distribution] = {}
    for k, v in space_raw.items():
        _check_config_key(str(k), f"{src}: space")
        space[str(k)] = parse_distribution(v, f"{src}: space.{k}", earlier=dict(space))

    spec = SweepSpec(study=study, path=path, base=base, space=space, overrides=dict(overrides))
    desc = raw.get("description") or ""
    if not isinstance(desc, (str, int, float)):
        raise ConfigError(f"{src}: description = {_show(desc)}: must be text")
    spec.description = str(desc)

    # the base + overrides must be a valid config before any trial runs
    try:
        base_cfg = spec.base_config()
    except ConfigError as e:
        raise ConfigError(f"{src}: base + overrides: {e}") from None
    _check_ignored_end_points(space, base_cfg.diffusion.schedule, src)

    # guidance grid (null: no grid; objectives must then come from the history)
    g = raw.get("guidance", {"omegas": [0.0, 0.5, 1.0, 2.0, 4.0]})
    if g is not None:
        gd = _mapping(g, f"{src}: guidance")
        allowed = tuple(GuidanceSpec.__dataclass_fields__)
        for k in gd:
            if k not in allowed:
                raise _unknown(f"{src}: guidance", k, allowed)
        omegas = gd.get("omegas", [0.0, 0.5, 1.0, 2.0, 4.0])
        if not isinstance(omegas, list) or not omegas:
            raise ConfigError(f"{src}: guidance.omegas = {omegas!r}: must be a non-empty list of numbers")
        omegas = [_number(w, f"{src}: guidance.omegas") for w in omegas]
        if any(w < 0 for w in omegas):
            raise ConfigError(f"{src}: guidance.omegas = {omegas}: guidance weights must be >= 0")
        gs = GuidanceSpec(omegas=omegas)
        if "n" in gd:
            gs.n = int(_number(gd["n"], f"{src}: guidance.n", True))
            if gs.n < 1:
                raise ConfigError(f"{src}: guidance.n = {gs.n}: must be >= 1")
        from ddpm.samplers import SAMPLERS as IMAGE_SAMPLERS
        gs.sampler = _name(gd.get("sampler", gs.sampler), f"{src}: guidance.sampler", sorted(IMAGE_SAMPLERS))
        if "steps" in gd:
            gs.steps = None if gd["steps"] is None else int(_number(gd["steps"], f"{src}: guidance.steps", True))
        if "eta" in gd:
            gs.eta = float(_number(gd["eta"], f"{src}: guidance.eta"))
            if gs.eta < 0:
                raise ConfigError(f"{src}: guidance.eta = {gs.eta}: must be >= 0 (DDIM stochasticity)")
        if "seed" in gd:
            gs.seed = int(_number(gd["seed"], f"{src}: guidance.seed", True))
        gs.select = gd.get("select")
        if gs.select is not None and not isinstance(gs.select, str):
            raise ConfigError(f"{src}: guidance.select = {_show(gs.select)}: must be a metric name")
        spec.guidance = gs

    # objectives
    objs = raw.get("objectives", [{"metric": "fid" if spec.guidance else "test_loss"}])
    if isinstance(objs, (str, dict)):
        objs = [objs]
    if not isinstance(objs, list) or not objs:
        raise ConfigError(f"{src}: objectives must be a non-empty list like [{{metric: fid, direction: minimize}}]")
    for i, o in enumerate(objs):
        where = f"{src}: objectives[{i}]"
        od = {"metric": o} if isinstance(o, str) else _mapping(o, where)
        for k in od:
            if k not in ("metric", "direction"):
                raise _unknown(where, k, ("metric", "direction"))
        name = _name(od.get("metric"), f"{where}.metric", list(OBJECTIVE_METRICS))
        metric = OBJECTIVE_METRICS[name]
        direction = od.get("direction", metric.direction)
        if not isinstance(direction, str) or direction not in DIRECTIONS:
            raise ConfigError(f"{where}.direction = {_show(direction)}: must be minimize or maximize")
        if metric.needs_guidance and spec.guidance is None:
            raise ConfigError(f"{where}.metric = {name!r} is read from the guidance grid, but guidance is null")
        if any(m.name == name for m, _ in spec.objectives):
            raise ConfigError(f"{where}.metric = {name!r}: listed twice")
        spec.objectives.append((metric, direction))
    if spec.guidance is not None:
        sel = spec.guidance.select
        if sel is None:
            sel = next((m.name for m, _ in spec.objectives if m.needs_guidance), "fid")
        if sel not in OBJECTIVE_METRICS or not OBJECTIVE_METRICS[sel].needs_guidance:
            valid = [m for m, v in OBJECTIVE_METRICS.items() if v.needs_guidance]
            raise ConfigError(f"{src}: guidance.select = {sel!r}: must be a guidance metric ({', '.join(valid)})")
        spec.guidance.select = sel

    # sampler and pruner
    spec.sampler, spec.sampler_kwargs = _component(raw, "sampler", {"name": "tpe", "seed": 0}, SAMPLERS,
                                                   check_sampler_kwargs, src)
    if spec.sampler == "grid":
        from ddpm.sweeps.samplers import grid_values

        conditional = [k for k, d in space.items() if d.when]
        if conditional:
            raise ConfigError(f"{src}: space.{conditional[0]}.when with sampler grid: a grid runs the full product "
                              f"of every key's values; use sampler random or tpe for a conditional space, or "
                              f"drop 'when' and list the combinations as separate studies")
        try:
            grid_values(space)
        except ConfigError as e:
            raise ConfigError(f"{src}: {e}") from None
    spec.pruner, spec.pruner_kwargs = _component(raw, "pruner", {"name": "none"}, PRUNERS, check_pruner_kwargs, src)
    if spec.pruner != "none" and len(spec.objectives) > 1:
        raise ConfigError(f"{src}: pruner = {spec.pruner!r} with {len(spec.objectives)} objectives: Optuna prunes "
                          f"single-objective studies only; use pruner: none")
    if spec.pruner != "none" or raw.get("prune_on") is not None:
        spec.prune = _parse_prune(raw.get("prune_on"), spec, src)

    # budget
    n_trials = raw.get("n_trials")
    if n_trials is not None:
        n_trials = int(_number(n_trials, f"{src}: n_trials", True))
        if n_trials < 1:
            raise ConfigError(f"{src}: n_trials = {n_trials}: must be >= 1 or null")
    timeout = raw.get("timeout")
    if timeout is not None:
        timeout = float(_number(timeout, f"{src}: timeout"))
        if timeout <= 0:
            raise ConfigError(f"{src}: timeout = {timeout}: seconds, must be > 0 or null")
    if n_trials is None and spec.sampler == "grid":
        n_trials = spec.grid_size()
    if n_trials is None and timeout is None:
        raise ConfigError(f"{src}: set n_trials or timeout (seconds): a study needs an end")
    spec.n_trials, spec.timeout = n_trials, timeout

    # enqueued trials
    eb = raw.get("enqueue_baseline", False)
    if not isinstance(eb, bool):
        raise ConfigError(f"{src}: enqueue_baseline = {eb!r}: expected true or false")
    spec.enqueue_baseline = eb
    if eb:
        for k, v in spec.baseline_params().items():
            if not space[k].contains(v):
                raise ConfigError(f"{src}: enqueue_baseline: the base's {k} = {v!r} is outside the space "
                                  f"({space[k].describe()}); widen the space or set enqueue_baseline: false")
    enq = raw.get("enqueue") or []
    if enq and spec.sampler == "grid":
        raise ConfigError(f"{src}: enqueue with sampler grid: the grid already runs every combination once")
    if not isinstance(enq, list):
        raise ConfigError(f"{src}: enqueue must be a list of {{key: value}} mappings of searched keys")
    for i, e in enumerate(enq):
        ed = _mapping(e, f"{src}: enqueue[{i}]")
        for k, v in ed.items():
            if not isinstance(k, str) or k not in space:
                raise _unknown(f"{src}: enqueue[{i}]", k, list(space))
            if not space[k].contains(v):
                raise ConfigError(f"{src}: enqueue[{i}].{k} = {_show(v)}: outside the space ({space[k].describe()})")
            given = {c: ed[c] for c, _ in space[k].when if c in ed}  # conditions the entry fixes itself
            if not space[k].active({**{c: vals[0] for c, vals in space[k].when}, **given}):
                raise ConfigError(f"{src}: enqueue[{i}].{k}: not searched here ({space[k].describe_when()}, but "
                                  f"this entry has {', '.join(f'{c} = {x!r}' for c, x in given.items())}); drop it")
        spec.enqueue.append(dict(ed))

    st = raw.get("storage")
    if st is not None and not isinstance(st, str):
        raise ConfigError(f"{src}: storage = {st!r}: must be a URL string or null")
    spec.storage = storage if storage is not None else st

    hb = _mapping(raw.get("heartbeat"), f"{src}: heartbeat")
    for k, v in hb.items():
        if not isinstance(k, str) or k not in HeartbeatSpec.__dataclass_fields__:
            raise _unknown(f"{src}: heartbeat", k, tuple(HeartbeatSpec.__dataclass_fields__))
        value = int(_number(v, f"{src}: heartbeat.{k}", True))
        if value < (0 if k == "max_retry" else 1):
            raise ConfigError(f"{src}: heartbeat.{k} = {value}: too small")
        setattr(spec.heartbeat, k, value)
    if spec.heartbeat.grace_period <= spec.heartbeat.interval:
        raise ConfigError(f"{src}: heartbeat.grace_period ({spec.heartbeat.grace_period}) must exceed "
                          f"heartbeat.interval ({spec.heartbeat.interval})")

    out_dir = raw.get("out_dir", "runs")
    if not isinstance(out_dir, str) or not out_dir:
        raise ConfigError(f"{src}: out_dir = {out_dir!r}: must be a folder")
    spec.out_dir = out_dir
    rep = raw.get("report", False)
    if not isinstance(rep, bool):
        raise ConfigError(f"{src}: report = {rep!r}: expected true or false")
    spec.report = rep
    spec.confirm = parse_confirm(raw.get("confirm"), src)
    if spec.confirm is not None and not spec.objectives[0][0].needs_guidance:
        raise ConfigError(f"{src}: confirm: the first objective ({spec.objectives[0][0].name}) is not read from the "
                          f"guidance grid, so there is nothing to re-score; remove confirm or use fid/accuracy")
    spec.raw = copy.deepcopy(raw)
    return spec


def _check_ignored_end_points(space: dict[str, Distribution], base_schedule: str, src: str) -> None:
    """``diffusion.beta_1``/``beta_T`` are not searched for a schedule that ignores them (e.g. cosine): they
    would be pure-noise dimensions for the sampler and the importances. A ``when`` on the schedule scopes them."""
    from ddpm.schedules import END_POINTS, SCHEDULE_PARAMS

    sched = space.get("diffusion.schedule")
    for key, dist in space.items():
        name = key.split(".", 1)[1] if key.startswith("diffusion.") else ""
        if name not in END_POINTS:
            continue
        possible = [base_schedule] if sched is None else list(sched.choices or sched.finite_values() or [])
        cond = dict(dist.when).get("diffusion.schedule")
        if cond is not None:
            possible = [p for p in possible if any(_same(p, c) for c in cond)]
        ignoring = [p for p in possible if name not in SCHEDULE_PARAMS.get(p, END_POINTS)]
        if not ignoring:
            continue
        users = [p for p in possible if p not in ignoring]
        fix = (f"add when: {{diffusion.schedule: [{', '.join(map(str, users))}]}} (diffusion.schedule listed above it)"
               if users else "remove it from the space")
        raise ConfigError(f"{src}: space.{key} is searched for schedule {', '.join(map(str, ignoring))}, which "
                          f"ignores it (a pure-noise dimension for the sampler); {fix}")


def _parse_prune(value: Any, spec: SweepSpec, src: str) -> PruneSpec:
    direction = spec.directions[0]
    if value is None:
        default = "sample_fid" if direction == "minimize" else "sample_accuracy"
        value = default if spec.guidance is not None else "test_loss"
    pd = {"metric": value} if isinstance(value, str) else _mapping(value, f"{src}: prune_on")
    allowed = tuple(PruneSpec.__dataclass_fields__)
    for k in pd:
        if k not in allowed:
            raise _unknown(f"{src}: prune_on", k, allowed)
    ps = PruneSpec()
    name = _name(pd.get("metric", ps.metric), f"{src}: prune_on", list(PRUNE_METRICS))
    metric: PruneMetric = PRUNE_METRICS[name]
    if metric.direction != direction:
        same = [m for m, v in PRUNE_METRICS.items() if v.direction == direction]
        raise ConfigError(f"{src}: prune_on = {name!r} is better {'lower' if metric.direction == 'minimize' else 'higher'} but the "
                          f"study's objective is to {direction}; use one of {', '.join(same)}")
    ps.metric = name
    for k in ("n", "steps"):
        if k in pd:
            v = int(_number(pd[k], f"{src}: prune_on.{k}", True))
            if v < 1:
                raise ConfigError(f"{src}: prune_on.{k} = {v}: must be >= 1")
            setattr(ps, k, v)
    return ps


def trial_config(spec: SweepSpec, params: dict[str, Any], trial_name: str) -> ExperimentConfig:
    """The resolved config of one trial: base + overrides + params, run folder runs/<study>/<trial_name>."""
    cfg = spec.base_config({**params, "name": trial_name, "out_dir": str(spec.study_dir)})
    return cfg
