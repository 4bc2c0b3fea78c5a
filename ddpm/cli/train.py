"""``ddpm train``."""
from __future__ import annotations

import argparse

from ddpm.cli import Command, register_command


@register_command("train")
class Train(Command):
    """Train a conditional DDPM from an experiment YAML, e.g.
    ddpm train experiments/seed.yaml model.num_feat=128 train.epochs=2
    Runs land in <out_dir>/<name>/ (config.yaml, metrics.jsonl, grids/, checkpoints/)."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="experiment YAML (experiments/*.yaml, or a report's best_config.yaml)")
        p.add_argument("overrides", nargs="*", help="dotted overrides, key.sub=value")
        p.add_argument("--resume", action="store_true", help="continue the run in its folder from last.pt")
        p.add_argument("--run-dir", help="run folder (default: <out_dir>/<name>)")
        p.add_argument("--no-wandb", action="store_true", help="same as tracking.wandb=disabled")

    def take_action(self, args: argparse.Namespace) -> int:
        from ddpm.config import load_config
        from ddpm.tracking import tracker_callback
        from ddpm.train import train

        overrides = list(args.overrides) + (["tracking.wandb=disabled"] if args.no_wandb else [])
        cfg = load_config(args.config, overrides)
        run = train(cfg, run_dir=args.run_dir, resume=args.resume,
                    callbacks=[tracker_callback(cfg, job_type="train")])
        print(f"best checkpoint: {run.best_checkpoint}")
        return 0
