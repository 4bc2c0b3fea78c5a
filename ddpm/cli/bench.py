"""``ddpm bench``."""
from __future__ import annotations

import argparse
from pathlib import Path

from ddpm.cli import Command, number, register_command
from ddpm.errors import ConfigError


def parse_ints(text: str, flag: str) -> list[int]:
    if text.strip().lower() == "none":  # quality curve (or ablation) only
        return []
    try:
        values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated integers, e.g. 32,64,128") from None
    if not values or any(v < 8 or v % 8 for v in values):  # "none" returns above
        raise ConfigError(f"{flag} {text!r}: widths must be positive multiples of 8 (the net's GroupNorm has 8 groups)")
    return values


@register_command("bench")
class Bench(Command):
    """Benchmark the seed-faithful path against the fast path, side by side, e.g.
    ddpm bench --widths 32,64,128
    ddpm bench --quick --widths 64 --ablate 64
    ddpm bench --widths 64 --checkpoint runs/seed --quality-n 200
    ddpm bench --time-to-quality benchmarks/time-to-quality-cpu.yaml --out DIR
    Training images/s (the real train loop, after a warm-up epoch), seconds per guided sampling step
    for a 100-image grid, the grid's time (faithful: 400-step DDPM; fast: --fast-sampler/--fast-steps),
    the ratios and the same-seed test-loss parity. Writes JSON (and a markdown table beside it).
    --time-to-quality FILE trains each entry of a benchmark file under the same wall-clock budget, scores it
    at fixed intervals of training time and writes points.csv, summary.json/.md and time-to-quality.png to
    --out DIR (a rerun into DIR skips the entries already finished)."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("overrides", nargs="*", help="dotted overrides of the base config, key.sub=value")
        p.add_argument("--config", help="base experiment YAML (default: the seed's DMConfig)")
        p.add_argument("--widths", default="32,64,128", help="model.num_feat values (default 32,64,128)")
        p.add_argument("--quick", action="store_true",
                       help="batch 64, 2 timed steps, 2 sampling steps, 128 test images (a smoke run); "
                            "data.test_limit=N sets the parity's test images")
        p.add_argument("--batch-size", type=number(1, integer=True), help="training batch (default 256; 64 with --quick)")
        p.add_argument("--train-steps", type=number(1, integer=True), help="optimiser steps per timed epoch (default 3)")
        p.add_argument("--repeats", type=number(1, integer=True), default=1, help="timed epochs per path and width (default 1)")
        p.add_argument("--sample-steps", type=number(1, integer=True), help="timed sampling steps per path and width (default 3)")
        p.add_argument("--grid-images", type=number(1, integer=True), default=100, help="images of the guided grid (default 100)")
        p.add_argument("--fast-sampler", default="ddpm", help="the fast path's grid sampler (default ddpm)")
        p.add_argument("--fast-steps", type=number(1, integer=True), default=50, help="the fast path's grid steps (default 50)")
        p.add_argument("--fast-eta", type=number(0), default=0.0, help="DDIM eta of the fast grid (default 0)")
        p.add_argument("--full-grid", action="store_true", help="time whole grids, not s/step x steps")
        p.add_argument("--cuda-graphs", action="store_true", help="fast sampling through a CUDA graph (CUDA only)")
        p.add_argument("--threads", type=number(1, integer=True), help="torch.set_num_threads (default: torch's choice)")
        p.add_argument("--ablate", type=number(1, integer=True), metavar="WIDTH", help="also time each fast-path knob at WIDTH")
        p.add_argument("--checkpoint", help="trained run folder or .pt: add the quality-against-steps curve")
        p.add_argument("--quality-n", type=number(1, integer=True), default=200, help="samples per quality setting (default 200)")
        p.add_argument("--quality-settings", help="sampler:steps[:eta] list for the quality curve (default: "
                       "ddpm:T, ddpm 10/25/50, ddim eta 0 and 1 at 10/25/50), e.g. ddpm:T,ddim:10:1")
        p.add_argument("--omega", type=number(), default=2.0, help="guidance weight of the quality curve")
        p.add_argument("--merge", nargs="+", metavar="JSON",
                       help="measure nothing: merge earlier bench JSON files (rows, ablation, quality) into --out")
        p.add_argument("--time-to-quality", metavar="FILE",
                       help="run a time-to-quality benchmark file (e.g. benchmarks/time-to-quality-cpu.yaml)")
        p.add_argument("--out", help="JSON path (default reports/benchmarks/<device>-<date>.json); "
                                     "a .md table is written beside it; with --time-to-quality the folder "
                                     "(default reports/benchmarks/time-to-quality-<file>-<date>/)")

    def take_action(self, args: argparse.Namespace) -> int:
        from ddpm.bench import print_result
        from ddpm.bench_results import merge_files, run_to_file
        from ddpm.config import load_config
        from ddpm.progress import console

        if args.time_to_quality:
            return _time_to_quality(args)
        if args.merge:
            result, out = merge_files(args.merge, args.out)
        else:
            base = load_config(args.config, list(args.overrides))
            result, out = run_to_file(base, _settings(args, base.data.test_limit), args.out,
                                      command="ddpm bench " + " ".join(_argv_of(args)),
                                      log=lambda m: console.print(f"[dim]{m}[/]"), ablate_width=args.ablate,
                                      checkpoint=args.checkpoint, quality_n=args.quality_n, omega=args.omega,
                                      quality_settings=_quality_settings(args.quality_settings))
        print_result(result)
        print(f"wrote {out} and {out.with_suffix('.md')}")
        return 0


def _time_to_quality(args: argparse.Namespace) -> int:
    """``--time-to-quality FILE [--out DIR]``: the other measurements' flags do not apply."""
    import datetime
    import shlex

    from ddpm.time_to_quality import load_benchmark, run_benchmark

    if args.overrides or args.merge or args.checkpoint or args.config:
        raise ConfigError("--time-to-quality takes its configs from the benchmark file: drop the overrides, "
                          "--config, --checkpoint and --merge")
    bench = load_benchmark(args.time_to_quality)
    out = Path(args.out or f"reports/benchmarks/time-to-quality-{bench.path.stem}-{datetime.date.today()}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: not a folder")
    command = f"ddpm bench --time-to-quality {shlex.quote(args.time_to_quality)} --out {shlex.quote(str(out))}"
    run_benchmark(bench, out, command)
    print(f"wrote {out}/points.csv, summary.json, summary.md and time-to-quality.png")
    return 0


