"""Datasets read straight from IDX .gz files into one uint8 tensor, verified against checksums.

MNIST ships inside the package (``ddpm/datasets/mnist``, CC BY-SA 3.0, LeCun, Cortes & Burges);
Fashion-MNIST comes from Debian's ``dataset-fashion-mnist``. No per-sample PIL transforms: the whole
split is normalised once, as a tensor (the seed: Normalize((0.1307,), (0.3081,))).

Three splits: ``test`` is the dataset's test file; ``val`` is the LAST ``val_size`` images of its training
file and ``train`` the images before them (deterministic, disjoint). ``val_size`` may not exceed
``HELD_OUT`` (5,000): the evaluation classifier trains on the training file minus its last ``HELD_OUT``
images, so it never sees a validation image.
"""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ddpm.errors import DataError
from ddpm.registry import Registry

SPLIT_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
SPLITS = ("train", "val", "test")
HELD_OUT = 5000          # the training file's last 5,000 images: never seen by the evaluation classifier


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    default_root: Path
    md5: dict[str, str]          # md5 of each *uncompressed* IDX file
    missing_hint: str


DATASETS: Registry[DatasetSpec] = Registry("dataset")
register_dataset = DATASETS.add_named


register_dataset(DatasetSpec(
    "mnist", Path(__file__).parent / "datasets" / "mnist",
    {"train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
     "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
     "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
     "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637"},
    "reinstall the package, or set data.root to a folder holding the four MNIST IDX .gz files"))

register_dataset(DatasetSpec(
    "fashion-mnist", Path("/usr/share/datasets/fashion-mnist"),
    # md5 of the uncompressed files of Debian's dataset-fashion-mnist (Xiao, Rasul & Vollgraf 2017)
    {"train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
     "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
     "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
     "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965"},
    "run `apt-get install dataset-fashion-mnist`, or set data.root to a folder holding the four IDX .gz files"))


def _read_idx(path: Path, expected_md5: Optional[str], dataset: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{dataset}: missing file {path}")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as e:
        raise DataError(f"{dataset}: {path} is corrupt ({e})") from None
    if expected_md5 is not None and hashlib.md5(raw).hexdigest() != expected_md5:
        raise DataError(f"{dataset}: {path} fails its checksum (md5 of the uncompressed file should be {expected_md5})")
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{dataset}: {path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) != offset + int(np.prod(dims)):
        raise DataError(f"{dataset}: {path} has {len(raw) - offset} bytes of data, header says {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def dataset_root(dataset: str, root: Optional[str]) -> Path:
    spec = DATASETS[dataset]
    return Path(root) if root else spec.default_root


@lru_cache(maxsize=8)
def load_split(dataset: str, split: str, root: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N,1,28,28), labels int64 (N,)) for ``split`` in train/test, checksum-verified.

    A ``data.root`` other than the dataset's default holds "the same four files": they are checked
    against the same checksums."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; valid: {', '.join(sorted(DATASETS))}")
    spec = DATASETS[dataset]
    folder = dataset_root(dataset, root)
    img_name, lab_name = SPLIT_FILES[split]
    if not (folder / img_name).is_file() or not (folder / lab_name).is_file():
        raise DataError(f"{dataset}: {folder} lacks {img_name} / {lab_name}; {spec.missing_hint}")
    images = _read_idx(folder / img_name, spec.md5.get(img_name), dataset)
    labels = _read_idx(folder / lab_name, spec.md5.get(lab_name), dataset)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{dataset}: {folder} images {images.shape} and labels {labels.shape} do not match")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def check_model_fits(cfg) -> None:
    """``model.*`` must match the dataset: image size, channels, and at least as many classes as labels."""
    from ddpm.errors import ConfigError

    d, m = cfg.data, cfg.model
    images, labels = load_split(d.dataset, "test", d.root)
    _, channels, height, width = images.shape
    n_labels = int(labels.max()) + 1 if len(labels) else 0
    if m.image_size != height or height != width:
        raise ConfigError(f"model.image_size = {m.image_size}: {d.dataset} images are {height}x{width}; "
                          f"set model.image_size={height}")
    if m.in_channels != channels:
        raise ConfigError(f"model.in_channels = {m.in_channels}: {d.dataset} images have {channels} channel(s); "
                          f"set model.in_channels={channels}")
    if m.num_classes < n_labels:
        raise ConfigError(f"model.num_classes = {m.num_classes}: {d.dataset} has labels 0..{n_labels - 1}; "
                          f"set model.num_classes >= {n_labels}")


