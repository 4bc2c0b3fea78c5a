"""The sweep file (``sweeps/*.yaml``): typed like an experiment config (``SweepFile``: each key's type and
its one default), checked, and resolved into a ``SweepSpec``; one-line errors. The search space is
``ddpm.sweeps.space``.

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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from ddpm.config import (ExperimentConfig, _flat, _from_dict, _show, _unknown_in_section, config_from_dict,
                         experiment_dict, get_dotted, read_yaml, set_dotted)
from ddpm.errors import ConfigError
from ddpm.sweeps.confirm import ConfirmSpec, parse_confirm
from ddpm.sweeps.launchers.options import LauncherOptions, check_launcher_options
from ddpm.sweeps.metrics import OBJECTIVE_METRICS, PRUNE_METRICS, ObjectiveMetric
from ddpm.sweeps.pruners import PRUNERS, check_pruner_kwargs
from ddpm.sweeps.samplers import OPTUNA_SAMPLERS, check_sampler_kwargs
from ddpm.sweeps.space import SearchKey, check_end_points, parse_search_key
from ddpm.sweeps.space import suggest_params  # noqa: F401  (re-exported: the objective suggests through the spec)
from ddpm.sweeps.storage import Heartbeat
from ddpm.sweeps.wandb_format import is_wandb_sweep, load_wandb_sweep

DIRECTIONS = ("minimize", "maximize")
BASE_ATTR = "base_config"   # study user attribute: the resolved base experiment every trial starts from


def _typed(cls: type, data: Any, section: str, src: str) -> Any:
    """One section of the sweep file through the experiment configs' typed machinery (``ddpm.config``)."""
    return _from_dict(cls, data, f"{section}." if section else "", src, _unknown_in_section)


def _name(value: Any, where: str, registry: Any) -> str:
    """A registered name: anything else (a list, a mapping, a number, an unknown string) is a ConfigError."""
    if not isinstance(value, str) or value not in registry:
        raise ConfigError(f"{where} = {_show(value)}: unknown; valid: {', '.join(registry)}")
    return value


def _at_least(value: Optional[float], least: float, where: str, why: str = "") -> None:
    if value is not None and value < least:
        raise ConfigError(f"{where} = {value}: {why or f'must be >= {least:g}'}")


# ----------------------------------------------------------------------------------------------
# the sweep file as written: every key, its type and its one default


@dataclass
class GuidanceSpec:
    omegas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 4.0])
    n: int = 200                        # images per omega (n/num_classes per digit)
    sampler: str = "ddim"
    steps: Optional[int] = 50
    eta: float = 0.0
    select: Optional[str] = None        # metric choosing the best omega (default: the first guidance objective)
    seed: int = 0


@dataclass
class PruneSpec:
    metric: str                         # default: by the first objective's direction (_prune)
    n: int = 100                        # images per epoch for a sample metric (ddpm.evaluation.quick_metric)
    steps: int = 20                     # sampler steps for a sample metric


@dataclass
class ObjectiveEntry:
    metric: Optional[str] = None
    direction: Optional[str] = None     # default: the metric's natural sense


@dataclass
class SweepFile:
    """The sweep file's top-level keys with their types and defaults, parsed like an experiment config."""
    study: Optional[str] = None
    description: Any = ""
    base: Optional[str] = None
    overrides: Optional[dict[str, Any]] = None
    space: Optional[dict[str, Any]] = None
    guidance: Optional[GuidanceSpec] = field(default_factory=GuidanceSpec)  # null: no grid (objectives from history)
    objectives: Any = None              # [{metric, direction}] or a metric name; None: fid (test_loss without guidance)
    sampler: Any = field(default_factory=lambda: {"name": "tpe", "seed": 0})   # a name, or {name, **options}
    pruner: Any = field(default_factory=lambda: {"name": "none"})
    prune_on: Any = None                # a prune metric or {metric, n, steps}; None: chosen by the objective
    n_trials: Optional[int] = None      # None with sampler grid: the grid's size
    timeout: Optional[float] = None
    enqueue_baseline: bool = False
    enqueue: Any = None                 # [{searched key: value}]: trials to run first
    storage: Optional[str] = None
    artifacts: Optional[str] = None     # Optuna artifact store (grids, best.pt); None: <out_dir>/<study>/artifacts
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    out_dir: str = "runs"
    report: bool = False
    confirm: Any = None                 # re-score the top trials on the test split after the study
    launcher: LauncherOptions = field(default_factory=LauncherOptions)  # --launcher ray|slurm: resources, partition


