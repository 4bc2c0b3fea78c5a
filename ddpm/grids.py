"""Sample grids: a 10x10 PNG where row r holds digit r (the seed solver's per-epoch picture)."""
from __future__ import annotations

import io
from pathlib import Path

import torch
from ddpm.io import atomic_write_bytes


def grid_labels(num_classes: int = 10, per_class: int = 10) -> torch.Tensor:
    """Labels for a grid: row r = class r, ``per_class`` samples a row."""
    return torch.arange(num_classes).repeat_interleave(per_class)


def cycle_labels(n: int, num_classes: int = 10) -> torch.Tensor:
    return torch.arange(n) % num_classes


def make_grid(images: torch.Tensor, nrow: int = 10, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """(N,C,H,W) -> (C, rows*(H+p)+p, nrow*(W+p)+p), like torchvision's make_grid (without importing it)."""
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value)
    for i in range(n):
        r, k = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, y:y + h, x:x + w] = images[i]
    return grid


def grid_png(images: torch.Tensor, nrow: int = 10) -> bytes:
    """Images in [0, 1] of shape (N,C,H,W) -> PNG bytes."""
    from PIL import Image

    grid = make_grid(images.detach().float().cpu(), nrow=nrow)
    arr = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 10) -> Path:
    atomic_write_bytes(path, grid_png(images, nrow))
    return Path(path)
