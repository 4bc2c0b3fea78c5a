"""The seed's 10 epochs on the fast path beside the seed notebook's own per-epoch losses.

    python scripts/gpu_check/seed_epochs.py RUN_DIR OUT.md

Reads RUN_DIR/metrics.jsonl (a ``ddpm train experiments/seed.yaml data.val_size=0`` run: all 60k training
images, as the seed) and writes a markdown table; prints one JSON line with the totals and the checks
against issue 15's targets (losses within 10% of the seed's at every epoch, 10 epochs in under 25 s).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

# /work/shared/seed/ConditionalDDPM-notebook.txt, section 2.4 (`solver(..., exp_name='test_3')`)
SEED_TRAIN = [0.1909, 0.0901, 0.0787, 0.0722, 0.0682, 0.0666, 0.0640, 0.0624, 0.0604, 0.0598]
SEED_TEST = [0.1088, 0.0835, 0.0770, 0.0739, 0.0713, 0.0645, 0.0666, 0.0612, 0.0640, 0.0626]
TOLERANCE = 0.10
SECONDS_TARGET = 25.0


def main(run_dir: str, out: str) -> int:
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    lines = ["| epoch | train loss | seed train | diff | test loss | seed test | diff | img/s | seconds |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    worst = 0.0
    for r in rows:
        e = r["epoch"]
        seed_tr = SEED_TRAIN[e - 1] if e <= len(SEED_TRAIN) else None
        seed_te = SEED_TEST[e - 1] if e <= len(SEED_TEST) else None
        d_tr = (r["train_loss"] / seed_tr - 1) if seed_tr else None
        d_te = (r["test_loss"] / seed_te - 1) if seed_te else None
        worst = max([worst] + [abs(d) for d in (d_tr, d_te) if d is not None])
        show = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        pct = lambda v: "-" if v is None else f"{100 * v:+.1f}%"  # noqa: E731
        lines.append(f"| {e} | {r['train_loss']:.4f} | {show(seed_tr)} | {pct(d_tr)} | {r['test_loss']:.4f} | "
                     f"{show(seed_te)} | {pct(d_te)} | {r['images_per_s']:.0f} | {r['seconds']:.2f} |")
    seconds = sum(r["seconds"] for r in rows)
    summary = {"epochs": len(rows), "train_seconds": round(seconds, 2),
               "images_per_s_last": round(rows[-1]["images_per_s"], 1) if rows else None,
               "worst_relative_difference": round(worst, 4),
               "losses_within_10pct": len(rows) == len(SEED_TRAIN) and worst <= TOLERANCE,
               "under_25s": len(rows) == len(SEED_TRAIN) and seconds < SECONDS_TARGET}
    text = ["# The seed's epochs on the fast path, beside the seed notebook's", "",
            f"Run: `{run_dir}`; training seconds exclude the per-epoch test loss. Seed numbers: the notebook's "
            f"`solver` output (one run, Colab GPU). Targets: within {TOLERANCE:.0%} at every epoch; "
            f"{len(SEED_TRAIN)} epochs in under {SECONDS_TARGET:.0f} s.", "", *lines, "",
            f"total training seconds {seconds:.2f}; worst relative difference {100 * worst:.1f}%; "
            f"losses within 10%: {summary['losses_within_10pct']}; under 25 s: {summary['under_25s']}", ""]
    Path(out).write_text("\n".join(text))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
