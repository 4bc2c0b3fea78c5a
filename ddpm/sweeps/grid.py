"""A grid study: every point of the space enqueued once, as a waiting trial, when the study is created.

The storage hands each waiting trial to exactly one worker, so any number of workers, machines and
resumes run each point once; workers never make up a point (``EnqueuedOnlySampler``). Optuna's own
``GridSampler`` picks a point per trial in each process, which repeats points when its seed differs per
process, and under distributed timing or retries even with one seed (optuna#2039, #4627, #5489, #2946).

Order (stable): the points of the sweep file's space in ``itertools.product`` order (the first key
varies slowest, each key's values as listed), shuffled with ``sampler.seed`` when one is given (so a
budget smaller than the grid runs a seeded random subset, not one corner); the baseline point first
with ``enqueue_baseline: true``. Each enqueued trial carries user attr ``grid_id``, the point's index
in product order; a retry copies it.
"""
from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any, Optional

import optuna

from ddpm.errors import ConfigError
from ddpm.sweeps.record import TrialRecord
from ddpm.sweeps.samplers import grid_values
from ddpm.sweeps.spec import SweepSpec


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every point of the space, in product order (index = grid id)."""
    values = grid_values(spec.space)
    keys = list(values)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(values[k] for k in keys))]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b) and type(a) is type(b)


def point_id(params: dict[str, Any], points: list[dict[str, Any]]) -> Optional[int]:
    """The grid id of ``params`` (all searched keys, float tolerance 1e-9), or None."""
    for i, p in enumerate(points):
        if params.keys() == p.keys() and all(_same(params[k], p[k]) for k in p):
            return i
    return None


def baseline_id(spec: SweepSpec, points: list[dict[str, Any]]) -> Optional[int]:
    if not spec.enqueue_baseline:
        return None
    base = spec.baseline_params()
    i = point_id(base, points)
    if i is None:
        values = grid_values(spec.space)
        off = [f"{k} = {v!r} (grid: {values[k]})" for k, v in base.items()
               if not any(_same(v, g) for g in values[k])]
        raise ConfigError(f"{spec.path}: enqueue_baseline: the base's {', '.join(off)} is not a grid point; "
                          f"add it to the space or set enqueue_baseline: false")
    return i


def run_order(spec: SweepSpec, points: list[dict[str, Any]]) -> list[int]:
    """Grid ids in the order they are enqueued (see the module docstring)."""
    ids = list(range(len(points)))
    seed = spec.sampler_kwargs.get("seed")
    if seed is not None:
        random.Random(seed).shuffle(ids)
    first = baseline_id(spec, points)
    if first is not None:
        ids.remove(first)
        ids.insert(0, first)
    return ids


def _json(values: Any) -> Any:
    return json.loads(json.dumps(values))


def enqueue_grid(study: optuna.Study, spec: SweepSpec) -> list[int]:
    """Enqueue each grid point the study does not hold yet (call under the study lock); returns the ids added.

    A point is held when any trial, in any state (a retry included), has its ``grid_id`` or its params.
    """
    points = grid_points(spec)
    order = run_order(spec, points)
    recorded = study.user_attrs.get("grid")
    if recorded is not None and recorded != _json(grid_values(spec.space)):
        raise ConfigError(f"{spec.path}: study {spec.study!r} was created with the grid {recorded}; the sweep file "
                          f"now gives {_json(grid_values(spec.space))}; rename the study or restore the grid")
    held: set[int] = set()
    for t in study.get_trials(deepcopy=False):
        gid = TrialRecord.from_trial(t).grid_id
        if gid is None:  # a trial from before grids were enqueued, or added by hand: match its params
            gid = point_id(t.system_attrs.get("fixed_params") or t.params, points)
        if gid is not None:
            held.add(int(gid))
    first = baseline_id(spec, points)
    added = [i for i in order if i not in held]
    for i in added:
        study.enqueue_trial(points[i], user_attrs=TrialRecord(grid_id=i, baseline=i == first).to_user_attrs())
    if first in added:
        waiting = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
                   if TrialRecord.from_trial(t).grid_id == first]
        study.set_user_attr("baseline_trial", waiting[0].number)
    if recorded is None:
        study.set_user_attr("grid", _json(grid_values(spec.space)))
    return added