def _default(cls: type, name: str) -> Any:
    f = next(f for f in fields(cls) if f.name == name)
    return f.default_factory()  # type: ignore[misc]


# ----------------------------------------------------------------------------------------------
# the sweep, resolved


@dataclass(kw_only=True)
class SweepSpec:
    study: str
    path: Path                          # the sweep file
    base: Path                          # the base experiment, resolved
    base_data: dict[str, Any]           # its every key: from the file, or (once the study exists) the study's copy
    space: dict[str, SearchKey]
    overrides: dict[str, Any]
    guidance: Optional[GuidanceSpec]
    objectives: list[tuple[ObjectiveMetric, str]]
    sampler: str
    sampler_kwargs: dict[str, Any]
    pruner: str
    pruner_kwargs: dict[str, Any]
    prune: Optional[PruneSpec]
    n_trials: Optional[int]
    timeout: Optional[float]
    enqueue_baseline: bool
    enqueue: list[dict[str, Any]]
    storage: Optional[str]
    heartbeat: Heartbeat
    out_dir: str
    report: bool
    confirm: Optional[ConfirmSpec]
    description: str
    raw: dict[str, Any]
    artifacts: Optional[str] = None     # the artifact store asked for (ddpm.sweeps.artifacts); None: the study's
    launcher: LauncherOptions = field(default_factory=LauncherOptions)  # ddpm.sweeps.launchers.options

    @property
    def directions(self) -> list[str]:
        return [d for _, d in self.objectives]

    @property
    def study_dir(self) -> Path:
        return Path(self.out_dir) / self.study

    def base_config(self, extra: Optional[dict[str, Any]] = None) -> ExperimentConfig:
        """The base experiment with the sweep's overrides (and ``extra`` dotted keys) applied."""
        return _with_overrides(self.base_data, {**self.overrides, **(extra or {})}, str(self.base))

    def pin_base(self, study: Any) -> Optional[str]:
        """Trials start from the base experiment as it was when the study was created: the first call stores
        it with the study (user attribute ``base_config``), later calls adopt the stored copy, so editing the
        preset cannot change a running study. Returns a note when the file now differs."""
        stored = study.user_attrs.get(BASE_ATTR)
        if stored is None:
            study.set_user_attr(BASE_ATTR, self.base_data)
            return None
        if stored == self.base_data:
            return None
        now, then = _flat(self.base_data), _flat(stored)
        changed = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
        self.base_data = copy.deepcopy(stored)
        return (f"{self.base} has changed since study {self.study!r} was created ({', '.join(changed[:4])}"
                f"{', ...' if len(changed) > 4 else ''}); its trials use the base config stored with the study")

    def baseline_params(self) -> dict[str, Any]:
        """The base experiment's own value of every searched key (the baseline trial); a conditional key
        whose ``when`` the base's values do not meet is left out, as a trial would leave it."""
        cfg = self.base_config().to_dict()
        params: dict[str, Any] = {}
        for k, searched in self.space.items():
            if searched.active(params):
                params[k] = get_dotted(cfg, k)
        return params

    def grid_size(self) -> Optional[int]:
        if self.sampler != "grid":
            return None
        return math.prod(len(s.finite_values() or []) for s in self.space.values())

    def objective_summary(self) -> list[dict[str, str]]:
        return [{"metric": m.name, "direction": d} for m, d in self.objectives]


def _check_config_key(key: str, where: str) -> None:
    node: Any = ExperimentConfig().to_dict()
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


def overridden(base_data: dict[str, Any], dotted: dict[str, Any]) -> dict[str, Any]:
    """A copy of the experiment dict ``base_data`` with the ``dotted`` keys set (not checked: no torch import)."""
    data = copy.deepcopy(base_data)
    for k, v in dotted.items():
        set_dotted(data, k, v)
    return data


def _with_overrides(base_data: dict[str, Any], dotted: dict[str, Any], source: str) -> ExperimentConfig:
    return config_from_dict(overridden(base_data, dotted), source)


def load_sweep(path: str | Path, storage: Optional[str] = None) -> SweepSpec:
    """Read and check a sweep file, typed like an experiment config (``SweepFile``); every error is one line
    naming the file, the key and the value. ``storage`` (the --storage flag) overrides the file's. A W&B sweep
    configuration (top-level ``method``/``parameters``, no ``space``) is mapped by ``ddpm.sweeps.wandb_format``."""
    path = Path(path)
    raw = read_yaml(path)
    if is_wandb_sweep(raw):
        return load_wandb_sweep(raw, path, storage)
    return sweep_from_dict(raw, path, storage)


