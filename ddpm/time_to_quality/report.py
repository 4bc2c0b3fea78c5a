"""The benchmark folder's summaries: ``summary.json``, ``summary.md`` and ``time-to-quality.png`` (accuracy and
FID against training seconds, 95% intervals, 2x floor dotted, one line per entry: the best omega per point)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ddpm.evaluation.metrics import INTERVAL_METHODS
from ddpm.io import atomic_write_json, atomic_write_text
from ddpm.time_to_quality.thresholds import (ACCURACY_TARGET, FID_FLOOR_FACTOR, TARGET_TEXT, TARGETS, points_of,
                                             summarise, time_text)
from ddpm.time_to_quality.thresholds import __doc__ as DEFINITIONS

PNG = "time-to-quality.png"


def best_points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per point: the best accuracy row and the best FID row (their omegas may differ)."""
    out = []
    for p in points_of(rows):
        acc = max(p, key=lambda r: r["accuracy"])
        fid = min(p, key=lambda r: r["fid"])
        out.append({"train_seconds": round(p[0]["train_seconds"], 1), "epoch": p[0]["epoch"], "step": p[0]["step"],
                    "final": bool(max(r["final"] for r in p)), "floor": p[0]["floor"],
                    "accuracy": {k: acc[k] for k in ("omega", "accuracy", "accuracy_lo", "accuracy_hi")},
                    "fid": {k: fid[k] for k in ("omega", "fid", "fid_lo", "fid_hi")}})
    return out


def build_summary(rows: list[dict[str, Any]], bench: Any, meta: dict[str, Any]) -> dict[str, Any]:
    labels = [e.label for e in bench.entries]
    return {"benchmark": str(bench.path), "budget_s": bench.budget_s, "scoring": bench.scoring(),
            "reference": labels[0], "targets": {"accuracy": ACCURACY_TARGET, "fid_floor_factor": FID_FLOOR_FACTOR},
            "definitions": " ".join(DEFINITIONS.split()), "intervals": INTERVAL_METHODS, **meta,
            "entries": {e.label: {"config": e.config_path, "overrides": e.overrides, "every_s": e.every_s,
                                  **summarise(rows, labels).get(e.label, {"points": None}),
                                  "points": best_points([r for r in rows if r["label"] == e.label])}
                        for e in bench.entries}}


def _md_entries(summary: dict[str, Any]) -> list[str]:
    ref = summary["reference"]
    lines = ["| entry | " + " | ".join(f"seconds to {TARGET_TEXT[t]}" for t in TARGETS) + " | "
             + " | ".join(f"ratio ({t})" for t in TARGETS) + " |", "|---" * (1 + 2 * len(TARGETS)) + "|"]
    for label, e in summary["entries"].items():
        if e.get("last_seconds") is None:
            lines.append(f"| {label} | " + " | ".join(["not run"] * (2 * len(TARGETS))) + " |")
            continue
        ratios = (["reference"] * len(TARGETS) if label == ref
                  else [e["ratio_to_reference"][t]["text"] for t in TARGETS])
        lines.append(f"| {label} | " + " | ".join(time_text(e[t]) for t in TARGETS) + " | " + " | ".join(ratios) + " |")
    return lines


def _md_points(summary: dict[str, Any]) -> list[str]:
    lines = ["| entry | train s | epoch | accuracy (best omega) | FID (best omega) | 2x floor |", "|---" * 6 + "|"]
    for label, e in summary["entries"].items():
        for p in e["points"]:
            a, f = p["accuracy"], p["fid"]
            lines.append(f"| {label} | {p['train_seconds']:.0f}{' (end)' if p['final'] else ''} | {p['epoch']:.2f} | "
                         f"{a['accuracy']:.3f} [{a['accuracy_lo']:.3f}, {a['accuracy_hi']:.3f}] (w={a['omega']:g}) | "
                         f"{f['fid']:.2f} [{f['fid_lo']:.2f}, {f['fid_hi']:.2f}] (w={f['omega']:g}) | "
                         f"{FID_FLOOR_FACTOR * p['floor']:.2f} |")
    return lines


def summary_markdown(summary: dict[str, Any]) -> str:
    s = summary["scoring"]
    load = f"load average at start {summary['load_avg_start']}, at end {summary['load_avg_end']}"
    head = [f"# Time to quality: {Path(summary['benchmark']).name}", "",
            f"Command: `{summary['command']}`", "",
            f"Machine: {summary['machine'].get('cpu')} ({summary['machine'].get('cores')} cores, "
            f"{summary['machine'].get('device')}), torch {summary['machine'].get('torch')}; {load}.", "",
            f"Each entry trains for {summary['budget_s']:g} s of wall-clock training (scoring excluded) and is "
            f"scored every `every_s` training seconds and at the end: n = {s['n']} images per omega "
            f"(omegas {', '.join(f'{w:g}' for w in s['omegas'])}), {s['sampler']} {s['steps']} steps, "
            f"eta {s['eta']:g}, seed {s['seed']}, against the {s['split']} split. Times are "
            f"`seconds [optimistic, confirmed]`; the reference is **{summary['reference']}**.", ""]
    notes = ["", "How the times and ratios are defined:", "", "> " + summary["definitions"], "",
             f"![accuracy and FID against training seconds]({PNG})", ""]
    return "\n".join(head + _md_entries(summary) + notes + ["## Points", ""] + _md_points(summary)) + "\n"


def plot(summary: dict[str, Any], png: Path) -> bool:
    """The two panels; False (no file) without matplotlib."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax_acc, ax_fid) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, e in summary["entries"].items():
        pts = e["points"]
        if not pts:
            continue
        x = [p["train_seconds"] for p in pts]
        for ax, key in ((ax_acc, "accuracy"), (ax_fid, "fid")):
            y = [p[key][key] for p in pts]
            err = [[v - p[key][f"{key}_lo"] for v, p in zip(y, pts)], [p[key][f"{key}_hi"] - v for v, p in zip(y, pts)]]
            line = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
        ax_fid.plot(x, [FID_FLOOR_FACTOR * p["floor"] for p in pts], ":", color=line[0].get_color(), lw=1)
    n = summary["scoring"]["n"]
    ax_acc.axhline(ACCURACY_TARGET, color="k", ls=":", lw=1)
    ax_acc.set(xlabel="training seconds", ylabel=f"conditional accuracy ({summary['scoring']['split']})",
               title=f"accuracy (best omega), n={n}, 95% Wilson")
    ax_fid.set(xlabel="training seconds", ylabel="FID (classifier features)", yscale="log",
               title=f"FID (best omega), n={n}, 95% bootstrap; dotted: 2x floor")
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


def write_summaries(out: Path, rows: list[dict[str, Any]], bench: Any, meta: dict[str, Any]) -> dict[str, Any]:
    summary = build_summary(rows, bench, meta)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    plot(summary, out / PNG)
    return summary
