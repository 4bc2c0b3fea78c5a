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


# ---- the validation split ------------------------------------------------------------------------------


def _hashes(images: torch.Tensor) -> set[str]:
    import hashlib

    return {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in images}


def test_val_is_the_training_files_tail_disjoint_from_train_and_test_and_deterministic():
    full, full_y = data.load_split("mnist", "train")
    train, train_y = data.split_arrays("mnist", "train", val_size=5000)
    val, val_y = data.split_arrays("mnist", "val", val_size=5000)
    test, _ = data.split_arrays("mnist", "test")
    assert (len(train), len(val), len(test)) == (55000, 5000, 10000)
    assert torch.equal(val, full[55000:]) and torch.equal(val_y, full_y[55000:])
    assert torch.equal(train, full[:55000])
    # no image of val appears among the training or test images (by content: MNIST has no exact duplicates)
    assert not _hashes(val) & _hashes(train) and not _hashes(val) & _hashes(test)
    again, _ = data.split_arrays("mnist", "val", val_size=5000)
    assert torch.equal(again, val)                               # same images every call
    assert data.split_range("mnist", "val", None, 100) == range(59900, 60000)
    assert data.split_range("mnist", "train", None, 0) == range(60000)


def test_limit_takes_the_first_images_of_the_rest_and_tensors_normalise_them():
    x, y = data.tensors("mnist", "train", None, 0.1307, 0.3081, limit=300, val_size=5000)
    full, full_y = data.load_split("mnist", "train")
    torch.testing.assert_close(x, data.normalize(full[:300], 0.1307, 0.3081))
    # a limit beyond the training images stops at the validation split
    x, _ = data.tensors("mnist", "train", None, 0.1307, 0.3081, limit=59990, val_size=100)
    assert len(x) == 59900
    v, vy = data.tensors("mnist", "val", None, 0.1307, 0.3081, limit=7, val_size=100)
    assert torch.equal(vy, full_y[59900:59907])
    with pytest.raises(ValueError, match="needs val_size"):
        data.tensors("mnist", "train", None, 0.1307, 0.3081)
    with pytest.raises(DataError, match="no validation split"):
        data.tensors("mnist", "val", None, 0.1307, 0.3081, val_size=0)
    with pytest.raises(DataError, match="data.val_size = 60000"):
        data.split_range("mnist", "train", None, 60000)


def test_faithful_loader_excludes_the_validation_images():
    loader = data.faithful_loader("mnist", "train", None, 0.1307, 0.3081, None, 1000, False, val_size=5000)
    assert len(loader.dataset) == 55000
    x, y = next(iter(data.faithful_loader("mnist", "val", None, 0.1307, 0.3081, 4, 4, False, val_size=5000)))
    full, full_y = data.load_split("mnist", "train")
    torch.testing.assert_close(x, data.normalize(full[55000:55004], 0.1307, 0.3081))
    assert y.tolist() == full_y[55000:55004].tolist()


@pytest.mark.parametrize("value", [-1, 5001])
def test_val_size_outside_0_to_5000_is_rejected(value):
    from ddpm.config import load_config
    from ddpm.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"data.val_size = {value}: must lie in 0..5000"):
        load_config(extra={"data.val_size": value})
    assert load_config(extra={"data.val_size": 0}).data.val_size == 0
    assert load_config().data.val_size == 5000
