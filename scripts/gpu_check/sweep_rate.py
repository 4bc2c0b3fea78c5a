"""Trials per hour of one sweep run, read back from its Optuna storage.

    python scripts/gpu_check/sweep_rate.py STORAGE_URL STUDY WORKERS WALL_SECONDS

Prints one JSON line: finished trials (complete + pruned), failed ones, trials/hour over the command's wall
time (worker start-up included) and over the span from the first trial's start to the last one's end.
"""
from __future__ import annotations

import json
import sys


def main(url: str, study_name: str, workers: str, wall: str) -> int:
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name=study_name, storage=url).get_trials(deepcopy=False)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    wall_s = float(wall)
    span = None
    if done:
        span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    print(json.dumps({
        "workers": int(workers), "finished": len(done), "failed": sum(t.state == TrialState.FAIL for t in trials),
        "wall_seconds": round(wall_s, 1), "trials_per_hour_wall": round(3600 * len(done) / wall_s, 1),
        "span_seconds": None if span is None else round(span, 1),
        "trials_per_hour_span": round(3600 * len(done) / span, 1) if span else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
