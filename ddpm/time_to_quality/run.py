"""Run a time-to-quality benchmark file into a folder: each entry trains with the shared ``train()`` under the
same wall-clock training budget and is scored by ``evaluate_guidance`` (the code path of ``ddpm eval``) at fixed
intervals of training time and at the end; ``points.csv`` grows point by point, the summaries after each entry.
A rerun into the same folder skips the entries already finished."""
from __future__ import annotations

import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ddpm.machine import load_avg, machine_info
from ddpm.progress import console, make_progress
from ddpm.runtime import resolve_device
from ddpm.time_to_quality.clock import IntervalScorer, Mark
from ddpm.time_to_quality.points import (append_points, check_same_settings, finished_labels, keep_only,
                                         read_points)
from ddpm.time_to_quality.report import write_summaries
from ddpm.time_to_quality.spec import Benchmark, Entry
from ddpm.train import Callback, TrainState, train


class _BudgetBar(Callback):
    """The entry's bar: training seconds out of the budget (a plain line now and then in a log)."""

    def __init__(self, scorer: IntervalScorer, progress: Any, task: Any) -> None:
        self.scorer, self.progress, self.task = scorer, progress, task

    def on_step_end(self, run: TrainState) -> None:
        self.progress.update(self.task, completed=min(self.scorer.train_seconds(), self.scorer.budget_s),
                             info=f"epoch {run.step / max(run.steps_per_epoch, 1):.2f}")


def _point_line(label: str, mark: Mark, rows: list[dict[str, Any]], budget_s: float, spent: float) -> str:
    scores = "  ".join(f"w={r['omega']:g}: acc {r['accuracy']:.3f} [{r['accuracy_lo']:.3f}, {r['accuracy_hi']:.3f}] "
                       f"FID {r['fid']:.2f} [{r['fid_lo']:.2f}, {r['fid_hi']:.2f}]" for r in rows)
    best_acc = max(rows, key=lambda r: r["accuracy"])
    best_fid = min(rows, key=lambda r: r["fid"])
    return (f"{label} {mark.train_seconds:.0f}/{budget_s:g}s{' (end)' if mark.final else ''} epoch {mark.epoch:.2f}: "
            f"{scores}  best acc w={best_acc['omega']:g}, FID w={best_fid['omega']:g}; floor {rows[0]['floor']:.2f}, "
            f"n={rows[0]['n']}; scored in {spent:.0f}s")


def _scorer_fn(bench: Benchmark, entry: Entry, csv_path: Path, device: Any, clf: Any) -> Callable[[TrainState, Mark], None]:
    from ddpm.evaluation import evaluate_guidance

    def score(run: TrainState, mark: Mark) -> None:
        began = time.perf_counter()
        scored = evaluate_guidance(run.eval_model, entry.config, bench.omegas, n=bench.n, sampler=bench.sampler,
                                   steps=bench.steps, eta=bench.eta, device=device, seed=bench.seed,
                                   show_progress=False, classifier=clf, split=bench.split)
        spent = time.perf_counter() - began
        rows = [{"label": entry.label, "final": int(mark.final), "train_seconds": round(mark.train_seconds, 2),
                 "images_seen": mark.images_seen, "epoch": mark.epoch, "step": mark.step, "n": r["n"],
                 "sampler": bench.sampler, "steps": bench.steps, "eta": bench.eta, "split": bench.split,
                 "seed": bench.seed, "score_seconds": round(spent, 2),
                 **{k: float(r[k]) for k in ("omega", "accuracy", "accuracy_lo", "accuracy_hi", "fid", "fid_lo",
                                             "fid_hi", "floor")}} for r in scored]
        append_points(csv_path, rows)
        console.print(_point_line(entry.label, mark, rows, bench.budget_s, spent), markup=False)
    return score


def run_entry(bench: Benchmark, entry: Entry, csv_path: Path, clock: Callable[[], float] = time.perf_counter) -> None:
    """Train one entry to the budget (or to its last epoch, whichever comes first), scoring as it goes."""
    from ddpm.evaluation import get_classifier

    cfg = entry.config
    device = resolve_device(cfg.train.device)
    clf = get_classifier(cfg.data.dataset, cfg.data.root, device, show_progress=False)
    scorer = IntervalScorer(entry.every_s, bench.budget_s, _scorer_fn(bench, entry, csv_path, device, clf), clock)
    console.print(f"{entry.label}: training {entry.config_path} {' '.join(entry.overrides)} for {bench.budget_s:g} s, "
                  f"scoring every {entry.every_s:g} s", markup=False)
    with tempfile.TemporaryDirectory(prefix=f"ttq-{entry.label}-") as tmp, make_progress(transient=True) as progress:
        task = progress.add_task(f"{entry.label} training s", total=bench.budget_s, info="")
        run = train(cfg, run_dir=Path(tmp) / "run", callbacks=[scorer, _BudgetBar(scorer, progress, task)], quiet=True)
        if not run.stop_requested:
            console.print(f"{entry.label}: its {cfg.train.epochs} epochs ended at {scorer.train_seconds():.0f} s, "
                          f"before the budget", markup=False)
        scorer.finish(run)


def _prepare(bench: Benchmark, csv_path: Path) -> set[str]:
    """Check the folder's earlier points and drop the unfinished entries' rows; returns the finished labels."""
    rows = read_points(csv_path)
    check_same_settings(rows, bench.scoring(), csv_path)
    done = finished_labels(rows)
    partial = sorted({r["label"] for r in rows} - done)
    if partial:
        keep_only(csv_path, rows, done)
        console.print(f"{csv_path}: {', '.join(partial)} did not finish; its points are dropped and it trains "
                      f"again from the start", markup=False)
    return done


def run_benchmark(bench: Benchmark, out: Path, command: str,
                  clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Every entry of ``bench`` not yet finished in ``out``; returns the summary (also written to ``out``)."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "points.csv"
    done = _prepare(bench, csv_path)
    meta: dict[str, Any] = {"command": command, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "machine": machine_info(resolve_device(bench.entries[0].config.train.device)),
                            "load_avg_start": load_avg()}

    def summaries() -> dict[str, Any]:
        meta.update(load_avg_end=load_avg(), finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        return write_summaries(out, read_points(csv_path), bench, meta)

    for entry in bench.entries:
        if entry.label in done:
            console.print(f"{entry.label}: already finished in {csv_path}; skipped (another --out folder runs it "
                          f"again)", markup=False)
            continue
        run_entry(bench, entry, csv_path, clock)
        summaries()
    return summaries()
