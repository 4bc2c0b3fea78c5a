"""Speed benchmark: the seed-faithful path against the fast path, side by side (``ddpm bench``).

Training throughput is the real ``ddpm.train.train`` loop (no second loop): ``1 + repeats`` epochs of
``train_steps`` batches each, from the same seed; epoch 1 warms up (oneDNN primitives, torch.compile)
and the later epochs are timed. Both paths start from the same init and see the same images in the
same order with the same noise, so their test noise losses after the same number of steps show the
fast path keeps the numbers (loss parity). Sampling cost is seconds per guided step for a 100-image
grid; a full grid's time is that times the step count (an estimate, labelled so, unless
``full_grid``). An optional quality curve (accuracy and FID from ``ddpm.evaluation``) of samplers
against steps on a trained checkpoint finds the cheapest setting within noise of 400-step DDPM.
"""
from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ddpm.config import ExperimentConfig, config_from_dict, set_dotted
from ddpm.diffusion import ConditionalDDPM
from ddpm.grids import grid_labels
from ddpm.machine import load_avg, machine_info
from ddpm.runtime import resolve_device
from ddpm.sampling import Sampling, sampling_options
from ddpm.train import train

FORMAT = "ddpm-bench/1"
PATHS = ("faithful", "fast")

# Fast-path knobs measured one at a time (``--ablate``): name -> dotted overrides on the fast path.
ABLATIONS: dict[str, dict[str, Any]] = {
    "fp32 contiguous": {"train.precision": "fp32", "train.channels_last": False, "train.compile": False},
    "fp32 channels_last": {"train.precision": "fp32", "train.channels_last": True, "train.compile": False},
    "fp32 channels_last, BatchNorm not folded": {"train.precision": "fp32", "train.channels_last": True,
                                                 "train.compile": False, "train.fold_batchnorm": False},
    "fp32 channels_last, sampling in one pass (no chunks)": {"train.precision": "fp32", "train.channels_last": True,
                                                             "train.compile": False, "train.sample_chunk": 1 << 20},
    "bf16 contiguous": {"train.precision": "bf16", "train.channels_last": False, "train.compile": False},
    "bf16 channels_last": {"train.precision": "bf16", "train.channels_last": True, "train.compile": False},
    "fp32 contiguous + compile": {"train.precision": "fp32", "train.channels_last": False, "train.compile": True},
}

# (sampler, steps, eta) settings of the quality curve; steps None = all T steps (the reference).
QUALITY_SETTINGS: list[tuple[str, Optional[int], float]] = [
    ("ddpm", None, 0.0),
    ("ddpm", 10, 0.0), ("ddpm", 25, 0.0), ("ddpm", 50, 0.0),
    ("ddim", 10, 0.0), ("ddim", 25, 0.0), ("ddim", 50, 0.0),
    ("ddim", 10, 1.0), ("ddim", 25, 1.0), ("ddim", 50, 1.0),
]


@dataclass
class BenchSettings:
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    batch_size: int = 256
    train_steps: int = 3            # optimiser steps per timed epoch (the warm-up epoch has as many)
    repeats: int = 1                # timed epochs per (path, width): median and spread over them
    grid_images: int = 100          # images of the guided grid (10 per class)
    sample_steps: int = 3           # timed sampling steps per (path, width), after one warm-up step
    fast_sampler: str = "ddpm"      # the fast path's grid sampler (respaced ancestral DDPM) ...
    fast_steps: int = 50            # ... with this many steps
    fast_eta: float = 0.0
    test_limit: int = 512           # test images for the same-seed loss parity
    full_grid: bool = False         # time complete grids instead of estimating them from s/step
    cuda_graphs: bool = False       # sample through a captured CUDA graph (CUDA only)
    threads: Optional[int] = None   # torch.set_num_threads (None = torch's default)


# ----------------------------------------------------------------------------------------------
# measurements


