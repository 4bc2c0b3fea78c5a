"""MNIST read straight from IDX, verified by checksum; clear errors for missing or corrupt files."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from ddpm import data
from ddpm.errors import DataError

SHIPPED = Path(data.DATASETS["mnist"].default_root)


def test_shipped_mnist_loads_with_published_counts():
    x, y = data.load_split("mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_normalisation_matches_the_seed_transform():
    from torchvision import transforms
    from PIL import Image

    x, _ = data.load_split("mnist", "test")
    ours = data.normalize(x[:3], 0.1307, 0.3081)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    theirs = torch.stack([tf(Image.fromarray(x[i, 0].numpy(), mode="L")) for i in range(3)])
    torch.testing.assert_close(ours, theirs)


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "mnist"
    shutil.copytree(SHIPPED, root)
    return root


def test_data_root_and_limit(tmp_path):
    root = _copy(tmp_path)
    x, y = data.tensors("mnist", "test", str(root), 0.1307, 0.3081, limit=50)
    assert x.shape == (50, 1, 28, 28) and y.shape == (50,)


def test_corrupt_and_missing_files_are_clear_errors(tmp_path):
    root = _copy(tmp_path)
    f = root / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(f.read_bytes()))
    raw[100] ^= 0xFF
    f.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="fails its checksum"):
        data.load_split("mnist", "test", str(root))
    f.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="corrupt"):
        data.load_split("mnist", "test", str(root))
    f.unlink()
    with pytest.raises(DataError, match="lacks"):
        data.load_split("mnist", "test", str(root))


def test_fashion_mnist_from_debian_or_a_clear_error(tmp_path):
    if Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file():
        x, y = data.load_split("fashion-mnist", "test")
        assert x.shape == (10000, 1, 28, 28) and sorted(torch.unique(y).tolist()) == list(range(10))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.load_split("fashion-mnist", "test", str(tmp_path))
