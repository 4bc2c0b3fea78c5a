"""``ddpm sample``."""
from __future__ import annotations

import argparse
from pathlib import Path

import math

from ddpm.cli import Command, number, register_command
from ddpm.runtime import SEED_MAX
from ddpm.errors import ConfigError


def parse_floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers, e.g. 0,0.5,2") from None
    if not values:
        raise ConfigError(f"{flag} {text!r}: give at least one number")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ConfigError(f"{flag} {text!r}: {bad[0]} is not a finite number; give finite weights, e.g. 0,0.5,2")
    return values


def parse_labels(text: str, num_classes: int) -> list[int]:
    try:
        labels = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise ConfigError(f"--labels {text!r}: expected comma-separated class indices") from None
    bad = [v for v in labels if not 0 <= v < num_classes]
    if bad or not labels:
        raise ConfigError(f"--labels {text!r}: classes must lie in 0..{num_classes - 1}")
    return labels


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
        import numpy as np
        import torch

        from ddpm.checkpoint import load_model
        from ddpm.grids import cycle_labels, save_grid
        from ddpm.io import atomic_write
        from ddpm.progress import console
        from ddpm.runtime import resolve_device
        from ddpm.sampling import Sampling

        if args.n < 1:
            raise ConfigError(f"--n {args.n}: must be >= 1")
        device = resolve_device(args.device, "--device")
        model, cfg, ckpt = load_model(args.checkpoint, device)
        sampling = Sampling.from_config(cfg, device, sampler=args.sampler, steps=args.steps, eta=args.eta,
                                        steps_key="--steps")
        omegas = parse_floats(args.omega, "--omega") if args.omega else [sampling.omega]
        if args.labels:
            base = torch.tensor(parse_labels(args.labels, cfg.model.num_classes))
            labels = base.repeat((args.n + len(base) - 1) // len(base))[: args.n]
        else:
            labels = cycle_labels(args.n, cfg.model.num_classes)
        out = Path(args.out) if args.out else Path(ckpt["path"]).parent.parent / "samples"
        for w in omegas:
            g = torch.Generator(device=device).manual_seed(args.seed)
            imgs = sampling.sample(model, labels, g, omega=w, show_progress=True)
            grid = save_grid(imgs, out / f"grid-omega{w:g}.png", nrow=10)
            arr = (imgs[:, 0].cpu() * 255).round().to(torch.uint8).numpy()
            atomic_write(out / f"samples-omega{w:g}.npz",
                         lambda f: np.savez_compressed(f, images=arr, labels=labels.numpy().astype(np.int64)))
            console.print(f"omega={w:g}: {grid} and {out / f'samples-omega{w:g}.npz'}")
        return 0