def path_config(base: ExperimentConfig, path: str, width: int, s: BenchSettings,
                extra: Optional[dict[str, Any]] = None) -> ExperimentConfig:
    """``base`` on ``path`` at ``width``: ``1 + repeats`` epochs of ``train_steps`` batches, no grids, no W&B."""
    data = base.to_dict()
    for key, value in {"name": f"bench-{path}-{width}", "model.num_feat": width, "train.path": path,
                       "train.batch_size": s.batch_size, "data.limit": s.batch_size * s.train_steps,
                       "data.test_limit": s.test_limit, "train.epochs": 1 + s.repeats,
                       "train.grid_every": 0, "train.ema_decay": None, "tracking.wandb": "disabled",
                       **(extra or {})}.items():
        set_dotted(data, key, value)
    return config_from_dict(data, source="ddpm bench")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_training(cfg: ExperimentConfig, work_dir: Path) -> tuple[dict[str, Any], ConditionalDDPM]:
    """Train ``cfg`` with ``ddpm.train.train``; images/s of the timed epochs and the final test loss."""
    run = train(cfg, run_dir=work_dir / cfg.name, quiet=True)
    warm, timed = run.history[0], run.history[1:] or run.history
    rates = [r["images_per_s"] for r in timed]
    return {"images_per_s": statistics.median(rates), "images_per_s_all": rates,
            "spread": (max(rates) - min(rates)) / statistics.median(rates) if len(rates) > 1 else 0.0,
            "warmup_seconds": warm["seconds"], "steps": cfg.train.epochs * math.ceil(cfg.data.limit / cfg.train.batch_size),
            "test_loss": run.history[-1]["test_loss"]}, run.model