def sweep_from_dict(raw: dict[str, Any], path: Path, storage: Optional[str] = None) -> SweepSpec:
    """A sweep file's mapping (read from ``path``: errors name it, ``base`` is relative to it) resolved."""
    src = str(path)
    f: SweepFile = _typed(SweepFile, raw, "", src)
    if not isinstance(f.study, str) or not f.study or "/" in f.study or f.study in (".", ".."):
        raise ConfigError(f"{src}: study = {f.study!r}: must be a non-empty name without '/'")
    if f.base is None:
        raise ConfigError(f"{src}: base = None: must name an experiment file, e.g. ../experiments/cpu-quick.yaml")
    base = (path.parent / f.base).resolve()
    if not base.is_file():
        raise ConfigError(f"{src}: base = {f.base!r}: no such file ({base})")
    overrides = dict(f.overrides or {})
    for k in overrides:
        _check_config_key(str(k), f"{src}: overrides")
    space = _space(f.space or {}, src)
    if not isinstance(f.description or "", (str, int, float)):
        raise ConfigError(f"{src}: description = {_show(f.description)}: must be text")
    try:  # the base + overrides must be a valid config before any trial runs
        base_data = experiment_dict(base)
        base_cfg = _with_overrides(base_data, overrides, str(base))
    except ConfigError as e:
        raise ConfigError(f"{src}: base + overrides: {e}") from None
    check_end_points(space, base_cfg.diffusion.schedule, src)
    guidance = _guidance(f.guidance, src)
    objectives = _objectives(f.objectives, guidance, src)
    sampler, sampler_kwargs = _component(f.sampler, "sampler", OPTUNA_SAMPLERS, check_sampler_kwargs, src)
    if sampler == "grid":
        _check_grid(space, src)
    pruner, pruner_kwargs = _component(f.pruner, "pruner", PRUNERS, check_pruner_kwargs, src)
    if pruner != "none" and len(objectives) > 1:
        raise ConfigError(f"{src}: pruner = {pruner!r} with {len(objectives)} objectives: Optuna prunes "
                          f"single-objective studies only; use pruner: none")
    spec = SweepSpec(
        study=f.study, path=path, base=base, base_data=base_data, space=space, overrides=overrides,
        guidance=guidance, objectives=objectives, sampler=sampler, sampler_kwargs=sampler_kwargs, pruner=pruner,
        pruner_kwargs=pruner_kwargs, prune=_prune(f.prune_on, pruner, objectives, guidance, src),
        n_trials=f.n_trials, timeout=f.timeout, enqueue_baseline=f.enqueue_baseline,
        enqueue=_enqueue(f.enqueue, space, sampler, src), storage=storage if storage is not None else f.storage,
        heartbeat=_check_heartbeat(f.heartbeat, src), out_dir=f.out_dir, report=f.report,
        confirm=parse_confirm(f.confirm, src), description=str(f.description or ""), raw=copy.deepcopy(raw),
        artifacts=check_artifact_location(f.artifacts, src), launcher=check_launcher_options(f.launcher, src))
    _check_budget(spec, src)
    _check_baseline(spec, src)
    if not spec.out_dir:
        raise ConfigError(f"{src}: out_dir = '': must be a folder")
    if spec.confirm is not None and not spec.objectives[0][0].needs_guidance:
        raise ConfigError(f"{src}: confirm: the first objective ({spec.objectives[0][0].name}) is not read from the "
                          f"guidance grid, so there is nothing to re-score; remove confirm or use fid/accuracy")
    return spec


def _space(entries: dict[str, Any], src: str) -> dict[str, SearchKey]:
    if not entries:
        raise ConfigError(f"{src}: space is empty; search at least one config key, e.g. "
                          f"train.lr: {{type: float, low: 1.0e-4, high: 3.0e-3, log: true}}")
    space: dict[str, SearchKey] = {}
    for k, v in entries.items():
        _check_config_key(str(k), f"{src}: space")
        space[str(k)] = parse_search_key(v, str(k), src, earlier=dict(space))
    return space


