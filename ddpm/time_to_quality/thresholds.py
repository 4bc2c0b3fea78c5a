"""Time to quality from scored points: per entry, the training seconds at which it first reached each target,
and the ratio of each entry's time to the reference's (the first entry).

Targets (issue 15's CPU target): conditional accuracy >= 0.97; FID <= 2x the real-data floor at the same n;
both at once (by one omega). At each point the best omega counts (highest accuracy, lowest FID).
Each time comes with its noise range from the points' 95% intervals: ``optimistic`` is the first point whose
interval reaches the target (accuracy_hi >= 0.97, fid_lo <= 2x floor), ``confirmed`` the first point whose whole
interval is past it (accuracy_lo >= 0.97, fid_hi <= 2x floor; None: not confirmed in the budget). Two entries
whose ranges [optimistic, confirmed] overlap are a tie: the ratio of their point times is within noise.

Ratio = entry seconds / reference seconds (< 1: the entry gets there faster). When only one of the two reached
the target, the ratio is a bound, using the training seconds of the other's last point as its time's lower
bound: the entry reached it at t, the reference not within T_ref -> ratio < t / T_ref; the entry not within
T, the reference at t_ref -> ratio > T / t_ref. Neither reached it: no ratio.
"""
from __future__ import annotations

import math
from itertools import groupby
from typing import Any, Callable, Optional

ACCURACY_TARGET = 0.97
FID_FLOOR_FACTOR = 2.0
TARGETS = ("accuracy", "fid", "both")
TARGET_TEXT = {"accuracy": f"accuracy >= {ACCURACY_TARGET}", "fid": f"FID <= {FID_FLOOR_FACTOR:g}x floor",
               "both": "both (one omega)"}

Row = dict[str, Any]


def _acc(r: Row, key: str = "accuracy") -> bool:
    return float(r[key]) >= ACCURACY_TARGET


def _fid(r: Row, key: str = "fid") -> bool:
    return float(r[key]) <= FID_FLOOR_FACTOR * float(r["floor"])


# per target: (point estimate, optimistic end of the interval, pessimistic end), each a test of one row
TESTS: dict[str, tuple[Callable[[Row], bool], ...]] = {
    "accuracy": (_acc, lambda r: _acc(r, "accuracy_hi"), lambda r: _acc(r, "accuracy_lo")),
    "fid": (_fid, lambda r: _fid(r, "fid_lo"), lambda r: _fid(r, "fid_hi")),
    "both": (lambda r: _acc(r) and _fid(r), lambda r: _acc(r, "accuracy_hi") and _fid(r, "fid_lo"),
             lambda r: _acc(r, "accuracy_lo") and _fid(r, "fid_hi")),
}


def points_of(rows: list[Row]) -> list[list[Row]]:
    """One entry's rows grouped into points (its omegas at one step), in training order."""
    ordered = sorted(rows, key=lambda r: (int(r["step"]), float(r["train_seconds"])))
    return [list(g) for _, g in groupby(ordered, key=lambda r: int(r["step"]))]


def _first(points: list[list[Row]], test: Callable[[Row], bool]) -> Optional[float]:
    return next((round(float(p[0]["train_seconds"]), 1) for p in points if any(test(r) for r in p)), None)


def entry_times(rows: list[Row]) -> dict[str, Any]:
    """Per target: ``seconds`` (the first point at which the best omega meets it; None: not reached in the
    budget), ``optimistic`` and ``confirmed`` (the noise range, see the module docstring); and ``last_seconds``,
    the training seconds of the entry's last point."""
    points = points_of(rows)
    out: dict[str, Any] = {"last_seconds": round(float(points[-1][0]["train_seconds"]), 1) if points else None}
    for name, (est, hi, lo) in TESTS.items():
        out[name] = {"seconds": _first(points, est), "optimistic": _first(points, hi), "confirmed": _first(points, lo)}
    return out


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The noise ranges [optimistic, confirmed or never] of two times overlap."""
    if a["optimistic"] is None or b["optimistic"] is None:
        return False
    a_hi = a["confirmed"] if a["confirmed"] is not None else math.inf
    b_hi = b["confirmed"] if b["confirmed"] is not None else math.inf
    return a["optimistic"] <= b_hi and b["optimistic"] <= a_hi


def ratio(entry: dict[str, Any], ref: dict[str, Any], target: str) -> dict[str, Any]:
    """The entry's time to ``target`` over the reference's: ``value`` and ``kind`` ("=", "<" or ">": an
    exact ratio or a bound; None when neither reached it), ``tie`` (their noise ranges overlap) and ``text``."""
    e, r = entry[target], ref[target]
    if e["seconds"] is not None and r["seconds"] is not None:
        value, kind = e["seconds"] / r["seconds"] if r["seconds"] > 0 else math.inf, "="
    elif e["seconds"] is not None and ref["last_seconds"]:
        value, kind = e["seconds"] / ref["last_seconds"], "<"
    elif r["seconds"] is not None and entry["last_seconds"] and r["seconds"] > 0:
        value, kind = entry["last_seconds"] / r["seconds"], ">"
    else:
        return {"value": None, "kind": None, "tie": False, "text": "neither reached it"}
    tie = _overlap(e, r)
    shown = "" if kind == "=" else f"{kind} "
    text = f"{shown}{value:.2f}" + (" (tie within noise)" if tie else "")
    return {"value": round(value, 3), "kind": kind, "tie": tie, "text": text}


def summarise(rows: list[Row], labels: list[str]) -> dict[str, Any]:
    """Per entry (in ``labels`` order; the first is the reference): its times and its ratios to the reference."""
    by_label = {label: [r for r in rows if r["label"] == label] for label in labels}
    times = {label: entry_times(rs) for label, rs in by_label.items() if rs}
    ref = times.get(labels[0]) if labels else None
    out: dict[str, Any] = {}
    for label, t in times.items():
        out[label] = {**t, "ratio_to_reference": {k: ratio(t, ref, k) for k in TARGETS} if ref else None}
    return out


def time_text(t: dict[str, Any]) -> str:
    """``312.4 s [150.2, 450.0]`` or ``not reached in budget``."""
    if t["seconds"] is None:
        return "not reached in budget" + (f" (interval reaches it at {t['optimistic']:.0f} s)"
                                          if t["optimistic"] is not None else "")
    hi = f"{t['confirmed']:.0f}" if t["confirmed"] is not None else "not confirmed"
    return f"{t['seconds']:.0f} s [{t['optimistic']:.0f}, {hi}]"
