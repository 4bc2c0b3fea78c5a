"""``ddpm sample``."""
from __future__ import annotations

import argparse

from ddpm.cli import Command, number, parse_floats, parse_ints, register_command
from ddpm.runtime import SEED_MAX


@register_command("sample")
class Sample(Command):
    """Sample images from a checkpoint at one or more guidance weights.
    Writes, per omega, grid-omega<w>.png and samples-omega<w>.npz (images (N,28,28) uint8, labels (N,)).
    Labels cycle 0..9 unless --labels says otherwise."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("checkpoint", help="a .pt checkpoint or a run folder (uses checkpoints/best.pt)")
        p.add_argument("--omega", default=None, help="comma-separated guidance weights (default: the config's)")
        p.add_argument("--n", type=number(1, integer=True), default=100, help="images per omega (default 100)")
        p.add_argument("--labels", default=None, help="comma-separated labels, repeated to --n")
        p.add_argument("--sampler", default=None, help="ddpm (Algorithm 2) or ddim (default: the config's)")
        p.add_argument("--steps", type=number(1, integer=True), default=None, help="sampling steps (default: T)")
        p.add_argument("--eta", type=number(0), default=None, help="DDIM eta (default: the config's)")
        p.add_argument("--seed", type=number(0, SEED_MAX, integer=True), default=0)
        p.add_argument("--device", default="auto")
        p.add_argument("--out", default=None, help="output folder (default: <run>/samples)")

    def take_action(self, args: argparse.Namespace) -> int:
        from ddpm.progress import console
        from ddpm.samples import sample_checkpoint

        files = sample_checkpoint(args.checkpoint, parse_floats(args.omega, "--omega") if args.omega else None,
                                  n=args.n, labels=parse_ints(args.labels, "--labels") if args.labels else None,
                                  sampler=args.sampler, steps=args.steps, eta=args.eta, seed=args.seed,
                                  device=args.device, out_dir=args.out)
        for f in files:
            console.print(f"omega={f.omega:g}: {f.grid} and {f.npz}")
        return 0
