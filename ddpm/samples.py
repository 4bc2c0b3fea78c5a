"""``ddpm sample``'s work: images from a checkpoint at one or more guidance weights, written per omega as
``grid-omega<w>.png`` and ``samples-omega<w>.npz`` (images (N,28,28) uint8, labels (N,) int64)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ddpm.errors import ConfigError


@dataclass
class SampleFiles:
    omega: float
    grid: Path
    npz: Path


def request_labels(n: int, num_classes: int, given: Optional[list[int]] = None) -> torch.Tensor:
    """``n`` labels: ``given`` repeated to length n (each in 0..num_classes-1), else 0..num_classes-1 cycled."""
    from ddpm.grids import cycle_labels

    if n < 1:
        raise ConfigError(f"--n {n}: must be >= 1")
    if given is None:
        return cycle_labels(n, num_classes)
    bad = [v for v in given if not 0 <= v < num_classes]
    if bad or not given:
        raise ConfigError(f"--labels {','.join(map(str, given))!r}: classes must lie in 0..{num_classes - 1}")
    base = torch.tensor(given)
    return base.repeat((n + len(base) - 1) // len(base))[:n]


def sample_checkpoint(checkpoint: str | Path, omegas: Optional[list[float]] = None, n: int = 100,
                      labels: Optional[list[int]] = None, sampler: Optional[str] = None, steps: Optional[int] = None,
                      eta: Optional[float] = None, seed: int = 0, device: str = "auto",
                      out_dir: Optional[str | Path] = None, show_progress: bool = True) -> list[SampleFiles]:
    """Load ``checkpoint`` (a .pt or a run folder) and write its samples at each omega (default: the config's)
    to ``out_dir`` (default ``<run>/samples``); each omega starts from the same ``seed``."""
    import numpy as np

    from ddpm.checkpoint import load_model
    from ddpm.grids import save_grid
    from ddpm.io import atomic_write
    from ddpm.runtime import resolve_device
    from ddpm.sampling import Sampling

    dev = resolve_device(device, "--device")
    model, cfg, ckpt = load_model(checkpoint, dev)
    sampling = Sampling.from_config(cfg, dev, sampler=sampler, steps=steps, eta=eta, steps_key="--steps")
    wanted = request_labels(n, cfg.model.num_classes, labels)
    out = Path(out_dir) if out_dir else Path(ckpt["path"]).parent.parent / "samples"
    written = []
    for w in omegas or [sampling.omega]:
        g = torch.Generator(device=dev).manual_seed(seed)
        imgs = sampling.sample(model, wanted, g, omega=w, show_progress=show_progress)
        grid = save_grid(imgs, out / f"grid-omega{w:g}.png", nrow=10)
        arr = (imgs[:, 0].cpu() * 255).round().to(torch.uint8).numpy()
        npz = out / f"samples-omega{w:g}.npz"
        atomic_write(npz, lambda f: np.savez_compressed(f, images=arr, labels=wanted.numpy().astype(np.int64)))
        written.append(SampleFiles(w, Path(grid), npz))
    return written
