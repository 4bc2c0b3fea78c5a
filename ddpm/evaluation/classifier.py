"""The evaluation classifier: a compact CNN trained by the project on a dataset's training images.

It trains on the training file minus its last ``ddpm.data.HELD_OUT`` (5,000) images (for MNIST: the
first 55,000): validation images are always drawn from those last 5,000, and test images from the test
file, so the classifier never saw an image it scores as a reference.

Its penultimate features replace Inception for FID (Inception is meaningless on MNIST and cannot be
downloaded here) and its predictions give conditional accuracy. Training is deterministic (fixed
seed, fixed shuffle generator); the weights are cached at
``$DDPM_CACHE/classifiers/<dataset>-<dataset_fingerprint>-holdout<HELD_OUT>.pt`` (``DDPM_CACHE`` defaults to
``~/.cache/ddpm``), written atomically and readable with ``torch.load(weights_only=True)``.

No module state: a ``ClassifierCache`` the caller creates holds the classifiers it loaded, and each
``EvalClassifier`` holds the reference statistics derived from it (``ddpm.evaluation.metrics``).
"""
from __future__ import annotations

import io
import os
import pickle
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ddpm.data import HELD_OUT, dataset_fingerprint, split_arrays
from ddpm.errors import CheckpointError, DataError
from ddpm.io import atomic_write_bytes
from ddpm.progress import console, progress_steps

FORMAT = "ddpm-classifier/1"
MEAN, STD = 0.1307, 0.3081          # the seed's Normalize((0.1307,), (0.3081,)); applied inside the net
BATCH = 500                          # inference batch; fixed so stored and recomputed accuracy agree bit for bit


def cache_dir() -> Path:
    return Path(os.environ.get("DDPM_CACHE") or Path.home() / ".cache" / "ddpm")


def classifier_path(dataset: str) -> Path:
    # keyed by the held-out count: a classifier trained on every training image (before the validation
    # split) has another name and is never reused
    return cache_dir() / "classifiers" / f"{dataset}-{dataset_fingerprint(dataset)}-holdout{HELD_OUT}.pt"


# Classifiers shipped with the package (``ddpm eval train-classifier --force`` retrains the same one
# deterministically): a fresh clone scores samples without first spending minutes of CPU on training.
SHIPPED_DIR = Path(__file__).parent / "pretrained"


def shipped_classifier_path(dataset: str) -> Optional[Path]:
    path = SHIPPED_DIR / classifier_path(dataset).name
    return path if path.is_file() else None