def _guidance(g: Optional[GuidanceSpec], src: str) -> Optional[GuidanceSpec]:
    """The guidance grid (None: no grid; objectives must then come from the history)."""
    from ddpm.samplers import SAMPLERS

    if g is None:
        return None
    if not g.omegas:
        raise ConfigError(f"{src}: guidance.omegas = []: must be a non-empty list of numbers")
    if any(w < 0 for w in g.omegas):
        raise ConfigError(f"{src}: guidance.omegas = {g.omegas}: guidance weights must be >= 0")
    _at_least(g.n, 1, f"{src}: guidance.n")
    _name(g.sampler, f"{src}: guidance.sampler", sorted(SAMPLERS))
    _at_least(g.eta, 0, f"{src}: guidance.eta", "must be >= 0 (DDIM stochasticity)")
    return g


def _objectives(value: Any, guidance: Optional[GuidanceSpec], src: str) -> list[tuple[ObjectiveMetric, str]]:
    objs = value if value is not None else ["fid" if guidance else "test_loss"]
    objs = [objs] if isinstance(objs, (str, dict)) else objs
    if not isinstance(objs, list) or not objs:
        raise ConfigError(f"{src}: objectives must be a non-empty list like [{{metric: fid, direction: minimize}}]")
    out: list[tuple[ObjectiveMetric, str]] = []
    for i, o in enumerate(objs):
        where = f"{src}: objectives[{i}]"
        entry: ObjectiveEntry = _typed(ObjectiveEntry, {"metric": o} if isinstance(o, str) else o, f"objectives[{i}]", src)
        metric = OBJECTIVE_METRICS[_name(entry.metric, f"{where}.metric", list(OBJECTIVE_METRICS))]
        direction = metric.direction if entry.direction is None else entry.direction
        if direction not in DIRECTIONS:
            raise ConfigError(f"{where}.direction = {_show(direction)}: must be minimize or maximize")
        if metric.needs_guidance and guidance is None:
            raise ConfigError(f"{where}.metric = {metric.name!r} is read from the guidance grid, but guidance is null")
        if any(m.name == metric.name for m, _ in out):
            raise ConfigError(f"{where}.metric = {metric.name!r}: listed twice")
        out.append((metric, direction))
    if guidance is not None:
        sel = guidance.select
        if sel is None:
            sel = next((m.name for m, _ in out if m.needs_guidance), "fid")
        if sel not in OBJECTIVE_METRICS or not OBJECTIVE_METRICS[sel].needs_guidance:
            valid = [m for m, v in OBJECTIVE_METRICS.items() if v.needs_guidance]
            raise ConfigError(f"{src}: guidance.select = {sel!r}: must be a guidance metric ({', '.join(valid)})")
        guidance.select = sel
    return out


def _component(value: Any, key: str, registry: Any, check: Any, src: str) -> tuple[str, dict[str, Any]]:
    """``sampler:`` / ``pruner:`` as a name or a mapping {name, **options}: (registered name, checked options)."""
    opts = {"name": value} if isinstance(value, str) else ({} if value is None else value)
    if not isinstance(opts, dict):
        raise ConfigError(f"{src}: {key} must be a mapping, got {_show(value)}")
    opts = dict(opts)
    name = opts.pop("name", _default(SweepFile, key)["name"])
    if not isinstance(name, str) or name not in registry:
        raise ConfigError(f"{src}: {key}.name = {_show(name)}: unknown; valid: {', '.join(sorted(registry))}")
    for k, v in opts.items():  # Optuna takes the options as given: NaN/inf (or a non-string key) are refused here
        if not isinstance(k, str):
            raise ConfigError(f"{src}: {key}: option {_show(k)} is not a name")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{src}: {key}.{k} = {v!r}: not a finite number; use a finite value")
    check(name, opts, f"{src}: {key}")
    return name, opts


def _check_grid(space: dict[str, SearchKey], src: str) -> None:
    from ddpm.sweeps.samplers import grid_values

    conditional = [k for k, s in space.items() if s.when]
    if conditional:
        raise ConfigError(f"{src}: space.{conditional[0]}.when with sampler grid: a grid runs the full product "
                          f"of every key's values; use sampler random or tpe for a conditional space, or "
                          f"drop 'when' and list the combinations as separate studies")
    try:
        grid_values(space)
    except ConfigError as e:
        raise ConfigError(f"{src}: {e}") from None


