"""``ddpm.grids``: torchvision's make_grid tiles the samples, row r = class r, one PNG channel for grey images."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from ddpm.grids import PADDING, grid_labels, grid_png, save_grid, tile


def _images(n: int = 100, c: int = 1, h: int = 28, w: int = 28) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, c, h, w, generator=g)


def _tile_at(arr: np.ndarray, r: int, c: int, h: int = 28, w: int = 28) -> np.ndarray:
    y, x = PADDING + r * (h + PADDING), PADDING + c * (w + PADDING)
    return arr[y:y + h, x:x + w]


def test_grid_png_has_the_expected_size_and_mode(tmp_path) -> None:
    path = save_grid(_images(), tmp_path / "g.png", nrow=10)
    with Image.open(path) as img:
        assert img.mode == "L"                                   # grey stays one channel
        assert img.size == (10 * (28 + PADDING) + PADDING,) * 2  # 302 x 302, as the seed's grids
    with Image.open(io.BytesIO(grid_png(_images(30), nrow=10))) as img:
        assert img.size == (302, 3 * 30 + 2)                      # 3 rows of 10


def test_tile_at_row_r_col_c_is_the_image_given() -> None:
    images = _images()
    labels = grid_labels(10, 10)
    with Image.open(io.BytesIO(grid_png(images, nrow=10))) as img:
        arr = np.asarray(img).astype(np.int16)
    for r, c in [(0, 0), (3, 7), (9, 9), (9, 0)]:
        i = r * 10 + c
        assert labels[i] == r                                  # row r holds class r
        want = (images[i, 0] * 255 + 0.5).floor().numpy()
        assert np.abs(_tile_at(arr, r, c) - want).max() <= 0   # exact after the uint8 rounding
    assert (arr[:PADDING] == 255).all() and (arr[:, :PADDING] == 255).all()  # white padding


def test_tile_keeps_rgb_and_clamps() -> None:
    images = _images(4, c=3) * 3 - 1                          # out of [0, 1]: clamped, as before
    grid = tile(images, nrow=2)
    assert grid.shape == (3, 2 * 30 + 2, 2 * 30 + 2)
    assert torch.equal(grid[:, 32:60, 32:60], images[3].clamp(0, 1))
    assert grid.min() >= 0 and grid.max() <= 1
