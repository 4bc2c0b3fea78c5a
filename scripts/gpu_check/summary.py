"""Collect the GPU check's stages into one summary.json.

    python scripts/gpu_check/summary.py STAGES.tsv OUT.json [DRY]

STAGES.tsv: one line per stage, ``name<TAB>status<TAB>rc<TAB>seconds<TAB>result-file``; a result file holds
the stage's JSON lines (each line one object; several objects of one stage become a list). ``targets``
holds issue 15's H200 targets beside what was measured (None: the stage did not produce it).
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path


def machine() -> dict:
    info = {"python": platform.python_version(), "host": platform.node()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except Exception as e:  # the summary is written whatever broke
        info["torch"] = f"unavailable: {e}"
    return info


def _result(stages: dict, name: str) -> dict:
    r = stages.get(name, {}).get("result")
    return r if isinstance(r, dict) else {}


def targets(stages: dict, out_dir: Path) -> dict:
    """Issue 15's H200 targets against the measured figures."""
    t: dict = {}
    try:
        rows = {r["width"]: r for r in json.loads((out_dir / "bench.json").read_text())["rows"]}
    except (OSError, ValueError, KeyError, TypeError):
        rows = {}
    w64 = rows.get(64, {}).get("fast", {})
    img_s = w64.get("train", {}).get("images_per_s")
    grid = w64.get("sample", {})
    t["train_images_per_s_w64"] = {"want": ">= 30000", "got": img_s, "met": None if img_s is None else img_s >= 30000}
    grid_s = grid.get("grid_seconds") if grid.get("steps") == 400 and grid.get("images") == 100 else None
    t["grid_400_steps_100_images_w64_seconds"] = {"want": "< 2", "got": grid_s,
                                                  "met": None if grid_s is None else grid_s < 2}
    seed = _result(stages, "seed-epochs")
    t["seed_10_epochs_seconds"] = {"want": "< 25", "got": seed.get("train_seconds"), "met": seed.get("under_25s")}
    t["seed_losses_within_10pct"] = {"want": "every epoch", "got": seed.get("worst_relative_difference"),
                                     "met": seed.get("losses_within_10pct")}
    rates = {r.get("workers"): r.get("trials_per_hour_wall") for r in
             (_result(stages, n) for n in stages if n.startswith("sweep-") and not n.endswith("-run"))}
    one, many = rates.pop(1, None), max((v for v in rates.values() if v), default=None)
    ratio = round(many / one, 2) if one and many else None
    t["trials_per_hour_4_workers_over_1"] = {"want": ">= 3", "got": ratio, "met": None if ratio is None else ratio >= 3}
    return t


def main(stages_tsv: str, out: str, dry: str = "0") -> int:
    stages = {}
    for line in Path(stages_tsv).read_text().splitlines():
        name, status, rc, seconds, result = (line.split("\t") + [""] * 5)[:5]
        objs = []
        if result and Path(result).is_file():
            for text in Path(result).read_text().splitlines():
                text = text.strip()
                if text.startswith("{"):
                    try:
                        objs.append(json.loads(text))
                    except ValueError:
                        pass
        stages[name] = {"status": status, "rc": int(rc), "seconds": float(seconds),
                        "result": objs[0] if len(objs) == 1 else (objs or None)}
    summary = {"dry_run": dry == "1", "machine": machine(), "targets": targets(stages, Path(out).parent),
               "stages": stages,
               "ok": all(s["status"] in ("ok", "skipped") for s in stages.values())}
    Path(out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: (v["status"], v["seconds"]) for k, v in stages.items()}))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