def _settings(args: argparse.Namespace, test_limit: int | None):
    """The flags as ``BenchSettings`` (``--quick`` picks the smoke-run defaults of the unset ones)."""
    from ddpm.bench import BenchSettings
    from ddpm.samplers import SAMPLERS

    if args.fast_sampler not in SAMPLERS:
        raise ConfigError(f"--fast-sampler {args.fast_sampler!r}: unknown; valid: {', '.join(sorted(SAMPLERS))}")
    if args.checkpoint and not Path(args.checkpoint).exists():
        raise ConfigError(f"--checkpoint {args.checkpoint}: no such run folder or file")
    if args.ablate is not None:
        parse_ints(str(args.ablate), "--ablate")
    quick = args.quick
    return BenchSettings(widths=parse_ints(args.widths, "--widths"),
                         batch_size=args.batch_size or (64 if quick else 256),
                         train_steps=args.train_steps or (2 if quick else 3), repeats=args.repeats,
                         sample_steps=args.sample_steps or (2 if quick else 3),
                         fast_sampler=args.fast_sampler, fast_steps=args.fast_steps, fast_eta=args.fast_eta,
                         grid_images=args.grid_images,
                         test_limit=test_limit or (128 if quick else 512), full_grid=args.full_grid,
                         cuda_graphs=args.cuda_graphs, threads=args.threads)


def _quality_settings(text: str | None) -> list:
    """``--quality-settings`` as (sampler, steps, eta) triples (default: ``ddpm.bench.QUALITY_SETTINGS``)."""
    from ddpm.bench import QUALITY_SETTINGS, parse_settings
    from ddpm.samplers import SAMPLERS

    if not text:
        return QUALITY_SETTINGS
    try:
        settings = parse_settings(text)
    except ValueError as e:
        raise ConfigError(f"--quality-settings {e}") from None
    bad = [name for name, _, _ in settings if name not in SAMPLERS]
    if bad:
        raise ConfigError(f"--quality-settings: unknown sampler {bad[0]!r}; valid: {', '.join(sorted(SAMPLERS))}")
    return settings


def _argv_of(args: argparse.Namespace) -> list[str]:
    import sys

    return sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "bench" else []
