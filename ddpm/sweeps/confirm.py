"""The confirmation stage: re-score a finished study's top trials on the held-out test split.

A study selects on one sampling seed of a few hundred images scored against the validation split, so
its winner is partly luck and its numbers are optimistic. A ``confirm:`` block in the sweep file::

    confirm: {top_k: 3, n: 1000, seeds: 3}

re-samples the ``top_k`` best completed trials (by the first objective) and the baseline trial at
their selected guidance weight, ``n`` images per seed, ``seeds`` fresh sampling seeds (never the
selection seed), scores them against the TEST split, and names the winner from those numbers.

Per trial and metric the confirmed value is the mean over seeds; its interval is the mean's, with the
per-seed bootstrap half-widths combined in quadrature (independent seeds: SE of a mean of k estimates
= sqrt(sum SE_i^2) / k). The per-seed values are kept, so the seed-to-seed spread can be read beside
the interval. Trial attributes are frozen once a trial finishes, so the results live in the study user
attribute ``confirmation`` (and ``runs/<study>/confirmation.json``); rerunning skips trials already
confirmed with the same settings.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from ddpm.config import _from_dict, _unknown_in_section
from ddpm.errors import ConfigError
from ddpm.sweeps.record import TrialRecord

CONFIRM_SEED = 10_000        # confirmation seeds are CONFIRM_SEED + s: never the selection seed (guidance.seed)
SPLIT = "test"               # the confirmation is the only stage that scores on the test split


@dataclass
class ConfirmSpec:
    top_k: int = 3
    n: int = 1000
    seeds: int = 3
    baseline: bool = True           # also confirm the baseline trial, so the verdict compares like with like

    def settings(self) -> dict[str, Any]:
        return {**asdict(self), "split": SPLIT}


def parse_confirm(value: Any, src: str) -> Optional[ConfirmSpec]:
    """The sweep file's ``confirm:`` block (None or false: no confirmation; true: the defaults), typed like
    an experiment config section."""
    if value is None or value is False:
        return None
    if not isinstance(value, (dict, bool)):
        raise ConfigError(f"{src}: confirm = {value!r}: must be a mapping like {{top_k: 3, n: 1000, seeds: 3}}")
    spec = _from_dict(ConfirmSpec, {} if value is True else value, "confirm.", src, _unknown_in_section)
    for key, least in (("top_k", 1), ("n", 2), ("seeds", 1)):
        if getattr(spec, key) < least:
            raise ConfigError(f"{src}: confirm.{key} = {getattr(spec, key)!r}: must be an integer >= {least}")
    return spec


# ----------------------------------------------------------------------------------------------
# which trials, and how their per-seed rows combine


def _sign(direction: str) -> float:
    return 1.0 if direction == "minimize" else -1.0


def candidates(trials: list[FrozenTrial], directions: list[str], top_k: int,
               baseline: Optional[int]) -> list[FrozenTrial]:
    """The ``top_k`` completed trials by the first objective (ties: trial number), then the baseline."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values
            and math.isfinite(t.values[0]) and TrialRecord.from_trial(t).run_dir]
    s = _sign(directions[0])
    ranked = sorted(done, key=lambda t: (s * t.values[0], t.number))[:top_k]
    if baseline is not None and all(t.number != baseline for t in ranked):
        ranked += [t for t in done if t.number == baseline]
    return ranked