def _prune(value: Any, pruner: str, objectives: list[tuple[ObjectiveMetric, str]],
           guidance: Optional[GuidanceSpec], src: str) -> Optional[PruneSpec]:
    """What each epoch reports to the pruner (None: nothing, with no pruner and no ``prune_on``)."""
    if pruner == "none" and value is None:
        return None
    direction = objectives[0][1]
    default = ("sample_fid" if direction == "minimize" else "sample_accuracy") if guidance is not None else "test_loss"
    pd = {"metric": value if value is not None else default} if not isinstance(value, dict) else {"metric": default, **value}
    name = _name(pd["metric"], f"{src}: prune_on", list(PRUNE_METRICS))
    metric = PRUNE_METRICS[name]
    if metric.direction != direction:
        same = [m for m, v in PRUNE_METRICS.items() if v.direction == direction]
        raise ConfigError(f"{src}: prune_on = {name!r} is better {'lower' if metric.direction == 'minimize' else 'higher'} "
                          f"but the study's objective is to {direction}; use one of {', '.join(same)}")
    ps: PruneSpec = _typed(PruneSpec, pd, "prune_on", src)
    for k in ("n", "steps"):
        _at_least(getattr(ps, k), 1, f"{src}: prune_on.{k}")
    return ps


def _enqueue(value: Any, space: dict[str, SearchKey], sampler: str, src: str) -> list[dict[str, Any]]:
    enq = value or []
    if enq and sampler == "grid":
        raise ConfigError(f"{src}: enqueue with sampler grid: the grid already runs every combination once")
    if not isinstance(enq, list):
        raise ConfigError(f"{src}: enqueue must be a list of {{key: value}} mappings of searched keys")
    for i, e in enumerate(enq):
        if not isinstance(e, dict):
            raise ConfigError(f"{src}: enqueue[{i}] must be a mapping, got {_show(e)}")
        for k, v in e.items():
            if not isinstance(k, str) or k not in space:
                raise _unknown_in_section(src, f"enqueue[{i}]", k, list(space))
            if not space[k].contains(v):
                raise ConfigError(f"{src}: enqueue[{i}].{k} = {_show(v)}: outside the space ({space[k].describe()})")
            given = {c: e[c] for c, _ in space[k].when if c in e}  # conditions the entry fixes itself
            if not space[k].active({**{c: vals[0] for c, vals in space[k].when}, **given}):
                raise ConfigError(f"{src}: enqueue[{i}].{k}: not searched here ({space[k].describe_when()}, but "
                                  f"this entry has {', '.join(f'{c} = {x!r}' for c, x in given.items())}); drop it")
    return [dict(e) for e in enq]


def check_artifact_location(location: Optional[str], src: str) -> Optional[str]:
    from ddpm.sweeps.artifacts import ARTIFACT_STORES, artifact_scheme

    if location is not None and (not location or artifact_scheme(location) not in ARTIFACT_STORES):
        raise ConfigError(f"{src}: artifacts = {location!r}: must be a folder path "
                          f"({', '.join(f'{s}://' for s in sorted(ARTIFACT_STORES))} or a plain path)")
    return location


def _check_heartbeat(h: Heartbeat, src: str) -> Heartbeat:
    for k, least in (("interval", 1), ("grace_period", 1), ("max_retry", 0)):
        _at_least(getattr(h, k), least, f"{src}: heartbeat.{k}", "too small")
    if h.grace_period <= h.interval:
        raise ConfigError(f"{src}: heartbeat.grace_period ({h.grace_period}) must exceed "
                          f"heartbeat.interval ({h.interval})")
    return h


def _check_budget(spec: SweepSpec, src: str) -> None:
    """``n_trials`` and/or ``timeout``; a grid without ``n_trials`` runs its every point."""
    _at_least(spec.n_trials, 1, f"{src}: n_trials", "must be >= 1 or null")
    if spec.timeout is not None and spec.timeout <= 0:
        raise ConfigError(f"{src}: timeout = {spec.timeout}: seconds, must be > 0 or null")
    if spec.n_trials is None and spec.sampler == "grid":
        spec.n_trials = spec.grid_size()
    if spec.n_trials is None and spec.timeout is None:
        raise ConfigError(f"{src}: set n_trials or timeout (seconds): a study needs an end")


def _check_baseline(spec: SweepSpec, src: str) -> None:
    if not spec.enqueue_baseline:
        return
    for k, v in spec.baseline_params().items():
        if not spec.space[k].contains(v):
            raise ConfigError(f"{src}: enqueue_baseline: the base's {k} = {v!r} is outside the space "
                              f"({spec.space[k].describe()}); widen the space or set enqueue_baseline: false")


def trial_config(spec: SweepSpec, params: dict[str, Any], trial_name: str) -> ExperimentConfig:
    """The resolved config of one trial: base + overrides + params, run folder runs/<study>/<trial_name>."""
    return spec.base_config({**params, "name": trial_name, "out_dir": str(spec.study_dir)})