class ClassifierNet(nn.Module):
    """Three 3x3 conv stages (16, 32, 64 channels, BatchNorm, ReLU; max-pool after the first two) and a
    128-wide penultimate layer: about 2.3 M multiply-adds an image, so it trains in minutes on 2 CPU cores."""

    def __init__(self, num_classes: int = 10, width: int = 16, feat_dim: int = 128):
        super().__init__()
        w = width

        def stage(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *stage(1, w), nn.MaxPool2d(2),                   # 14x14
            *stage(w, 2 * w), nn.MaxPool2d(2),               # 7x7
            *stage(2 * w, 4 * w),
            nn.Flatten(),
            nn.Linear(4 * w * 7 * 7, feat_dim), nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(feat_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class EvalClassifier:
    """A trained ClassifierNet plus what it was trained on. Inputs are images in [0, 1], (N,1,28,28)."""

    net: ClassifierNet
    dataset: str
    test_accuracy: float
    meta: dict[str, Any]
    device: torch.device
    # statistics derived from this classifier (reference splits, KID references, floors), by name; filled
    # and read by ``ddpm.evaluation.metrics``, so they live exactly as long as the classifier they describe
    derived: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def key(self) -> str:
        """Identifies this classifier in caches of derived statistics (dataset, content, training)."""
        m = self.meta
        return (f"{self.dataset}-{dataset_fingerprint(self.dataset)}-{m.get('train_limit')}-{m.get('epochs')}"
                f"-{m.get('seed')}-holdout{m.get('held_out', 0)}")

    def _batches(self, images01: torch.Tensor):
        for i in range(0, len(images01), BATCH):
            x = images01[i:i + BATCH].to(self.device, torch.float32)
            yield ((x - MEAN) / STD).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def features(self, images01: torch.Tensor) -> torch.Tensor:
        """Penultimate (post-ReLU) features, float64 on the CPU, shape (N, 128)."""
        self.net.eval()
        out = [self.net.body(x).double().cpu() for x in self._batches(images01)]
        return torch.cat(out) if out else torch.zeros(0, self.net.head.in_features, dtype=torch.float64)

    @torch.inference_mode()
    def predict(self, images01: torch.Tensor) -> torch.Tensor:
        """Predicted class per image, (N,) int64 on the CPU."""
        self.net.eval()
        out = [self.net(x).argmax(1).cpu() for x in self._batches(images01)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    @torch.inference_mode()
    def features_and_predictions(self, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.net.eval()
        feats, preds = [], []
        for x in self._batches(images01):
            f = self.net.body(x)
            feats.append(f.double().cpu())
            preds.append(self.net.head(f).argmax(1).cpu())
        return torch.cat(feats), torch.cat(preds)


def split01(dataset: str, split: str, root: Optional[str] = None, limit: Optional[int] = None,
            val_size: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A split (train/val/test, see ``ddpm.data.split_range``) as float images in [0, 1] (N,1,28,28) and
    int64 labels."""
    images, labels = split_arrays(dataset, split, root, limit, val_size)
    return images.float() / 255.0, labels


def classifier_train_split(dataset: str, root: Optional[str] = None,
                           limit: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's own training images in [0, 1]: the training file minus its last ``HELD_OUT`` (for
    MNIST the first 55,000; the first ``limit`` of them if given). Validation images (at most the last
    ``HELD_OUT``) and test images are never among them."""
    return split01(dataset, "train", root, limit, val_size=HELD_OUT)


def accuracy(preds: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of predictions equal to the labels: the classifier's test accuracy, or conditional accuracy
    when the labels are those the images were generated for. The one accuracy of the project."""
    return float((preds.cpu().long() == labels.cpu().long()).double().mean())


def train_classifier(dataset: str = "mnist", root: Optional[str] = None, device: str | torch.device = "cpu",
                     epochs: int = 3, limit: Optional[int] = None, batch_size: int = 128, lr: float = 3e-3,
                     seed: int = 0, max_shift: int = 0, show_progress: bool = True) -> EvalClassifier:
    """Train a ClassifierNet on the training file minus its last ``HELD_OUT`` images (the first ``limit`` of
    them if given), deterministically (fixed seed and shuffle order).

    AdamW with a one-cycle LR schedule, optional random shifts of +-``max_shift`` px per batch; test accuracy is measured
    with ``predict`` exactly as ``conditional_accuracy`` measures it."""
    device = torch.device(device)
    start = time.perf_counter()
    torch.manual_seed(seed)
    x_train, y_train = classifier_train_split(dataset, root, limit)
    x_test, y_test = split01(dataset, "test", root)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    net = ClassifierNet(num_classes).to(device).to(memory_format=torch.channels_last)
    x = ((x_train - MEAN) / STD).to(device)
    y = y_train.to(device)
    steps_per_epoch = (len(x) + batch_size - 1) // batch_size
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen).to(device)
        shifts = torch.randint(-max_shift, max_shift + 1, (steps_per_epoch, 2), generator=gen).tolist()
        for i in progress_steps(range(steps_per_epoch), f"classifier epoch {epoch + 1}/{epochs}",
                                enabled=show_progress):
            idx = order[i * batch_size:(i + 1) * batch_size]
            xb = x[idx]
            dy, dx = shifts[i]
            if dy or dx:
                xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))   # augmentation: one random shift per batch
            loss = F.cross_entropy(net(xb.contiguous(memory_format=torch.channels_last)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    meta = {"dataset": dataset, "fingerprint": dataset_fingerprint(dataset), "epochs": epochs,
            "train_limit": limit, "held_out": HELD_OUT, "train_images": len(x_train), "seed": seed, "max_shift": max_shift, "num_classes": num_classes,
            "train_seconds": round(time.perf_counter() - start, 1)}
    clf = EvalClassifier(net, dataset, 0.0, meta, device)
    clf.test_accuracy = accuracy(clf.predict(x_test), y_test)
    return clf


def save_classifier(clf: EvalClassifier, path: str | Path) -> Path:
    buf = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in clf.net.state_dict().items()}
    torch.save({"format": FORMAT, "state_dict": state, "test_accuracy": clf.test_accuracy,
                "meta": clf.meta}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> EvalClassifier:
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable classifier ({str(e).strip()[:120]}); delete it to retrain") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an evaluation classifier (format {FORMAT} expected); delete it to retrain")
    meta = dict(ckpt["meta"])
    net = ClassifierNet(int(meta.get("num_classes", 10)))
    net.load_state_dict(ckpt["state_dict"])
    device = torch.device(device)
    net = net.to(device).to(memory_format=torch.channels_last).eval()
    return EvalClassifier(net, meta["dataset"], float(ckpt["test_accuracy"]), meta, device)


class ClassifierCache:
    """The evaluation classifiers of one job: loaded once per (file, device) and reloaded when the file
    changes (a retrain, another process's save). Create one where a job starts and pass it down; on disk
    the cache is ``classifier_path(dataset)``, falling back to the shipped classifier (default data root only)."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str], tuple[tuple[int, int, int], EvalClassifier]] = {}

    @staticmethod
    def source(dataset: str, root: Optional[str] = None) -> Optional[Path]:
        """The file ``get`` loads: the cached classifier, else the shipped one (default data root), else None."""
        path = classifier_path(dataset)
        if path.is_file():
            return path
        return shipped_classifier_path(dataset) if root is None else None

    def _load(self, path: Path, device: torch.device) -> EvalClassifier:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        key = (str(path), str(device))
        hit = self._loaded.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        clf = load_classifier(path, device)
        self._loaded[key] = (stamp, clf)
        return clf

    def get(self, dataset: str = "mnist", root: Optional[str] = None, device: str | torch.device = "cpu",
            train_if_missing: bool = True, show_progress: bool = True) -> EvalClassifier:
        """The evaluation classifier of ``dataset``; trained with the defaults (minutes on 2 CPU cores) and
        saved on first need when neither a cached nor a shipped one exists."""
        device = torch.device(device)
        path = self.source(dataset, root)
        if path is not None:
            return self._load(path, device)
        if not train_if_missing:
            raise DataError(f"{classifier_path(dataset)}: no evaluation classifier for {dataset}; "
                            f"run `ddpm eval train-classifier --dataset {dataset}`")
        return self.retrain(dataset, root, device, show_progress=show_progress)

    def retrain(self, dataset: str = "mnist", root: Optional[str] = None, device: str | torch.device = "cpu",
                epochs: Optional[int] = None, limit: Optional[int] = None,
                show_progress: bool = True) -> EvalClassifier:
        """Train a classifier (``train_classifier``; its defaults, used where ``epochs`` is None, reproduce
        the shipped one) and save it as the cached one, replacing any earlier file; later ``get`` calls,
        here or in any process, use it."""
        path = classifier_path(dataset)
        console.print(f"training the {dataset} evaluation classifier (cached at {path}) ...")
        clf = train_classifier(dataset, root, device, limit=limit, show_progress=show_progress,
                               **({} if epochs is None else {"epochs": epochs}))
        save_classifier(clf, path)
        console.print(f"{dataset} classifier: test accuracy {clf.test_accuracy:.2%} "
                      f"({clf.meta['train_seconds']:.0f} s)")
        return self._load(path, torch.device(device))

    def ensure(self, dataset: str = "mnist", root: Optional[str] = None, device: str | torch.device = "cpu",
               force: bool = False, epochs: Optional[int] = None, limit: Optional[int] = None,
               show_progress: bool = True) -> tuple[EvalClassifier, Path]:
        """``ddpm eval train-classifier``: with ``force`` retrain (``epochs``, first ``limit`` training images),
        else the classifier ``get`` would use (training it if there is none); returns it and its file."""
        clf = (self.retrain(dataset, root, device, epochs, limit, show_progress) if force
               else self.get(dataset, root, device, show_progress=show_progress))
        return clf, self.source(dataset, root) or classifier_path(dataset)


def get_classifier(dataset: str = "mnist", root: Optional[str] = None, device: str | torch.device = "cpu",
                   train_if_missing: bool = True, show_progress: bool = True,
                   cache: Optional[ClassifierCache] = None) -> EvalClassifier:
    """The evaluation classifier of ``dataset`` (see ``ClassifierCache.get``); without ``cache`` it is read
    from disk on every call."""
    return (cache or ClassifierCache()).get(dataset, root, device, train_if_missing, show_progress)