def combine_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One confirmed row from per-seed guidance rows: mean per metric, interval of the mean (see module doc)."""
    out: dict[str, Any] = {"omega": rows[0]["omega"], "n": rows[0].get("n"), "seeds": len(rows)}
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)
            and not k.endswith(("_lo", "_hi")) and k not in ("omega", "n")]
    for k in keys:
        vals = [float(r[k]) for r in rows if isinstance(r.get(k), (int, float))]
        if len(vals) != len(rows):
            continue
        mean = sum(vals) / len(vals)
        out[k] = mean
        out[f"{k}_per_seed"] = vals
        if all(isinstance(r.get(f"{k}_lo"), (int, float)) and isinstance(r.get(f"{k}_hi"), (int, float)) for r in rows):
            half = math.sqrt(sum(((float(r[f"{k}_hi"]) - float(r[f"{k}_lo"])) / 2) ** 2 for r in rows)) / len(rows)
            out[f"{k}_lo"], out[f"{k}_hi"] = mean - half, mean + half
    return out


# ----------------------------------------------------------------------------------------------
# the stage


def confirm_trial(trial: FrozenTrial, spec: Any, confirm: ConfirmSpec, device: Any = None,
                  show_progress: bool = False, location: Optional[str] = None) -> dict[str, Any]:
    """Re-score one trial's best checkpoint at its selected omega on the test split (``seeds`` x ``n`` images).
    A best.pt this machine does not hold comes from the artifact store at ``location`` (another machine ran it)."""
    from ddpm.checkpoint import load_model
    from ddpm.evaluation import evaluate_guidance
    from ddpm.evaluation.guidance import json_row
    from ddpm.runtime import resolve_device
    from ddpm.sampling import cap_steps

    g = spec.guidance
    dev = resolve_device("auto") if device is None else device
    record = TrialRecord.from_trial(trial)
    source = Path(str(record.run_dir))
    if location is not None and not (source / "checkpoints" / "best.pt").is_file():
        from ddpm.sweeps.trial_outputs import STORE_CACHE, trial_file

        source = trial_file(record, "checkpoints/best.pt", location, Path(spec.study_dir) / STORE_CACHE) or source
    model, cfg, ckpt = load_model(source, dev)
    omega = float(record.best_omega if record.best_omega is not None else cfg.sample.omega)
    rows = []
    steps = cap_steps(g.steps, cfg.diffusion.T)   # the sweep's step budget: at most this trial's T
    for s in range(confirm.seeds):
        rows += evaluate_guidance(model, cfg, omegas=[omega], n=confirm.n, sampler=g.sampler, steps=steps,
                                  eta=g.eta, device=dev, seed=CONFIRM_SEED + s, split=SPLIT,
                                  show_progress=show_progress)
    row = combine_seeds([json_row(r) for r in rows])
    row["checkpoint"] = str(ckpt.get("path"))
    return row


def run_confirmation(study: optuna.Study, spec: Any, log: Callable[[str], None] = print,
                     device: Any = None) -> Optional[dict[str, Any]]:
    """Confirm the study's candidates (skipping those already confirmed with these settings); store and
    return the study's ``confirmation`` record: settings, per-trial rows, ranking, winner, verdict."""
    confirm: Optional[ConfirmSpec] = getattr(spec, "confirm", None)
    if confirm is None:
        return None
    metric = spec.objectives[0][0]
    if metric.row_key is None:
        raise ConfigError(f"{spec.path}: confirm: the first objective ({metric.name}) is not read from the "
                          f"guidance grid, so there is nothing to re-score")
    directions = [d.name.lower() for d in study.directions]
    baseline = study.user_attrs.get("baseline_trial")
    baseline = int(baseline) if isinstance(baseline, (int, float)) else None
    record = dict(study.user_attrs.get("confirmation") or {})
    if record.get("settings") != confirm.settings():
        record = {"settings": confirm.settings(), "trials": {}}
    todo = candidates(study.get_trials(deepcopy=False), directions, confirm.top_k,
                      baseline if confirm.baseline else None)
    if not todo:
        log("confirmation: no completed trial to confirm")
        return None
    from ddpm.sweeps.artifacts import study_artifact_location

    location = study_artifact_location(study, spec.out_dir)   # a candidate's best.pt from another machine
    for t in todo:
        if str(t.number) in record["trials"]:
            continue
        log(f"confirming trial {t.number} on the {SPLIT} split: {confirm.seeds} seed(s) x {confirm.n} images "
            f"at omega {TrialRecord.from_trial(t).best_omega}")
        record["trials"][str(t.number)] = confirm_trial(t, spec, confirm, device, location=location)
        study.set_user_attr("confirmation", record)      # saved trial by trial: an interruption loses one
    key, sign = metric.row_key, _sign(directions[0])
    scored = [(int(n), r) for n, r in record["trials"].items() if isinstance(r.get(key), (int, float))]
    scored.sort(key=lambda nr: (sign * nr[1][key], nr[0]))
    record["metric"], record["row_key"], record["direction"] = metric.name, key, directions[0]
    record["ranking"] = [n for n, _ in scored]
    record["winner"] = scored[0][0] if scored else None
    record["baseline"] = baseline if confirm.baseline else None
    record["verdict"] = confirmation_verdict(record)
    study.set_user_attr("confirmation", record)
    _write_json(spec, record)
    log(record["verdict"])
    return record


def confirmed_score(row: dict[str, Any], key: str) -> Optional[Any]:
    """A confirmed row's ``key`` as a ``ddpm.sweeps.verdict.Score`` (n = all images over the seeds)."""
    from ddpm.sweeps.verdict import Score

    value = row.get(key)
    if not isinstance(value, (int, float)):
        return None
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    ok = isinstance(lo, (int, float)) and isinstance(hi, (int, float))
    n = row.get("n")
    total = int(n) * int(row.get("seeds") or 1) if isinstance(n, (int, float)) else None
    return Score(float(value), float(lo) if ok else None, float(hi) if ok else None, total)


def confirmation_verdict(record: dict[str, Any]) -> str:
    """One sentence: does the confirmed winner beat the baseline beyond noise on the test split?"""
    from ddpm.sweeps.verdict import fmt_interval, verdict

    metric, winner, baseline = record.get("metric"), record.get("winner"), record.get("baseline")
    rows = record.get("trials", {})
    if winner is None:
        return "confirmation: no trial was confirmed"
    st = record["settings"]
    where = f"confirmed on the {st['split']} split ({st['seeds']} seed(s) x {st['n']} images per trial)"
    key = record.get("row_key", metric)
    w = confirmed_score(rows[str(winner)], key)
    if baseline is None or str(baseline) not in rows:
        return f"{where}: trial {winner} is best, {metric} {w.text() if w else '-'}; no baseline was confirmed"
    b = confirmed_score(rows[str(baseline)], key)
    if w is None or b is None:
        return f"{where}: trial {winner} is best; the baseline has no {metric} value"
    if int(baseline) == int(winner):
        return (f"{where}: no config beat the baseline: the baseline (trial {winner}) is best, "
                f"{metric} {fmt_interval(w.value, w.lo, w.hi)}")
    return f"{where}: " + verdict(int(winner), w, int(baseline), b, key, record.get("direction", "minimize"))


def _write_json(spec: Any, record: dict[str, Any]) -> None:
    from ddpm.io import atomic_write_json

    try:
        atomic_write_json(Path(spec.study_dir) / "confirmation.json", record)
    except OSError:
        pass  # the storage holds the record; the file is a convenience copy

