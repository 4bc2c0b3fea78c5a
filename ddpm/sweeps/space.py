"""The search space of a sweep file: each ``space:`` entry becomes one of Optuna's distributions
(``FloatDistribution``, ``IntDistribution``, ``CategoricalDistribution``), optionally conditional::

    space:
      diffusion.schedule: {type: categorical, choices: [linear, cosine]}     # or just [linear, cosine]
      train.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      diffusion.T: {type: int, low: 100, high: 400, step: 100}
      diffusion.beta_T: {type: float, low: 4.0e-2, high: 2.0e-1, log: true,
                         when: {diffusion.schedule: [linear]}}   # searched only for the linear schedule

Entries are typed by the experiment configs' machinery (``ddpm.config._from_dict``); every error is one
line naming the file, the key and the value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ddpm.config import _from_dict, _show, _unknown_in_section
from ddpm.errors import ConfigError


KINDS: dict[str, type[BaseDistribution]] = {"float": FloatDistribution, "int": IntDistribution,
                                            "categorical": CategoricalDistribution}


def _same(a: Any, b: Any) -> bool:
    """YAML scalar equality where true is not 1 (a categorical may hold both) and a stepped float's
    0.30000000000000004 is the 0.3 a user wrote."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@dataclass(frozen=True)
class SearchKey:
    """One searched key: an Optuna distribution (its ``low``/``high``/``step``/``log``/``choices`` read
    through), optionally conditional.

    ``when`` makes it conditional (an Optuna define-by-run conditional space): ((earlier key, allowed
    values), ...); the key is suggested only when every named earlier key took one of its values,
    otherwise the base config's value is used and the trial has no such param."""
    distribution: BaseDistribution
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "distribution":
            raise AttributeError(name)
        return getattr(self.distribution, name)

    @property
    def kind(self) -> str:
        return next(k for k, cls in KINDS.items() if isinstance(self.distribution, cls))

    def active(self, params: dict[str, Any]) -> bool:
        """Whether this key is searched, given the values already chosen for earlier keys."""
        return all(k in params and any(_same(params[k], v) for v in values) for k, values in self.when)

    def suggest(self, trial: Any, name: str) -> Any:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return trial.suggest_categorical(name, list(d.choices))
        suggest = trial.suggest_int if isinstance(d, IntDistribution) else trial.suggest_float
        return suggest(name, d.low, d.high, step=d.step, log=d.log)

    def finite_values(self) -> Optional[list[Any]]:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        if d.log or d.step is None:
            return None
        if isinstance(d, IntDistribution):
            return list(range(d.low, d.high + 1, d.step))
        n = int(math.floor((d.high - d.low) / d.step + 1e-9))
        return [d.low + i * d.step for i in range(n + 1)]

    def contains(self, value: Any) -> bool:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return value in d.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return d.low <= value <= d.high

    def describe(self) -> str:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return f"choices {list(d.choices)}"
        stepped = d.step is not None and not (isinstance(d, IntDistribution) and d.step == 1)
        extra = " log" if d.log else (f" step {d.step:g}" if stepped else "")
        return f"{self.kind} {d.low:g}..{d.high:g}{extra}"

    def describe_when(self) -> str:
        return " and ".join(f"{k} in {list(v)}" for k, v in self.when)


@dataclass
class FloatEntry:
    """A ``space:`` entry as written: ``{type: float, low, high, step?, log?, when?}``."""
    type: str
    low: float
    high: float
    step: Optional[float] = None
    log: bool = False
    when: Any = None


@dataclass
class IntEntry(FloatEntry):
    low: int
    high: int
    step: Optional[int] = None


@dataclass
class CategoricalEntry:
    """``{type: categorical, choices: [...], when?}``; a bare list is this entry's shorthand."""
    type: str
    choices: Any = None
    when: Any = None


ENTRIES: dict[str, type] = {"float": FloatEntry, "int": IntEntry, "categorical": CategoricalEntry}


def suggest_params(space: dict[str, SearchKey], trial: Any) -> dict[str, Any]:
    """Suggest the space's keys in order, skipping a conditional key whose ``when`` is not met."""
    params: dict[str, Any] = {}
    for key, searched in space.items():
        if searched.active(params):
            params[key] = searched.suggest(trial, key)
    return params


