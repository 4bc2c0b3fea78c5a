"""Sample grids: a 10x10 PNG where row r holds digit r (the seed solver's per-epoch picture).

Tiling is torchvision's ``make_grid`` (2 px white padding); the PNG keeps one channel for grey images
(``make_grid`` repeats a single channel three times, and ``save_image`` would write that RGB copy, twice the bytes).
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from ddpm.io import atomic_write_bytes

PADDING = 2          # pixels between tiles and around the grid
PAD_VALUE = 1.0      # white


def grid_labels(num_classes: int = 10, per_class: int = 10) -> torch.Tensor:
    """Labels for a grid: row r = class r, ``per_class`` samples a row."""
    return torch.arange(num_classes).repeat_interleave(per_class)


def cycle_labels(n: int, num_classes: int = 10) -> torch.Tensor:
    return torch.arange(n) % num_classes


def tile(images: torch.Tensor, nrow: int = 10) -> torch.Tensor:
    """(N,C,H,W) in [0, 1] -> (C, rows*(H+p)+p, cols*(W+p)+p): image i at row i // nrow, column i % nrow."""
    from torchvision.utils import make_grid  # imported here: torchvision costs a second at `ddpm` start-up

    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=PADDING, pad_value=PAD_VALUE)
    return grid[:images.shape[1]]


def grid_png(images: torch.Tensor, nrow: int = 10) -> bytes:
    """Images in [0, 1] of shape (N,C,H,W) -> PNG bytes (mode L for one channel, else RGB)."""
    from PIL import Image

    grid = tile(images, nrow)
    arr = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)  # save_image's rounding
    img = Image.fromarray(arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 10) -> Path:
    atomic_write_bytes(path, grid_png(images, nrow))
    return Path(path)
