"""Is the winner a winner? Objective values with their intervals, ties with the best trial, and a verdict
against the baseline in words. Used by ``ddpm trials`` / ``ddpm sweep`` and the report.

An objective read from the guidance grid (fid, accuracy) carries the 95% interval of its best-omega row
(``<key>_lo``/``<key>_hi``, see ``ddpm.evaluation.metrics``); an objective from the training history
(test_loss, train_seconds) or a row stored before intervals existed has none, and is never called a tie
or a win "beyond noise". Two trials tie when their intervals overlap. The verdict compares the best trial
with the study's baseline trial: the difference beats noise when it exceeds the two half-widths combined
in quadrature, sqrt(h_best^2 + h_baseline^2) (the half-width of a difference of independent estimates).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ddpm.sweeps.metrics import OBJECTIVE_METRICS
from ddpm.sweeps.record import TrialRecord

DISPLAY = {"fid": "FID", "kid": "KID"}


@dataclass(frozen=True)
class Score:
    """One objective value of one trial, with its interval and n when it has them."""

    value: float
    lo: Optional[float] = None
    hi: Optional[float] = None
    n: Optional[int] = None

    @property
    def has_interval(self) -> bool:
        return self.lo is not None and self.hi is not None and math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def half_width(self) -> Optional[float]:
        return (self.hi - self.lo) / 2 if self.has_interval else None  # type: ignore[operator]

    def text(self) -> str:
        return fmt_interval(self.value, self.lo, self.hi)


def _decimals(half_width: float) -> Optional[int]:
    """Decimals that show one significant figure of the half-width (None: no usable width): the digits
    beyond it are noise."""
    if not math.isfinite(half_width) or half_width <= 0:
        return None
    return max(0, -math.floor(math.log10(half_width)))


def fmt_interval(value: Optional[float], lo: Optional[float] = None, hi: Optional[float] = None) -> str:
    """``240 [221, 262]``: digits set by the interval's width; a value without an interval keeps 4 figures;
    a missing value is "-"."""
    if value is None or not isinstance(value, (int, float)):
        return "-"
    if lo is None or hi is None:
        return f"{value:.4g}"
    d = _decimals((hi - lo) / 2)
    if d is None:
        return f"{value:.4g} [{lo:.4g}, {hi:.4g}]"
    return f"{value:.{d}f} [{lo:.{d}f}, {hi:.{d}f}]"


def fmt_difference(diff: float, half_width: float) -> str:
    """``18 +- 9``, digits set by the half-width."""
    d = _decimals(half_width)
    return f"{diff:.4g} +- {half_width:.4g}" if d is None else f"{diff:.{d}f} +- {half_width:.{d}f}"


def objective_score(trial: Any, index: int, metric: str) -> Optional[Score]:
    """The trial's ``index``-th objective value with the interval of its best-omega guidance row, if any.
    ``trial``: an Optuna FrozenTrial (values, user_attrs). None when the trial has no value."""
    values = getattr(trial, "values", None)
    if not values or index >= len(values) or values[index] is None:
        return None
    value = float(values[index])
    m = OBJECTIVE_METRICS.get(metric)
    row = TrialRecord.from_trial(trial).best_row() if m is not None and m.row_key is not None else None
    if row is None:
        return Score(value)
    key = m.row_key  # type: ignore[union-attr]
    lo, hi, n = row.get(f"{key}_lo"), row.get(f"{key}_hi"), row.get("n")
    ok = isinstance(lo, (int, float)) and isinstance(hi, (int, float))
    return Score(value, float(lo) if ok else None, float(hi) if ok else None,
                 int(n) if isinstance(n, (int, float)) else None)


def ties(best: Optional[Score], others: Sequence[Optional[Score]]) -> list[Optional[bool]]:
    """For each other score: True when its interval overlaps the best's (a tie), False when it does not,
    None when either has no interval (unknown)."""
    out: list[Optional[bool]] = []
    for o in others:
        if best is None or o is None or not best.has_interval or not o.has_interval:
            out.append(None)
        else:
            out.append(bool(o.lo <= best.hi and best.lo <= o.hi))  # type: ignore[operator]
    return out


def _n_text(a: Score, b: Score) -> str:
    if a.n is not None and a.n == b.n:
        return f"n = {a.n} images each"
    return f"n = {a.n if a.n is not None else '?'} and {b.n if b.n is not None else '?'} images"


def verdict(best_number: int, best: Score, baseline_number: int, baseline: Score, metric: str,
            direction: str) -> str:
    """One sentence: does the best trial beat the baseline beyond noise on ``metric``?"""
    name = DISPLAY.get(metric, metric)
    if best_number == baseline_number:
        return f"no config beat the baseline: the baseline (trial {baseline_number}) is the best trial on {name}"
    gain = (baseline.value - best.value) if direction == "minimize" else (best.value - baseline.value)
    if not (best.has_interval and baseline.has_interval):
        return (f"trial {best_number} is better than the baseline (trial {baseline_number}) by {gain:.4g} {name}, "
                f"but {name} has no interval here (it is not read from a guidance grid with intervals), "
                f"so whether that is beyond noise is not known")
    half = math.hypot(best.half_width, baseline.half_width)  # type: ignore[arg-type]
    diff = fmt_difference(gain, half)
    if gain > half:
        return f"trial {best_number} beats the baseline (trial {baseline_number}) by {diff} {name} ({_n_text(best, baseline)})"
    return (f"no config beat the baseline beyond noise: the best, trial {best_number}, is {diff} {name} better "
            f"than the baseline (trial {baseline_number}) ({_n_text(best, baseline)})")


def study_verdict(trials: Sequence[Any], objectives: Sequence[tuple[str, str]], baseline_trial: Optional[int],
                  best_number: Optional[int]) -> str:
    """The verdict line of a study: its best trial against its baseline, on the first objective.
    ``trials``: FrozenTrials; ``objectives``: (metric, direction) pairs."""
    if not objectives:
        return "no objectives recorded: no verdict"
    metric, direction = objectives[0]
    note = f" (on {metric}, the first of {len(objectives)} objectives)" if len(objectives) > 1 else ""
    if best_number is None:
        return "no trial has completed yet: no verdict"
    if baseline_trial is None:
        return "this study ran no baseline trial: no verdict against one"
    by_number = {t.number: t for t in trials}
    base = by_number.get(baseline_trial)
    base_score = objective_score(base, 0, metric) if base is not None else None
    if base_score is None:
        return f"the baseline (trial {baseline_trial}) has no {metric} value (it did not complete): no verdict"
    best_score = objective_score(by_number[best_number], 0, metric)
    assert best_score is not None
    return verdict(best_number, best_score, baseline_trial, base_score, metric, direction) + note
