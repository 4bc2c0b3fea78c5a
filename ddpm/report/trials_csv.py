"""``trials.csv``: one row per trial (number, state, values, params, duration, run folder, reason)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ddpm.io import atomic_write_text
from ddpm.redact import redact_text
from ddpm.report.collect import StudyData


def trials_csv(data: StudyData) -> str:
    keys = sorted({k for t in data.trials for k in t.params})
    cols = (["number", "state"] + [f"value_{o.metric}" for o in data.objectives] + [f"params_{k}" for k in keys]
            + ["best_omega", "duration_s", "datetime_start", "datetime_complete", "run_dir", "failure_reason"])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for t in data.trials:
        values = t.values or [None] * len(data.objectives)
        w.writerow([t.number, t.state] + ["" if v is None else repr(float(v)) for v in values]
                   + ["" if k not in t.params else t.params[k] for k in keys]
                   + ["" if t.best_omega is None else t.best_omega,
                      "" if t.duration_s is None else round(t.duration_s, 3),
                      t.trial.datetime_start.isoformat() if t.trial.datetime_start else "",
                      t.trial.datetime_complete.isoformat() if t.trial.datetime_complete else "",
                      "" if t.run_dir is None else str(t.run_dir), redact_text(t.failure_reason or "", data.secrets)])
    return buf.getvalue()


def write_trials_csv(path: Path, data: StudyData) -> Path:
    atomic_write_text(path, trials_csv(data))
    return path
