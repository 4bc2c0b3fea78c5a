"""``trials.csv``: one row per trial (number, state, values with their 95% intervals and n, tie with the best,
params, duration, run folder, reason, its W&B run: id, path, URL, local folder). Empty cells: no value, or no interval (history objectives, old rows)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ddpm.io import atomic_write_text
from ddpm.redact import redact_text
from ddpm.report.collect import StudyData
from ddpm.sweeps.verdict import objective_score, ties


WANDB_COLUMNS = ("wandb_run_id", "wandb_run_path", "wandb_url", "wandb_dir")   # TrialRecord fields


def trials_csv(data: StudyData) -> str:
    keys = sorted({k for t in data.trials for k in t.params})
    cols = (["number", "state"] + [f"value_{o.metric}" for o in data.objectives]
            + [f"{o.metric}_{e}" for o in data.objectives for e in ("lo", "hi")] + ["n", "tie_with_best"]
            + [f"params_{k}" for k in keys]
            + ["best_omega", "duration_s", "datetime_start", "datetime_complete", "run_dir", "failure_reason"]
            + list(WANDB_COLUMNS))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    best = data.best()
    winner = objective_score(best.trial, 0, data.objectives[0].metric) if best is not None else None
    for t in data.trials:
        values = t.values or [None] * len(data.objectives)
        scores = [objective_score(t.trial, i, o.metric) for i, o in enumerate(data.objectives)]
        bounds: list[str] = []
        for s in scores:
            bounds += [repr(s.lo), repr(s.hi)] if s is not None and s.has_interval else ["", ""]
        n = next((s.n for s in scores if s is not None and s.n is not None), None)
        tie = None if best is None or t.number == best.number else ties(winner, scores[:1])[0]
        w.writerow([t.number, t.state] + ["" if v is None else repr(float(v)) for v in values]
                   + bounds + ["" if n is None else n, "" if tie is None else str(tie).lower()]
                   + ["" if k not in t.params else t.params[k] for k in keys]
                   + ["" if t.best_omega is None else t.best_omega,
                      "" if t.duration_s is None else round(t.duration_s, 3),
                      t.trial.datetime_start.isoformat() if t.trial.datetime_start else "",
                      t.trial.datetime_complete.isoformat() if t.trial.datetime_complete else "",
                      "" if t.run_dir is None else str(t.run_dir), redact_text(t.failure_reason or "", data.secrets)]
                   + [getattr(t.record, c) or "" for c in WANDB_COLUMNS])
    return buf.getvalue()


def write_trials_csv(path: Path, data: StudyData) -> Path:
    atomic_write_text(path, trials_csv(data))
    return path
