"""Sample-quality metrics in the evaluation classifier's feature space.

- FID: the Frechet distance between Gaussians fitted to penultimate features (Heusel et al. 2017),
  against a reference split: ``test`` (final numbers) or ``val`` (model selection: the training file's
  last ``val_size`` images, see ``ddpm.data``);
- the real-data floor: the same FID for n real *training* images, drawn from the classifier's own
  training images (never a validation image; a generated set of n images cannot meaningfully beat it);
- conditional accuracy: share of samples the classifier assigns to the requested class;
- diversity: mean intra-class pairwise feature distance relative to the reference split's (1 for real
  data, towards 0 under mode collapse).

Reference statistics are cached per classifier and split (``val`` per val_size), in memory and under
``$DDPM_CACHE/classifiers/``; floors are cached per (classifier, split, n).
"""
from __future__ import annotations

import io
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ddpm.data import HELD_OUT
from ddpm.evaluation.classifier import EvalClassifier, cache_dir, classifier_train_split, split01
from ddpm.io import atomic_write_bytes, atomic_write_json

ArrayLike = torch.Tensor | np.ndarray


def _np64(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def gaussian_stats(feats: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of (N, D) features, float64; the covariance uses N - 1."""
    f = _np64(feats)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_from_stats(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))  (Frechet distance of two Gaussians, Dowson & Landau 1982).

    Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2): the latter is symmetric PSD, so its square root
    comes from a stable eigendecomposition (no complex parts as with a general sqrtm)."""
    r1 = _sqrtm_psd(s1)
    m = r1 @ s2 @ r1
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean), 0.0)


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """FID between two feature sets (N, D) and (M, D)."""
    return frechet_from_stats(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def conditional_accuracy(clf: EvalClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of images the classifier assigns to the requested label (images in [0, 1], (N,1,28,28))."""
    return float((clf.predict(images) == labels.cpu().long()).double().mean())


def intra_class_distances(feats: ArrayLike, labels: torch.Tensor | np.ndarray) -> dict[int, float]:
    """Per class: the mean Euclidean distance between distinct pairs of its features (classes with >= 2)."""
    f = torch.as_tensor(_np64(feats))
    lab = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)).long()
    out: dict[int, float] = {}
    for c in torch.unique(lab).tolist():
        fc = f[lab == c]
        k = len(fc)
        if k >= 2:
            out[int(c)] = float(torch.cdist(fc, fc).sum() / (k * (k - 1)))   # the diagonal is 0
    return out


# ---- reference statistics of a split (test or val) ---------------------------------------------------


@dataclass
class ReferenceStats:
    """A reference split's statistics for one classifier: Gaussian fit and per-class mean pairwise distance."""

    mu: np.ndarray
    sigma: np.ndarray
    intra: dict[int, float]
    n: int


_REFS: dict[str, ReferenceStats] = {}
_FLOORS: dict[tuple[str, str, int, int], float] = {}
REFERENCE_SPLITS = ("val", "test")


def split_tag(split: str, val_size: int = HELD_OUT) -> str:
    """Names a reference split in caches: ``test``, or ``val<val_size>`` (the training file's last val_size images)."""
    if split not in REFERENCE_SPLITS:
        raise ValueError(f"reference split {split!r}: valid: {', '.join(REFERENCE_SPLITS)}")
    return "test" if split == "test" else f"val{int(val_size)}"


def _stats_path(clf: EvalClassifier, split: str = "test", val_size: int = HELD_OUT) -> Path:
    return cache_dir() / "classifiers" / f"{clf.key}-{split_tag(split, val_size)}-stats.pt"


def reference_stats(clf: EvalClassifier, root: Optional[str] = None, split: str = "test",
                    val_size: int = HELD_OUT) -> ReferenceStats:
    """Statistics of a reference split (``test``, or ``val`` = the training file's last ``val_size`` images)
    in ``clf``'s feature space (cached per classifier and split, in memory and on disk)."""
    tag = f"{clf.key}-{split_tag(split, val_size)}"
    if tag in _REFS:
        return _REFS[tag]
    path = _stats_path(clf, split, val_size)
    ref: Optional[ReferenceStats] = None
    if path.is_file():
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            if d.get("test_accuracy") == clf.test_accuracy:
                ref = ReferenceStats(d["mu"].numpy(), d["sigma"].numpy(),
                                     {int(k): float(v) for k, v in d["intra"].items()}, int(d["n"]))
        except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError):
            ref = None   # a stale or torn cache file: recompute
    if ref is None:
        images, labels = split01(clf.dataset, split, root, val_size=val_size)
        feats = clf.features(images)
        mu, sigma = gaussian_stats(feats)
        ref = ReferenceStats(mu, sigma, intra_class_distances(feats, labels), len(images))
        buf = io.BytesIO()
        torch.save({"mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma), "n": ref.n,
                    "intra": {str(k): v for k, v in ref.intra.items()}, "test_accuracy": clf.test_accuracy}, buf)
        atomic_write_bytes(path, buf.getvalue())
    _REFS[tag] = ref
    return ref


def fid_to_test(clf: EvalClassifier, feats: ArrayLike, root: Optional[str] = None, split: str = "test",
                val_size: int = HELD_OUT) -> float:
    """FID of a feature set against a reference split (default: the test split)."""
    ref = reference_stats(clf, root, split, val_size)
    return frechet_from_stats(*gaussian_stats(feats), ref.mu, ref.sigma)


def diversity_score(clf: EvalClassifier, images: Optional[torch.Tensor], labels: torch.Tensor,
                    reference_feats: Optional[ArrayLike] = None, reference_labels: Optional[torch.Tensor] = None,
                    feats: Optional[ArrayLike] = None, root: Optional[str] = None, split: str = "test",
                    val_size: int = HELD_OUT) -> float:
    """Mean over requested classes of (mean pairwise feature distance within the class) / (the same for
    real data). Real data scores ~1; a set of one repeated image scores 0. The reference is ``split``
    (default test) unless ``reference_feats``/``reference_labels`` are given; ``feats`` skips the forward pass.
    Samples drawn for label c but showing other digits raise the score (accuracy reports that).
    NaN when no class has two images."""
    f = feats if feats is not None else clf.features(images)
    gen = intra_class_distances(f, labels)
    if reference_feats is not None:
        if reference_labels is None:
            raise ValueError("reference_labels are needed with reference_feats")
        ref = intra_class_distances(reference_feats, reference_labels)
    else:
        ref = reference_stats(clf, root, split, val_size).intra
    ratios = [gen[c] / ref[c] for c in gen if ref.get(c, 0.0) > 0]
    return float(np.mean(ratios)) if ratios else float("nan")   # undefined with < 2 images per class


def balanced_indices(labels: torch.Tensor, wanted: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Indices into ``labels`` whose labels match ``wanted`` one for one (a random draw per class, no repeats)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(len(wanted), dtype=torch.long)
    for c in torch.unique(wanted).tolist():
        pool = torch.nonzero(labels == c).flatten()
        slots = torch.nonzero(wanted == c).flatten()
        if len(pool) < len(slots):
            raise ValueError(f"only {len(pool)} real images of class {c}, {len(slots)} wanted")
        out[slots] = pool[torch.randperm(len(pool), generator=g)[:len(slots)]]
    return out


def _floor_path(clf: EvalClassifier) -> Path:
    return cache_dir() / "classifiers" / f"{clf.key}-floors.json"


def real_floor(clf: EvalClassifier, n: int, dataset: Optional[str] = None, root: Optional[str] = None,
               seed: int = 0, split: str = "test", val_size: int = HELD_OUT) -> float:
    """FID of n real training images (labels cycling 0..K-1, as in ``ddpm eval``) against the reference
    ``split``: the best FID a set of n samples can meaningfully reach. The images come from the training
    file minus its last ``HELD_OUT`` images (the classifier's own), never from a validation split.
    Cached per (classifier, split, n, seed)."""
    dataset = dataset or clf.dataset
    tag = split_tag(split, val_size)
    key = (clf.key, tag, int(n), int(seed))
    if key in _FLOORS:
        return _FLOORS[key]
    path = _floor_path(clf)
    name = f"n={n},seed={seed},acc={clf.test_accuracy}" + ("" if tag == "test" else f",ref={tag}")
    try:
        cached = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        cached = {}
    if name in cached:
        _FLOORS[key] = float(cached[name])
        return _FLOORS[key]
    images, labels = classifier_train_split(dataset, root)
    num_classes = int(labels.max()) + 1
    wanted = torch.arange(n) % num_classes
    idx = balanced_indices(labels, wanted, seed)
    value = fid_to_test(clf, clf.features(images[idx]), root, split, val_size)
    cached[name] = value
    atomic_write_json(path, cached)
    _FLOORS[key] = value
    return value


def image_metrics(clf: EvalClassifier, images: torch.Tensor, labels: torch.Tensor,
                  root: Optional[str] = None, split: str = "test", val_size: int = HELD_OUT) -> dict[str, float]:
    """FID to the reference split (default test), conditional accuracy and diversity from one forward pass."""
    feats, preds = clf.features_and_predictions(images)
    labels = labels.cpu().long()
    return {"fid": fid_to_test(clf, feats, root, split, val_size),
            "accuracy": float((preds == labels).double().mean()),
            "diversity": diversity_score(clf, None, labels, feats=feats, root=root, split=split, val_size=val_size)}
