"""What a trial is scored on (objectives) and what it is pruned on (per-epoch values): two registries.

An objective metric reads the trial's guidance table at its best omega (``fid``, ``accuracy``, ...)
or its training history (``val_loss``); a prune metric is a per-epoch value comparable across
trials, e.g. a quick sample FID (``sample_fid``) rather than the noise loss, whose scale depends on
the beta schedule and T. Everything here selects, so it reads the validation split: the guidance table
and quick FIDs are scored against it, and ``val_loss`` (and ``test_loss``, its old name, still accepted in
sweep files) reads the validation noise loss, or the test noise loss of a run without a validation split
(``data.val_size: 0``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ddpm.registry import Registry

Row = dict[str, Any]


@dataclass(frozen=True)
class ObjectiveMetric:
    name: str
    direction: str                                  # minimize | maximize: the natural sense
    row_key: Optional[str]                          # key in a guidance row (None: from the history)
    from_history: Optional[Callable[[list[dict[str, Any]]], float]] = None

    @property
    def needs_guidance(self) -> bool:
        return self.row_key is not None

    def value(self, best_row: Optional[Row], history: list[dict[str, Any]]) -> float:
        if self.row_key is not None:
            assert best_row is not None
            return float(best_row[self.row_key])
        assert self.from_history is not None
        return float(self.from_history(history))


OBJECTIVE_METRICS: Registry[ObjectiveMetric] = Registry("objective metric")
register_objective_metric = OBJECTIVE_METRICS.add_named


def selection_loss(record: dict[str, Any]) -> float:
    """An epoch's selection noise loss: ``val_loss``, or ``test_loss`` when the run has no validation split."""
    return float(record["val_loss"] if "val_loss" in record else record["test_loss"])


def _min_selection_loss(history: list[dict[str, Any]]) -> float:
    return min((selection_loss(r) for r in history), default=math.nan)


def _train_seconds(history: list[dict[str, Any]]) -> float:
    return sum(r.get("seconds", 0.0) for r in history)


register_objective_metric(ObjectiveMetric("fid", "minimize", "fid"))                # FID at the best omega
register_objective_metric(ObjectiveMetric("accuracy", "maximize", "accuracy"))      # by the evaluation classifier
register_objective_metric(ObjectiveMetric("diversity", "maximize", "diversity"))    # within-class diversity
register_objective_metric(ObjectiveMetric("sample_seconds", "minimize", "seconds"))  # to sample the row's images
# lowest validation noise loss (the test noise loss without a validation split; comparable only at fixed
# schedule and T); test_loss is its old name, kept for existing sweep files
register_objective_metric(ObjectiveMetric("val_loss", "minimize", None, _min_selection_loss))
register_objective_metric(ObjectiveMetric("test_loss", "minimize", None, _min_selection_loss))
register_objective_metric(ObjectiveMetric("train_seconds", "minimize", None, _train_seconds))  # summed over epochs


@dataclass(frozen=True)
class PruneMetric:
    name: str
    direction: str
    needs_samples: bool     # computed per epoch with ddpm.evaluation.quick_metric (costs sampling time)
    from_record: Optional[Callable[[dict[str, Any]], float]] = None   # default: record[name]

    def value(self, record: dict[str, Any]) -> float:
        return float(self.from_record(record) if self.from_record is not None else record[self.name])


PRUNE_METRICS: Registry[PruneMetric] = Registry("prune metric")
register_prune_metric = PRUNE_METRICS.add_named


register_prune_metric(PruneMetric("sample_fid", "minimize", True))         # quick FID of a few samples per epoch
register_prune_metric(PruneMetric("sample_accuracy", "maximize", True))    # quick conditional accuracy per epoch
# validation noise loss, else the test noise loss (only comparable when schedule and T are fixed); test_loss:
# its old name, kept for existing sweep files
register_prune_metric(PruneMetric("val_loss", "minimize", False, selection_loss))
register_prune_metric(PruneMetric("test_loss", "minimize", False, selection_loss))


def best_guidance_row(rows: list[Row], metric: ObjectiveMetric) -> Row:
    """The row (one omega) that is best by ``metric`` (``ddpm.evaluation.guidance.best_row``); NaN rows lose."""
    from ddpm.evaluation.guidance import best_row

    assert metric.row_key is not None and rows
    return best_row(rows, metric.row_key, lower=metric.direction == "minimize")


def throughput(trials: list[Any]) -> Optional[dict[str, float]]:
    """Sweep-level speed from Optuna's trial timestamps: finished (complete or pruned) trials per hour of
    wall time, from the first start to the last finish, and the mean number of trials running at once
    (sum of durations / wall time: about the worker count when the workers were kept busy). None before a
    trial has finished."""
    done = [t for t in trials if t.datetime_start and t.datetime_complete
            and t.state.name in ("COMPLETE", "PRUNED")]
    if not done:
        return None
    start = min(t.datetime_start for t in trials if t.datetime_start)
    wall = (max(t.datetime_complete for t in done) - start).total_seconds()
    busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    return {"finished": float(len(done)), "wall_s": wall, "trials_per_hour": 3600.0 * len(done) / max(wall, 1e-9),
            "parallelism": busy / max(wall, 1e-9)}


def throughput_text(trials: list[Any]) -> Optional[str]:
    tp = throughput(trials)
    if tp is None:
        return None
    return (f"{tp['trials_per_hour']:.1f} trials/hour ({tp['finished']:.0f} finished in {tp['wall_s'] / 60:.1f} min "
            f"of wall time; {tp['parallelism']:.2f} trials running at once on average)")


def omega_at_edge(rows: list[Row], best_omega: Any) -> Optional[str]:
    """A warning when the best guidance weight is an end of the grid tried, else None.

    The largest weight tried is always flagged: the optimum may lie beyond it. The smallest is flagged
    unless it is 0, the lowest weight a sweep accepts (``guidance.omegas`` >= 0; 0 is the conditional
    model unguided). One grid point (nothing to compare) is never flagged. Used by the console line,
    ``ddpm trials`` and the report."""
    omegas = sorted({float(r["omega"]) for r in rows if isinstance(r.get("omega"), (int, float))})
    if len(omegas) < 2 or not isinstance(best_omega, (int, float)) or isinstance(best_omega, bool):
        return None
    w = float(best_omega)
    if math.isclose(w, omegas[-1]):
        return f"best omega {w:g} is the largest tried; the optimum may lie beyond it"
    if math.isclose(w, omegas[0]) and w > 0:
        return f"best omega {w:g} is the smallest tried; the optimum may lie below it"
    return None