def measure_sampling(model: ConditionalDDPM, cfg: ExperimentConfig, s: BenchSettings,
                     sampler: str, steps: int, eta: float = 0.0, timed_steps: Optional[int] = None
                     ) -> dict[str, Any]:
    """Seconds per guided sampling step of a ``grid_images`` grid on ``cfg.train.path``."""
    device = next(model.parameters()).device
    labels = grid_labels(cfg.model.num_classes, max(1, s.grid_images // cfg.model.num_classes))
    g = torch.Generator(device=device).manual_seed(cfg.train.seed + 1)
    n = steps if timed_steps is None else min(timed_steps, steps)
    warm, timed = (Sampling.from_config(cfg, device, sampler=sampler, steps=k, eta=eta, omega=2.0,
                                        cuda_graph=s.cuda_graphs) for k in (1, n))
    warm.sample(model, labels, g)  # warm-up: one step
    _sync(device)
    start = time.perf_counter()
    timed.sample(model, labels, g)
    _sync(device)
    per_step = (time.perf_counter() - start) / n
    return {"sampler": sampler, "steps": steps, "eta": eta, "images": len(labels), "seconds_per_step": per_step,
            "grid_seconds": per_step * steps, "estimated": n < steps}


def bench_width(base: ExperimentConfig, width: int, s: BenchSettings, work_dir: Path,
                log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """One row: both paths at ``width`` (training, sampling step, grid), ratios and loss parity."""
    row: dict[str, Any] = {"width": width}
    for path in PATHS:
        cfg = path_config(base, path, width, s)
        log(f"width {width}: training, {path} path")
        tr, model = measure_training(cfg, work_dir)
        if path == "faithful":  # the seed's grid: all T steps of Algorithm 2
            sampler, steps, eta = "ddpm", cfg.diffusion.T, 0.0
        else:
            sampler, steps, eta = s.fast_sampler, min(s.fast_steps, cfg.diffusion.T), s.fast_eta
        log(f"width {width}: sampling, {path} path ({sampler} {steps} steps)")
        sa = measure_sampling(model, cfg, s, sampler, steps, eta, None if s.full_grid else s.sample_steps)
        opts = sampling_options(cfg.train, next(model.parameters()).device)
        row[path] = {"train": tr, "sample": sa,
                     "precision": "bf16" if opts["autocast_dtype"] == torch.bfloat16 else "fp32",
                     "channels_last": opts["memory_format"] == torch.channels_last,
                     "compile": cfg.train.compile and path == "fast",
                     "fold_batchnorm": opts["fold_batchnorm"], "chunk": opts["chunk"]}
    f, q = row["faithful"], row["fast"]
    row["ratios"] = {
        "train_images_per_s": q["train"]["images_per_s"] / f["train"]["images_per_s"],
        "sample_seconds_per_step": f["sample"]["seconds_per_step"] / q["sample"]["seconds_per_step"],
        "grid_seconds": f["sample"]["grid_seconds"] / q["sample"]["grid_seconds"],
    }
    lf, lq = f["train"]["test_loss"], q["train"]["test_loss"]
    row["parity"] = {"steps": f["train"]["steps"], "faithful_test_loss": lf, "fast_test_loss": lq,
                     "difference": lq - lf, "relative": (lq - lf) / lf}
    return row


def ablation(base: ExperimentConfig, width: int, s: BenchSettings, work_dir: Path,
             log: Callable[[str], None] = lambda m: None) -> list[dict[str, Any]]:
    """Fast-path training images/s and sampling s/step for each variant in ``ABLATIONS``."""
    rows = []
    for name, extra in ABLATIONS.items():
        cfg = path_config(base, "fast", width, s, {**extra, "name": f"ablate-{len(rows)}-{width}"})
        log(f"ablation at width {width}: {name}")
        tr, model = measure_training(cfg, work_dir)
        sa = measure_sampling(model, cfg, s, "ddpm", s.sample_steps, 0.0)
        rows.append({"variant": name, "width": width, "overrides": extra, "train_images_per_s": tr["images_per_s"],
                     "warmup_seconds": tr["warmup_seconds"], "sample_seconds_per_step": sa["seconds_per_step"],
                     "test_loss": tr["test_loss"]})
    return rows


# ----------------------------------------------------------------------------------------------
# quality against steps


def parse_settings(text: str) -> list[tuple[str, Optional[int], float]]:
    """'ddpm:400,ddpm:50,ddim:50:1' -> [(sampler, steps, eta), ...] (steps 'T' = all steps)."""
    out = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"{item!r}: expected sampler:steps[:eta], e.g. ddim:50:1")
        steps = None if parts[1] in ("T", "all") else int(parts[1])
        out.append((parts[0], steps, float(parts[2]) if len(parts) == 3 else 0.0))
    return out


def quality_curve(checkpoint: str | Path, n: int, omega: float = 2.0,
                  settings: list[tuple[str, Optional[int], float]] = QUALITY_SETTINGS,
                  device: str | torch.device = "cpu", seed: int = 0,
                  log: Callable[[str], None] = lambda m: None) -> list[dict[str, Any]]:
    """Conditional accuracy and FID (``ddpm.evaluation``, the code ``evaluate_guidance`` runs) of ``n``
    guided samples per setting, all from the same seed. Every setting is sampled first and scored at the
    end, so the cached evaluation classifier is only needed (or trained) once sampling is done."""
    from ddpm.checkpoint import load_model
    from ddpm.evaluation.classifier import get_classifier
    from ddpm.evaluation.guidance import generate
    from ddpm.evaluation.metrics import image_metrics, real_floor
    from ddpm.grids import cycle_labels

    model, cfg, _ = load_model(checkpoint, device)
    dev = next(model.parameters()).device
    labels = cycle_labels(n, cfg.model.num_classes)
    sampled = []
    for sampler, steps, eta in settings:
        k = cfg.diffusion.T if steps is None else min(steps, cfg.diffusion.T)
        log(f"quality: sampling {n} images, {sampler} {k} steps eta {eta:g}")
        start = time.perf_counter()
        images = generate(model, cfg, labels, omega, sampler, k, eta, dev, seed)
        sampled.append((sampler, k, eta, images, time.perf_counter() - start))
    clf = get_classifier(cfg.data.dataset, cfg.data.root, dev)
    floor = real_floor(clf, n, cfg.data.dataset, cfg.data.root)
    rows = []
    for sampler, k, eta, images, seconds in sampled:
        m = image_metrics(clf, images, labels, cfg.data.root)
        rows.append({"sampler": sampler, "steps": k, "eta": eta, "omega": omega, "n": n,
                     "accuracy": float(m["accuracy"]), "fid": float(m["fid"]), "fid_floor": float(floor),
                     "seconds": seconds})
    return rows


def noise_tolerance(ref: dict[str, Any], fid_rel: float = 0.15) -> dict[str, float]:
    """What counts as 'within noise' of the reference: 2 standard errors of the accuracy difference of
    two n-sample estimates (binomial), and ``fid_rel`` of the reference FID (FID on a few hundred
    samples moves by about that much between seeds)."""
    p, n = ref["accuracy"], ref["n"]
    return {"accuracy": 2.0 * math.sqrt(2.0 * max(p * (1 - p), 1e-4) / n), "fid": fid_rel * ref["fid"]}


def cheapest_within_noise(rows: list[dict[str, Any]], fid_rel: float = 0.15) -> dict[str, Any]:
    """The setting with the fewest steps whose accuracy and FID are within noise of the most-steps
    ancestral DDPM row (the reference); ties go to the earlier row."""
    ref = max((r for r in rows if r["sampler"] == "ddpm"), default=None, key=lambda r: r["steps"])
    if ref is None:  # no ancestral DDPM row: the row with the most steps is the reference
        ref = max(rows, key=lambda r: r["steps"])
    tol = noise_tolerance(ref, fid_rel)
    ok = [r for r in rows if r["accuracy"] >= ref["accuracy"] - tol["accuracy"] and r["fid"] <= ref["fid"] + tol["fid"]]
    best = min(ok, key=lambda r: r["steps"])  # the reference itself is always in ``ok``
    return {"reference": ref, "tolerance": tol, "choice": best, "speedup_steps": ref["steps"] / best["steps"]}


# ----------------------------------------------------------------------------------------------
# the whole benchmark


def run_bench(base: ExperimentConfig, s: BenchSettings, ablate_width: Optional[int] = None,
              checkpoint: Optional[str | Path] = None, quality_n: int = 200, omega: float = 2.0,
              quality_settings: list[tuple[str, Optional[int], float]] = QUALITY_SETTINGS,
              log: Callable[[str], None] = lambda m: None,
              on_update: Callable[[dict[str, Any]], None] = lambda r: None) -> dict[str, Any]:
    """Everything ``ddpm bench`` measures, as one JSON-ready dict; ``on_update`` sees the partial
    result after each width, the ablation and the quality curve (so a long run can be saved as it goes)."""
    if s.threads:
        torch.set_num_threads(s.threads)
    device = resolve_device(base.train.device)
    result: dict[str, Any] = {"format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "machine": machine_info(device), "settings": asdict(s),
                              "base_config": base.to_dict(), "rows": [], "ablation": [], "quality": None}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ddpm-bench-") as tmp:
        for w in s.widths:
            result["rows"].append(bench_width(base, w, s, Path(tmp), log))
            _finish(result, started, on_update)
        if ablate_width is not None:
            result["ablation"] = ablation(base, ablate_width, s, Path(tmp), log)
            _finish(result, started, on_update)
    if checkpoint is not None:
        rows = quality_curve(checkpoint, quality_n, omega, quality_settings, device=device, log=log)
        result["quality"] = {"checkpoint": str(checkpoint), "rows": rows, **cheapest_within_noise(rows)}
    return _finish(result, started, on_update)


def _finish(result: dict[str, Any], started: float, on_update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    result["targets"] = targets(result)
    result["machine"]["load_avg_end"] = load_avg()
    result["seconds"] = time.perf_counter() - started
    on_update(result)
    return result


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several runs (e.g. the speed rows from one, the quality curve from another):
    rows concatenated in order, the last non-empty ablation and quality kept, targets recomputed."""
    merged = dict(results[0])
    merged["rows"] = [r for res in results for r in res["rows"]]
    merged["ablation"] = next((res["ablation"] for res in reversed(results) if res["ablation"]), [])
    qualities = [res["quality"] for res in results if res.get("quality")]
    merged["quality"] = None
    if qualities:  # quality rows from several runs of the same checkpoint: one curve
        rows = [r for q in qualities for r in q["rows"]]
        merged["quality"] = {"checkpoint": qualities[0]["checkpoint"], "rows": rows, **cheapest_within_noise(rows)}
    merged["merged_from"] = [{"created": res["created"], "command": res.get("command"),
                              "load_avg": res["machine"].get("load_avg"),
                              "load_avg_end": res["machine"].get("load_avg_end")} for res in results]
    merged["targets"] = targets(merged)
    return merged


def targets(result: dict[str, Any], width: int = 64) -> dict[str, Any]:
    """The issue's CPU targets: training >= 1.5x (3x with bf16 units) at num_feat 64; grid >= 10x at equal quality."""
    rows = {r["width"]: r for r in result["rows"]}
    row = rows.get(width) or (result["rows"][0] if result["rows"] else None)
    if row is None:
        return {}
    m = result["machine"]
    need = 3.0 if (m.get("amx_bf16") or m.get("avx512_bf16") or m.get("device") == "cuda") else 1.5
    out: dict[str, Any] = {"width": row["width"], "train_ratio": row["ratios"]["train_images_per_s"],
                           "train_target": need, "train_met": row["ratios"]["train_images_per_s"] >= need}
    q = result.get("quality")
    if q:  # the grid at the quality-preserving step count, from this run's seconds per step
        steps = q["choice"]["steps"]
        fast_grid = row["fast"]["sample"]["seconds_per_step"] * steps
        faithful_grid = row["faithful"]["sample"]["grid_seconds"]
        out.update({"grid_setting": f"{q['choice']['sampler']} {steps} steps eta {q['choice']['eta']}",
                    "grid_ratio_equal_quality": faithful_grid / fast_grid, "grid_target": 10.0,
                    "grid_met": faithful_grid / fast_grid >= 10.0})
    else:
        out.update({"grid_ratio_unverified_quality": row["ratios"]["grid_seconds"], "grid_target": 10.0,
                    "grid_met": None})
    return out


# ----------------------------------------------------------------------------------------------
# reporting


def _fmt_s(v: float) -> str:
    return f"{v:.0f} s" if v >= 100 else f"{v:.1f} s" if v >= 1 else f"{v * 1000:.0f} ms"


def train_rows(result: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in result["rows"]:
        f, q, p = r["faithful"]["train"], r["fast"]["train"], r["parity"]
        out.append([str(r["width"]), f"{f['images_per_s']:.1f}", f"{q['images_per_s']:.1f}",
                    f"{r['ratios']['train_images_per_s']:.2f}x", str(p["steps"]), f"{p['faithful_test_loss']:.4f}",
                    f"{p['fast_test_loss']:.4f}", f"{p['difference']:+.1e}"])
    return out


def sample_rows(result: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in result["rows"]:
        f, q, ra = r["faithful"]["sample"], r["fast"]["sample"], r["ratios"]
        est = " est." if q["estimated"] or f["estimated"] else ""
        out.append([str(r["width"]), _fmt_s(f["seconds_per_step"]), _fmt_s(q["seconds_per_step"]),
                    f"{ra['sample_seconds_per_step']:.2f}x", f"{_fmt_s(f['grid_seconds'])} ({f['steps']})",
                    f"{_fmt_s(q['grid_seconds'])} ({q['steps']})", f"{ra['grid_seconds']:.1f}x{est}"])
    return out


TRAIN_HEADERS = ["width", "faithful img/s", "fast img/s", "ratio", "steps", "test loss faithful",
                 "test loss fast", "difference"]
SAMPLE_HEADERS = ["width", "s/step faithful", "s/step fast", "ratio", "grid faithful (steps)",
                  "grid fast (steps)", "grid ratio"]


def _table(title: str, headers: list[str], rows: list[list[str]]):
    from rich.table import Table

    table = Table(title=title)
    for h in headers:
        table.add_column(h, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def print_result(result: dict[str, Any]) -> None:
    from ddpm.progress import console

    m, s = result["machine"], result["settings"]
    where = f"{m.get('gpu') or m['cpu']}, {m['threads']} threads"
    console.print(_table(f"training, batch {s['batch_size']} ({where})", TRAIN_HEADERS, train_rows(result)))
    console.print(_table(f"{s['grid_images']}-image guided grid ({where})", SAMPLE_HEADERS, sample_rows(result)))
    if any(r["fast"]["sample"]["estimated"] for r in result["rows"]):
        console.print(f"grid times are estimates: seconds per step ({s['sample_steps']} timed steps) x the grid's steps")
    if result["ablation"]:
        console.print(_table(f"fast-path knobs at width {result['ablation'][0]['width']}",
                             ["variant", "train img/s", "warm-up epoch", "sampling s/step", "test loss"],
                             [[a["variant"], f"{a['train_images_per_s']:.1f}", _fmt_s(a["warmup_seconds"]),
                               _fmt_s(a["sample_seconds_per_step"]), f"{a['test_loss']:.4f}"]
                              for a in result["ablation"]]))
    q = result.get("quality")
    if q:
        console.print(_table(f"quality against steps ({q['reference']['n']} samples, omega {q['reference']['omega']})",
                             ["sampler", "steps", "eta", "accuracy", "FID", "seconds"],
                             [[r["sampler"], str(r["steps"]), f"{r['eta']:g}", f"{r['accuracy']:.3f}",
                               f"{r['fid']:.2f}", f"{r['seconds']:.0f}" + (" <" if r == q["choice"] else "")]
                              for r in q["rows"]]))
        c = q["choice"]
        console.print(f"cheapest within noise (accuracy -{q['tolerance']['accuracy']:.3f}, FID +{q['tolerance']['fid']:.2f}): "
                      f"{c['sampler']} {c['steps']} steps eta {c['eta']:g} ({q['speedup_steps']:.1f}x fewer steps)")
    tg = result.get("targets") or {}
    if tg:
        line = (f"target at width {tg['width']}: training {tg['train_ratio']:.2f}x (want >= {tg['train_target']:g}x: "
                f"{'met' if tg['train_met'] else 'not met'})")
        if "grid_ratio_equal_quality" in tg:
            line += (f"; grid at equal quality ({tg['grid_setting']}) {tg['grid_ratio_equal_quality']:.1f}x "
                     f"(want >= 10x: {'met' if tg['grid_met'] else 'not met'})")
        else:
            line += (f"; grid {tg['grid_ratio_unverified_quality']:.1f}x at {s['fast_sampler']} {s['fast_steps']} "
                     "steps (quality not checked: pass --checkpoint)")
        console.print(line)


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(result: dict[str, Any]) -> str:
    """A short markdown report of ``result`` (the table, the knobs, the quality curve, the targets)."""
    m = result["machine"]
    lines = [f"# ddpm bench, {result['created']}", "",
             f"{m.get('gpu') or m['cpu']}, {m['cores']} cores, {m['threads']} threads, torch {m['torch']}; "
             f"load average {m.get('load_avg')} at start, {m.get('load_avg_end')} at end.", "",
             f"Training, batch {result['settings']['batch_size']}:", ""]
    lines += _md_table(TRAIN_HEADERS, train_rows(result))
    lines += ["", f"{result['settings']['grid_images']}-image guided grid (est. = seconds per step x steps):", ""]
    lines += _md_table(SAMPLE_HEADERS, sample_rows(result))
    if result["ablation"]:
        lines += ["", "| fast-path variant | train img/s | warm-up epoch | sampling s/step |", "|---|---:|---:|---:|"]
        lines += [f"| {a['variant']} | {a['train_images_per_s']:.1f} | {_fmt_s(a['warmup_seconds'])} | "
                  f"{_fmt_s(a['sample_seconds_per_step'])} |" for a in result["ablation"]]
    q = result.get("quality")
    if q:
        ref, tol = q["reference"], q["tolerance"]
        lines += ["", f"Quality against steps: `{q['checkpoint']}`, {ref['n']} guided samples per setting, omega "
                      f"{ref['omega']:g}, one seed (FID of {ref['n']} real training images against the test split, "
                      f"the small-sample floor: {ref.get('fid_floor', float('nan')):.2f}):", "",
                  "| sampler | steps | eta | accuracy | FID | sampling s |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['sampler']} | {r['steps']} | {r['eta']:g} | {r['accuracy']:.3f} | {r['fid']:.2f} | "
                  f"{r['seconds']:.0f} |" for r in q["rows"]]
        c = q["choice"]
        lines += ["", f"Cheapest within noise of {ref['steps']}-step DDPM (accuracy at least "
                      f"{ref['accuracy'] - tol['accuracy']:.3f}, 2 SE; FID at most {ref['fid'] + tol['fid']:.2f}, +15%): "
                      f"**{c['sampler']} {c['steps']} steps, eta {c['eta']:g}**."]
    tg = result.get("targets") or {}
    if tg:
        lines += ["", f"Training ratio at width {tg['width']}: {tg['train_ratio']:.2f}x (target {tg['train_target']:g}x, "
                      f"{'met' if tg['train_met'] else 'not met'})."]
        if "grid_ratio_equal_quality" in tg:
            lines += [f"Grid at equal quality ({tg['grid_setting']}) at width {tg['width']}: "
                      f"{tg['grid_ratio_equal_quality']:.1f}x (target 10x, {'met' if tg['grid_met'] else 'not met'})."]
    return "\n".join(lines) + "\n"
