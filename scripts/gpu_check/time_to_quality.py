"""Time to quality: train one config with the shared ``train()`` and score it on the validation split after
every epoch (same sampler, n, omega and seed at each point), against wall-clock training time.

    python scripts/gpu_check/time_to_quality.py experiments/seed.yaml train.epochs=10 --n 1000 \
        --steps 100 --csv ttq.csv --png ttq.png --run-dir /tmp/ttq

Training time excludes the scoring itself (it is measured around each evaluation and subtracted). Each point
carries n and its 95% intervals (accuracy: Wilson; FID: bootstrap), from ``evaluate_guidance``. Thresholds:
conditional accuracy >= 0.97 and FID <= 2x the real-data floor at the same n (issue 15's CPU target).
A stand-in until ``ddpm bench`` has a time-to-quality mode; it writes a CSV and, with matplotlib, a plot.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

ACCURACY_TARGET = 0.97
FID_FLOOR_FACTOR = 2.0
COLUMNS = ("label", "epoch", "train_seconds", "eval_seconds", "n", "sampler", "steps", "omega",
           "accuracy", "accuracy_lo", "accuracy_hi", "fid", "fid_lo", "fid_hi", "floor")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="experiment YAML")
    p.add_argument("overrides", nargs="*", help="dotted overrides, key.sub=value")
    p.add_argument("--label", default=None, help="name of this curve (default: the config's name)")
    p.add_argument("--n", type=int, default=1000, help="samples per point (default 1000)")
    p.add_argument("--sampler", default="ddpm", help="sampler of every point (default ddpm)")
    p.add_argument("--steps", type=int, default=100, help="sampling steps of every point (default 100)")
    p.add_argument("--omega", type=float, default=2.0, help="guidance weight (default 2, the seed's)")
    p.add_argument("--csv", required=True, help="CSV to append the points to")
    p.add_argument("--png", help="plot of every curve in the CSV (needs matplotlib)")
    p.add_argument("--run-dir", required=True, help="scratch run folder (must not hold a run)")
    args = p.parse_args(argv)

    from ddpm.config import load_config
    from ddpm.evaluation import evaluate_guidance, get_classifier
    from ddpm.runtime import resolve_device
    from ddpm.train import Callback, train

    cfg = load_config(args.config, list(args.overrides) + ["tracking.wandb=disabled", "train.grid_every=0"])
    label = args.label or cfg.name
    device = resolve_device(cfg.train.device)
    clf = get_classifier(cfg.data.dataset, cfg.data.root, device, show_progress=False)
    points: list[dict[str, Any]] = []

    class Score(Callback):
        def on_train_start(self, run) -> None:
            self.start, self.scoring = time.perf_counter(), 0.0

        def on_epoch_end(self, run, record) -> None:
            now = time.perf_counter()
            (row,) = evaluate_guidance(run.eval_model, cfg, [args.omega], n=args.n, sampler=args.sampler,
                                       steps=args.steps, device=device, show_progress=False, classifier=clf,
                                       split="val")
            spent = time.perf_counter() - now
            point = {"label": label, "epoch": record["epoch"], "train_seconds": now - self.start - self.scoring,
                     "eval_seconds": spent, "n": row["n"], "sampler": args.sampler, "steps": args.steps,
                     "omega": args.omega, **{k: row[k] for k in COLUMNS[8:]}}
            self.scoring += spent
            points.append(point)
            print(f"{label} epoch {point['epoch']}: {point['train_seconds']:.1f}s trained  "
                  f"accuracy {row['accuracy']:.3f} [{row['accuracy_lo']:.3f}, {row['accuracy_hi']:.3f}]  "
                  f"FID {row['fid']:.2f} [{row['fid_lo']:.2f}, {row['fid_hi']:.2f}] (floor {row['floor']:.2f}, "
                  f"n={row['n']})", flush=True)

    train(cfg, run_dir=args.run_dir, callbacks=[Score()], quiet=True)
    out = Path(args.csv)
    new = not out.exists()
    with out.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        w.writerows(points)
    print(json.dumps({"label": label, **thresholds(points)}))
    if args.png:
        plot(out, Path(args.png))
    return 0


def thresholds(points: list[dict[str, Any]]) -> dict[str, Optional[float]]:
    """Training seconds at the first point meeting each target (None: not reached)."""
    def first(ok) -> Optional[float]:
        return next((round(float(p["train_seconds"]), 2) for p in points if ok(p)), None)
    acc = lambda p: float(p["accuracy"]) >= ACCURACY_TARGET  # noqa: E731
    fid = lambda p: float(p["fid"]) <= FID_FLOOR_FACTOR * float(p["floor"])  # noqa: E731
    return {"seconds_to_accuracy_0.97": first(acc), "seconds_to_fid_2x_floor": first(fid),
            "seconds_to_both": first(lambda p: acc(p) and fid(p))}


def plot(csv_path: Path, png: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: no plot", file=sys.stderr)
        return
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    fig, (ax_acc, ax_fid) = plt.subplots(1, 2, figsize=(10, 4))
    for label in dict.fromkeys(r["label"] for r in rows):
        rs = [r for r in rows if r["label"] == label]
        x = [float(r["train_seconds"]) for r in rs]
        for ax, key in ((ax_acc, "accuracy"), (ax_fid, "fid")):
            y = [float(r[key]) for r in rs]
            lo = [float(r[f"{key}_lo"]) for r in rs]
            hi = [float(r[f"{key}_hi"]) for r in rs]
            ax.errorbar(x, y, yerr=[[a - b for a, b in zip(y, lo)], [b - a for a, b in zip(y, hi)]],
                        marker="o", capsize=3, label=label)
        ax_fid.plot(x, [FID_FLOOR_FACTOR * float(r["floor"]) for r in rs], "k:", lw=1)
    n = rows[0]["n"] if rows else "?"
    ax_acc.axhline(ACCURACY_TARGET, color="k", ls=":", lw=1)
    ax_acc.set(xlabel="training seconds", ylabel="conditional accuracy (val)", title=f"accuracy, n={n}, 95% CI")
    ax_fid.set(xlabel="training seconds", ylabel="FID to the validation split", yscale="log",
               title=f"FID, n={n}, 95% CI (dotted: 2x real floor)")
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    from ddpm.errors import DDPMError

    try:
        sys.exit(main())
    except DDPMError as e:  # a bad config: one line, as the CLI prints it
        print(f"time_to_quality: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