def dataset_fingerprint(dataset: str) -> str:
    """A short id of the dataset's content (its checksums), used to key caches such as the eval classifier."""
    spec = DATASETS[dataset]
    return hashlib.sha1("".join(sorted(spec.md5.values())).encode()).hexdigest()[:12]


def normalize(images_u8: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 [0, 255] -> ToTensor [0, 1] -> Normalize((mean,), (std,)), for a whole tensor at once."""
    return (images_u8.float() / 255.0 - mean) / std


def split_range(dataset: str, split: str, root: Optional[str], val_size: Optional[int]) -> range:
    """Indices into the split's IDX file: ``test`` all of the test file; ``val`` the training file's last
    ``val_size`` images; ``train`` the training file's images before them."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: valid: {', '.join(SPLITS)}")
    n = len(load_split(dataset, "test" if split == "test" else "train", root)[1])
    if split == "test":
        return range(n)
    if val_size is None:
        raise ValueError(f"split {split!r} needs val_size (the validation images held out of the training file)")
    if not 0 <= val_size < n:
        raise DataError(f"{dataset}: data.val_size = {val_size}: must lie in 0..{n - 1} (the training file holds {n})")
    if split == "val" and val_size == 0:
        raise DataError(f"{dataset}: no validation split (data.val_size = 0)")
    return range(n - val_size, n) if split == "val" else range(n - val_size)


def split_arrays(dataset: str, split: str, root: Optional[str] = None, limit: Optional[int] = None,
                 val_size: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images, labels) of ``split`` in train/val/test (see ``split_range``); ``limit`` keeps its first N."""
    r = split_range(dataset, split, root, val_size)
    images, labels = load_split(dataset, "test" if split == "test" else "train", root)
    stop = r.stop if limit is None else min(r.stop, r.start + limit)
    return images[r.start:stop], labels[r.start:stop]


def tensors(dataset: str, split: str, root: Optional[str], mean: float, std: float,
            limit: Optional[int] = None, val_size: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A normalised split (train/val/test; train and val need ``val_size``), its first ``limit`` images."""
    images, labels = split_arrays(dataset, split, root, limit, val_size)
    return normalize(images, mean, std), labels


class TensorBatches:
    """Shuffled mini-batches over tensors resident in memory (on the training device): the fast path."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool,
                 generator: Optional[torch.Generator] = None):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator

    def __len__(self) -> int:
        return (len(self.images) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.images)
        order = (torch.randperm(n, generator=self.generator).to(self.images.device) if self.shuffle
                 else torch.arange(n, device=self.images.device))
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.images[idx], self.labels[idx]


def faithful_loader(dataset: str, split: str, root: Optional[str], mean: float, std: float,
                    limit: Optional[int], batch_size: int, shuffle: bool,
                    generator: Optional[torch.Generator] = None, val_size: Optional[int] = None):
    """The seed's path: per-sample torchvision ToTensor + Normalize through a DataLoader (for benchmarks)."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    images, labels = split_arrays(dataset, split, root, limit, val_size)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])

    class _PIL(Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return tf(Image.fromarray(images[i, 0].numpy(), mode="L")), int(labels[i])

    return DataLoader(_PIL(), batch_size=batch_size, shuffle=shuffle, generator=generator)