def _parse_when(value: Any, where: str, earlier: dict[str, SearchKey]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``when: {earlier.key: [values]}``: each key searched above this one, each value one it can take."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.when must be a mapping, got {_show(value)}")
    if not value:
        raise ConfigError(f"{where}.when is empty; name an earlier key and its values, e.g. "
                          f"when: {{diffusion.schedule: [linear, quadratic]}}")
    out = []
    for k, vals in value.items():
        k = str(k)
        if k not in earlier:
            listed = [e for e in earlier] or ["none: this is the first key"]
            raise ConfigError(f"{where}.when: '{k}' is not a key searched above this one (earlier keys: "
                              f"{', '.join(listed)}); a condition names a key listed before it in the space")
        finite = earlier[k].finite_values()
        if finite is None:
            raise ConfigError(f"{where}.when: '{k}' is a continuous {earlier[k].kind}; a condition needs a key "
                              f"with listed values (categorical, or int with a step)")
        vals = vals if isinstance(vals, list) else [vals]
        if not vals:
            raise ConfigError(f"{where}.when.{k} = []: list the values of {k} for which this key is searched")
        for v in vals:
            if not any(_same(v, c) for c in finite):
                raise ConfigError(f"{where}.when.{k}: {v!r} is not a value {k} can take (its values: {finite})")
        out.append((k, tuple(vals)))
    return tuple(out)


def _categorical(entry: CategoricalEntry, where: str) -> CategoricalDistribution:
    choices = entry.choices
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{where}.choices = {choices!r}: must be a non-empty list")
    for c in choices:
        if c is not None and not isinstance(c, (bool, int, float, str)):
            raise ConfigError(f"{where}.choices: {_show(c)} is not a scalar (number, string, bool or null)")
        if isinstance(c, float) and not math.isfinite(c):
            raise ConfigError(f"{where}.choices: {c!r} is not a finite number; use finite values")
    if len(set(map(repr, choices))) != len(choices):
        raise ConfigError(f"{where}.choices = {choices!r}: has duplicates")
    return CategoricalDistribution(choices)


def _range(entry: FloatEntry, where: str) -> BaseDistribution:
    if entry.low > entry.high:
        raise ConfigError(f"{where}: low ({entry.low}) must be <= high ({entry.high})")
    if entry.step is not None:
        if entry.step <= 0:
            raise ConfigError(f"{where}.step = {entry.step}: must be > 0")
        if entry.log:
            raise ConfigError(f"{where}: step and log cannot be combined (Optuna samples either a grid or a log scale)")
    if entry.log and entry.low <= 0:
        raise ConfigError(f"{where}: log scale needs low > 0 (got {entry.low})")
    if isinstance(entry, IntEntry):
        return IntDistribution(entry.low, entry.high, log=entry.log, step=entry.step or 1)
    return FloatDistribution(entry.low, entry.high, log=entry.log, step=entry.step)


def parse_search_key(value: Any, key: str, src: str, earlier: dict[str, SearchKey]) -> SearchKey:
    """One ``space:`` entry; ``earlier`` holds the keys listed above it (what a ``when`` may name)."""
    where = f"{src}: space.{key}"
    if isinstance(value, list):  # shorthand: a list is a categorical
        value = {"type": "categorical", "choices": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {_show(value)}")
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(f"{where}.type = {_show(kind)}: must be one of {', '.join(KINDS)}")
    entry = _from_dict(ENTRIES[kind], value, f"space.{key}.", src, _unknown_in_section)
    when = _parse_when(entry.when, where, earlier) if entry.when is not None else ()
    dist = _categorical(entry, where) if kind == "categorical" else _range(entry, where)
    return SearchKey(dist, when)


def check_end_points(space: dict[str, SearchKey], base_schedule: str, src: str) -> None:
    """``diffusion.beta_1``/``beta_T`` are not searched for a schedule that ignores them (e.g. cosine): they
    would be pure-noise dimensions for the sampler and the importances. A ``when`` on the schedule scopes them."""
    from ddpm.schedules import END_POINTS, SCHEDULE_PARAMS

    sched = space.get("diffusion.schedule")
    for key, searched in space.items():
        name = key.split(".", 1)[1] if key.startswith("diffusion.") else ""
        if name not in END_POINTS:
            continue
        possible = [base_schedule] if sched is None else list(sched.finite_values() or [])
        cond = dict(searched.when).get("diffusion.schedule")
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
