"""``ddpm bench coordinator``: many worker processes against one PostgreSQL study (``ddpm.sweeps.coordinator_bench``)."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ddpm.cli import Command, _comma_list, number, register_command
from ddpm.errors import ConfigError


@register_command("bench coordinator")
class BenchCoordinator(Command):
    """Measure the study coordinator: N worker processes (the product's worker loop, sampler, heartbeat and
    trial-record writes; training replaced by a near-no-op) against one PostgreSQL storage, e.g.
    ddpm bench coordinator --storage "$(cat .postgres-url)" --workers 8,32,64 --samplers tpe,random
    Trials/hour, p50/p95 ms of the study lock, ask, tell, user-attribute writes, heartbeats and the sampler,
    CPU and the server's connections. Each point uses a fresh study and deletes it. Writes JSON + a .md table."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--storage", help="PostgreSQL URL (default: $DDPM_SWEEP_STORAGE); the password is never printed")
        p.add_argument("--sweep", default="sweeps/recipe.yaml", help="sweep file giving the space, pruner and guidance grid")
        p.add_argument("--workers", default="8,32,64", help="worker counts, comma-separated (default 8,32,64)")
        p.add_argument("--samplers", default="tpe,random", help="Optuna samplers to compare (default tpe,random)")
        p.add_argument("--trials-per-worker", type=number(1, integer=True), default=10, help="budget = workers x this (default 10)")
        p.add_argument("--heartbeat", default="10,30", help="heartbeat interval,grace_period in s (default 10,30)")
        p.add_argument("--work-s", type=number(0), default=0.0, help="seconds each trial sleeps (default 0)")
        p.add_argument("--timeout", type=number(1), default=600, help="seconds per point before its workers are stopped")
        p.add_argument("--out", help="JSON path (default reports/benchmarks/coordinator-<date>.json); .md beside it")

    def take_action(self, args: argparse.Namespace) -> int:
        from ddpm.sweeps.coordinator_bench import Point, run_benchmark, write_result
        from ddpm.sweeps.runner import STORAGE_ENV
        from ddpm.sweeps.samplers import OPTUNA_SAMPLERS
        from ddpm.sweeps.storage import open_storage, scheme_of

        url = args.storage or os.environ.get(STORAGE_ENV)
        if not url or scheme_of(url) not in ("postgresql", "postgres"):
            raise ConfigError("--storage: give a postgresql://user:password@host/db URL (or set DDPM_SWEEP_STORAGE)")
        open_storage(url)  # unreachable: one line with the password masked
        if not Path(args.sweep).is_file():
            raise ConfigError(f"--sweep {args.sweep}: no such sweep file")
        workers = _comma_list(args.workers, "--workers", int, "integers, e.g. 8,32,64", "worker count")
        samplers = _comma_list(args.samplers, "--samplers", str.strip, "sampler names", "sampler")
        bad = [s for s in samplers if s not in OPTUNA_SAMPLERS or s == "grid"]
        if bad or any(w < 1 for w in workers):
            raise ConfigError(f"--samplers/--workers: {bad[0] + ' is not a sampler' if bad else 'workers must be >= 1'} "
                              f"(samplers: {', '.join(sorted(set(OPTUNA_SAMPLERS) - {'grid'}))})")
        hb = _comma_list(args.heartbeat, "--heartbeat", int, "two integers, e.g. 10,30", "value")
        if len(hb) != 2 or hb[0] < 1 or hb[1] <= hb[0]:
            raise ConfigError(f"--heartbeat {args.heartbeat!r}: give interval,grace_period with grace_period > interval >= 1")
        points = [Point(w, s, args.trials_per_worker, (hb[0], hb[1]), args.work_s) for s in samplers for w in workers]
        out = Path(args.out or f"reports/benchmarks/coordinator-{time.strftime('%Y-%m-%d')}.json")
        command = "ddpm bench coordinator " + " ".join(_argv())
        result = run_benchmark(Path(args.sweep), url, points, args.timeout, log=print)
        write_result(result, out, command)
        print(f"wrote {out} and {out.with_suffix('.md')}")
        return 0


def _argv() -> list[str]:
    import shlex
    import sys

    from ddpm.redact import redact_text, secrets_of

    args = sys.argv[3:] if sys.argv[1:3] == ["bench", "coordinator"] else []
    return [shlex.quote(redact_text(a, secrets_of(a) if "://" in a else ())) for a in args]
