"""Sample-quality metrics in the evaluation classifier's feature space.

- FID: the Frechet distance between Gaussians fitted to penultimate features (Heusel et al. 2017),
  against a reference split: ``test`` (final numbers) or ``val`` (model selection: the training file's
  last ``val_size`` images, see ``ddpm.data``);
- the real-data floor: the same FID for n real *training* images, drawn from the classifier's own
  training images (never a validation image; a generated set of n images cannot meaningfully beat it);
- conditional accuracy: share of samples the classifier assigns to the requested class;
- diversity: mean intra-class pairwise feature distance relative to the reference split's (1 for real
  data, towards 0 under mode collapse).

Reference statistics are cached per classifier and split (``val`` per val_size), in memory on the
classifier object (``EvalClassifier.derived``: no module state) and under ``$DDPM_CACHE/classifiers/``;
floors are cached per (classifier, split, n).

Uncertainty (``score_intervals``; every scored set carries its n and a 95% interval):
- KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic kernel (x.y/d + 1)^3 in the same
  128-d feature space against the same reference split; unlike FID it has no small-n bias, so sets of
  different n compare. Its SE is the two-sample jackknife (exact leave-one-out from kernel row sums:
  no resampling), stratified by requested label; interval = KID +- 1.96 SE.
- FID: a bootstrap over the generated samples against the fixed reference (B = 200, resampled within
  each requested label, fixed generator, so deterministic). Why a bootstrap rather than several sampling
  seeds: it needs no new sampling (only covariance and eigen work on the features already computed,
  ~0.2-0.4 s of one core per row at n = 100-1000), and its width shrinks as 1/sqrt(n). Why re-centred:
  duplicates in a resample raise FID, so the plain percentile interval sat wholly above the estimate at
  n = 100; we shift it by the bootstrap bias. It is conservative: on real MNIST test features (sets of
  n = 100 real training images, 10 per class) the interval was about 2x the true draw-to-draw spread
  (width 39 against 3.92 sd = 20); at n = 100 FID itself is biased up (n < d = 128), so compare
  FIDs at equal n only, and read KID where n differs.
- accuracy: the Wilson score interval of k correct out of n.
"""
from __future__ import annotations

import contextlib
import io
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ddpm.data import HELD_OUT
from ddpm.evaluation.classifier import EvalClassifier, accuracy, cache_dir, classifier_train_split, split01
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
    return accuracy(clf.predict(images), labels)


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


REFERENCE_SPLITS = ("val", "test")


def split_tag(split: str, val_size: int = HELD_OUT) -> str:
    """Names a reference split in caches: ``test``, or ``val<val_size>`` (the training file's last val_size images)."""
    if split not in REFERENCE_SPLITS:
        raise ValueError(f"reference split {split!r}: valid: {', '.join(REFERENCE_SPLITS)}")
    return "test" if split == "test" else f"val{int(val_size)}"


def _cached_reference(clf: EvalClassifier, kind: str, split: str, val_size: int,
                      decode: Callable[[dict[str, Any]], Any], compute: Callable[[], tuple[Any, dict[str, Any]]]) -> Any:
    """A reference object of ``clf`` for ``split``, cached in ``clf.derived`` and at
    ``$DDPM_CACHE/classifiers/<key>-<split>-<kind>.pt`` (tensors only). ``compute`` returns (object, payload
    to save); ``decode`` rebuilds the object from a saved payload. A stale (another classifier's accuracy)
    or torn file is recomputed."""
    tag = f"{clf.key}-{split_tag(split, val_size)}"
    memo = clf.derived
    if (kind, tag) in memo:
        return memo[(kind, tag)]
    path = cache_dir() / "classifiers" / f"{tag}-{kind}.pt"
    obj: Any = None
    if path.is_file():
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            if d.get("test_accuracy") == clf.test_accuracy:
                obj = decode(d)
        except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError):
            obj = None   # a stale or torn cache file: recompute
    if obj is None:
        obj, payload = compute()
        buf = io.BytesIO()
        torch.save({**payload, "test_accuracy": clf.test_accuracy}, buf)
        atomic_write_bytes(path, buf.getvalue())
    memo[(kind, tag)] = obj
    return obj


def reference_stats(clf: EvalClassifier, root: Optional[str] = None, split: str = "test",
                    val_size: int = HELD_OUT) -> ReferenceStats:
    """Statistics of a reference split (``test``, or ``val`` = the training file's last ``val_size`` images)
    in ``clf``'s feature space (cached per classifier and split, in memory and on disk)."""
    def compute() -> tuple[ReferenceStats, dict[str, Any]]:
        images, labels = split01(clf.dataset, split, root, val_size=val_size)
        feats = clf.features(images)
        mu, sigma = gaussian_stats(feats)
        ref = ReferenceStats(mu, sigma, intra_class_distances(feats, labels), len(images))
        return ref, {"mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma), "n": ref.n,
                     "intra": {str(k): v for k, v in ref.intra.items()}}

    def decode(d: dict[str, Any]) -> ReferenceStats:
        return ReferenceStats(d["mu"].numpy(), d["sigma"].numpy(), {int(k): float(v) for k, v in d["intra"].items()},
                              int(d["n"]))

    return _cached_reference(clf, "stats", split, val_size, decode, compute)


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
    key = ("floor", tag, int(n), int(seed))
    if key in clf.derived:
        return clf.derived[key]
    path = _floor_path(clf)
    name = f"n={n},seed={seed},acc={clf.test_accuracy}" + ("" if tag == "test" else f",ref={tag}")
    try:
        cached = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        cached = {}
    if name in cached:
        clf.derived[key] = float(cached[name])
        return clf.derived[key]
    images, labels = classifier_train_split(dataset, root)
    num_classes = int(labels.max()) + 1
    wanted = torch.arange(n) % num_classes
    idx = balanced_indices(labels, wanted, seed)
    value = fid_to_test(clf, clf.features(images[idx]), root, split, val_size)
    cached[name] = value
    atomic_write_json(path, cached)
    clf.derived[key] = value
    return value


def image_metrics(clf: EvalClassifier, images: torch.Tensor, labels: torch.Tensor,
                  root: Optional[str] = None, split: str = "test", val_size: int = HELD_OUT) -> dict[str, float]:
    """FID to the reference split (default test), conditional accuracy and diversity from one forward pass."""
    feats, preds = clf.features_and_predictions(images)
    return _point_scores(clf, feats, preds, labels.cpu().long(), root, split, val_size)


def _point_scores(clf: EvalClassifier, feats: ArrayLike, preds: torch.Tensor, labels: torch.Tensor,
                  root: Optional[str], split: str, val_size: int) -> dict[str, Optional[float]]:
    """FID, conditional accuracy and diversity of one scored set, from its features and predictions."""
    return {"fid": fid_to_test(clf, feats, root, split, val_size), "accuracy": accuracy(preds, labels),
            "diversity": diversity_score(clf, None, labels, feats=feats, root=root, split=split, val_size=val_size)}


# ---- uncertainty: intervals for FID and accuracy, KID with its standard error -----------------------

INTERVAL_LEVEL = 0.95
FID_BOOTSTRAP = 200         # resamples; the resample spread settles well before 200
INTERVAL_METHODS = {
    "fid": f"stratified bootstrap over the generated samples (B = {FID_BOOTSTRAP}, resampled within each "
           "requested label, fixed reference), percentile interval re-centred on the estimate",
    "accuracy": "Wilson score interval (binomial)",
    "kid": "two-sample jackknife standard error (Arvesen 1969), estimate +- 1.96 SE",
}


def _z(level: float) -> float:
    """The standard normal quantile for a two-sided ``level`` interval (1.96 at 95%)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def _one_blas_thread() -> Any:
    """BLAS on one thread for the batched small matrices of the bootstrap: on a busy CPU, threaded OpenBLAS
    spent 60x the CPU time (10 s against 0.16 s at n = 100) spinning. A no-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _bootstrap_indices(n: int, labels: Optional[ArrayLike], n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) resample indices from a fixed generator; with labels, each label's slots draw only from
    that label's samples (the requested labels are fixed by design, ``cycle_labels``)."""
    rng = np.random.default_rng(seed)
    if labels is None:
        return rng.integers(0, n, size=(n_boot, n))
    lab = _np64(labels).astype(np.int64).ravel()
    if len(lab) != n:
        raise ValueError(f"{len(lab)} labels for {n} feature rows")
    out = np.empty((n_boot, n), dtype=np.int64)
    for c in np.unique(lab):
        pool = np.nonzero(lab == c)[0]
        out[:, pool] = pool[rng.integers(0, len(pool), size=(n_boot, len(pool)))]
    return out


def _frechet_batch(x: np.ndarray, idx: np.ndarray, mu_ref: np.ndarray, sigma_ref: np.ndarray,
                   chunk: int = 25) -> np.ndarray:
    """FID of each resample ``x[idx[b]]`` against one reference Gaussian, batched: (B,) values.

    Same formula as ``frechet_from_stats``; the reference's square root is computed once."""
    r1 = _sqrtm_psd(sigma_ref)
    tr_ref = float(np.trace(sigma_ref))
    n = idx.shape[1]
    out = np.empty(len(idx))
    for s in range(0, len(idx), chunk):
        xb = x[idx[s:s + chunk]]                                  # (b, n, d)
        mu = xb.mean(1)
        xc = xb - mu[:, None, :]
        cov = np.matmul(xc.transpose(0, 2, 1), xc) / (n - 1)      # (b, d, d)
        m = r1 @ cov @ r1                                         # Tr (S1 S2)^(1/2) = Tr (S2^1/2 S1 S2^1/2)^1/2
        ev = np.linalg.eigvalsh((m + m.transpose(0, 2, 1)) / 2)
        diff = mu - mu_ref
        fid = (diff * diff).sum(1) + np.trace(cov, axis1=1, axis2=2) + tr_ref - 2 * np.sqrt(np.clip(ev, 0, None)).sum(1)
        out[s:s + chunk] = np.maximum(fid, 0.0)
    return out


def fid_interval(feats: ArrayLike, mu_ref: np.ndarray, sigma_ref: np.ndarray, labels: Optional[ArrayLike] = None,
                 n_boot: int = FID_BOOTSTRAP, level: float = INTERVAL_LEVEL, seed: int = 0
                 ) -> tuple[float, float, float]:
    """(fid, lo, hi): FID against a fixed reference Gaussian and its bootstrap interval (Efron & Tibshirani 1993).

    Resampling with replacement puts duplicates in every resample, which raises the FID of a small set
    (at n = 100 every resample scored above the estimate, so the plain percentile interval excluded it);
    the percentile interval is therefore shifted by the bootstrap's bias (mean of resamples - estimate):
    [q_lo - bias, q_hi - bias]. It keeps the spread's skew and always holds the estimate's neighbourhood."""
    x = _np64(feats)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {x.shape}")
    fid = frechet_from_stats(*gaussian_stats(x), mu_ref, sigma_ref)
    boots = _frechet_batch(x, _bootstrap_indices(len(x), labels, n_boot, seed), mu_ref, sigma_ref)
    alpha = (1.0 - level) / 2
    q_lo, q_hi = np.quantile(boots, [alpha, 1.0 - alpha])
    bias = float(boots.mean()) - fid
    return fid, max(float(q_lo) - bias, 0.0), float(q_hi) - bias


def wilson_interval(successes: int, n: int, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927):
    (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    if n < 1:
        raise ValueError(f"n = {n}: a proportion needs at least one trial")
    z = _z(level)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(float(centre - half), 0.0), min(float(centre + half), 1.0)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3, KID's kernel (Binkowski et al. 2018, eq. 2 with the cubic kernel)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


@dataclass
class KIDReference:
    """A fixed reference set for KID: its features and the row sums of its kernel matrix without the diagonal
    (the reference-reference term and the reference half of the jackknife need nothing else)."""

    feats: np.ndarray
    row_sums: np.ndarray

    @classmethod
    def from_features(cls, feats: ArrayLike, chunk: int = 1000) -> "KIDReference":
        y = _np64(feats)
        rows = np.empty(len(y))
        for s in range(0, len(y), chunk):                       # O(m^2 d) once, O(chunk * m) memory
            k = polynomial_kernel(y[s:s + chunk], y)
            rows[s:s + chunk] = k.sum(1) - np.diagonal(k, offset=s)[: len(k)]
        return cls(y, rows)


def kid_with_se(feats: ArrayLike, reference: KIDReference | ArrayLike, labels: Optional[ArrayLike] = None
                ) -> tuple[float, float]:
    """(KID, its standard error): the unbiased MMD^2 estimate with the cubic polynomial kernel
    (Binkowski et al. 2018, eq. 3 / Gretton et al. 2012, Lemma 6)

        KID = sum_{i!=j} k(x_i,x_j) / n(n-1) + sum_{i!=j} k(y_i,y_j) / m(m-1) - 2 sum_{i,j} k(x_i,y_j) / nm,

    and the two-sample jackknife standard error (Arvesen 1969): leave each x_i out, then each y_j, and
    SE^2 = sum over x's strata (n_c-1)/n_c sum_{i in c} (K_(i) - mean_c)^2 + (m-1)/m sum_j (K_(j) - mean)^2.
    KID is a U-statistic, so a bootstrap (duplicate pairs contribute k(x, x)) would bias it; the
    jackknife costs only row sums.

    ``labels``: the generated set is stratified (exactly n_c samples per requested label, ``cycle_labels``),
    so the x-x term is the stratified unbiased estimate sum_{c,c'} w_c w_c' mean_{i in c, j in c', i != j}
    k(x_i, x_j) with w_c = n_c / n. The plain term would count too few same-class pairs (at 10 per class,
    9/99 instead of 1/10), which with this kernel biased real-vs-real KID at n = 100 to about -3 SE.
    Labels are ignored when a class has fewer than 3 samples. Needs n, m >= 3; KID can be negative
    (real-vs-real KID is 0 in expectation)."""
    x = _np64(feats)
    ref = reference if isinstance(reference, KIDReference) else KIDReference.from_features(reference)
    y, ry = ref.feats, ref.row_sums
    n, m = len(x), len(y)
    if n < 3 or m < 3:
        raise ValueError(f"KID's jackknife needs at least 3 samples per set, got {n} and {m}")
    lab = np.zeros(n, dtype=np.int64) if labels is None else _np64(labels).astype(np.int64).ravel()
    _, strata = np.unique(lab, return_inverse=True)
    counts = np.bincount(strata).astype(np.float64)
    if counts.min() < 3:
        strata, counts = np.zeros(n, dtype=np.int64), np.array([float(n)])
    z = np.eye(len(counts))[strata]                              # (n, K) one-hot strata
    w = counts / n
    kxx = polynomial_kernel(x, x)
    np.fill_diagonal(kxx, 0.0)
    r = kxx @ z                                                  # r[i, c] = sum_{j in c, j != i} k(x_i, x_j)
    s = z.T @ r                                                  # block sums without the diagonal
    pairs = np.outer(counts, counts) - np.diag(counts)
    ww = np.outer(w, w)
    txx = float((ww * s / pairs).sum())
    kxy = polynomial_kernel(x, y)
    g = kxy.sum(1)                                               # sum_j k(x_i, y_j)
    tyy = ry.sum() / (m * (m - 1))
    cross = float((w * (z.T @ g) / counts).sum()) / m            # = mean_{i,j} k(x_i, y_j) with w_c = n_c/n
    kid = txx + tyy - 2 * cross
    # leave x_i (stratum a) out: stratum a loses one sample; the design weights w stay
    a = strata
    na = counts[a]
    old_a = 2 * (ww[a] * s[a] / pairs[a]).sum(1) - (ww[a, a] * s[a, a] / pairs[a, a])    # row + column a
    s_new = s[a] - r                                                                    # (n, K): S_{a,c} - r_ic
    pairs_new = (na - 1)[:, None] * counts[None, :]
    s_aa = s[a, a] - 2 * r[np.arange(n), a]
    p_aa = (na - 1) * (na - 2)
    new_off = ww[a] * s_new / pairs_new
    new_off[np.arange(n), a] = 0.0
    new_a = 2 * new_off.sum(1) + ww[a, a] * np.divide(s_aa, p_aa, out=np.zeros(n), where=p_aa > 0)
    sum_a = (z.T @ g)[a]
    cross_x = (cross * m - w[a] * sum_a / na + w[a] * (sum_a - g) / (na - 1)) / m
    loo_x = txx - old_a + new_a + tyy - 2 * cross_x
    var_x = sum((counts[c] - 1) / counts[c] * ((loo_x[a == c] - loo_x[a == c].mean()) ** 2).sum()
                for c in range(len(counts)))
    # leave y_j out
    gy = (w[a] / na) @ kxy                                       # sum_i w_a / n_a k(x_i, y_j)
    cross_y = (cross * m - gy) / (m - 1)
    loo_y = txx + (ry.sum() - 2 * ry) / ((m - 1) * (m - 2)) - 2 * cross_y
    var_y = (m - 1) / m * ((loo_y - loo_y.mean()) ** 2).sum()
    return float(kid), float(np.sqrt(var_x + var_y))


def kid_reference(clf: EvalClassifier, root: Optional[str] = None, split: str = "test",
                  val_size: int = HELD_OUT) -> KIDReference:
    """A reference split's KID reference in ``clf``'s feature space (features stored as float32; cached per
    classifier and split, in memory and under ``$DDPM_CACHE/classifiers/``)."""
    def compute() -> tuple[KIDReference, dict[str, Any]]:
        images, _ = split01(clf.dataset, split, root, val_size=val_size)
        feats = clf.features(images).float()
        ref = KIDReference.from_features(feats)
        return ref, {"feats": feats, "row_sums": torch.from_numpy(ref.row_sums)}

    def decode(d: dict[str, Any]) -> KIDReference:
        return KIDReference(d["feats"].double().numpy(), d["row_sums"].numpy())

    return _cached_reference(clf, "kid", split, val_size, decode, compute)


def score_intervals(clf: EvalClassifier, feats: ArrayLike, correct: torch.Tensor, labels: torch.Tensor,
                    root: Optional[str] = None, seed: int = 0, split: str = "test",
                    val_size: int = HELD_OUT) -> dict[str, Optional[float]]:
    """Intervals of one scored set (keys ``n, fid_lo, fid_hi, accuracy_lo, accuracy_hi, kid, kid_lo, kid_hi``),
    from its features and per-sample correctness; methods in ``INTERVAL_METHODS``. None where n is too
    small (KID needs n >= 3)."""
    ref = reference_stats(clf, root, split, val_size)
    n = len(correct)
    with _one_blas_thread():
        _, fid_lo, fid_hi = fid_interval(feats, ref.mu, ref.sigma, labels, seed=seed)
    acc_lo, acc_hi = wilson_interval(int(correct.sum()), n)
    out: dict[str, Optional[float]] = {"n": n, "fid_lo": fid_lo, "fid_hi": fid_hi,
                                       "accuracy_lo": acc_lo, "accuracy_hi": acc_hi,
                                       "kid": None, "kid_lo": None, "kid_hi": None}
    if n >= 3:
        kid, se = kid_with_se(feats, kid_reference(clf, root, split, val_size), labels)
        z = _z(INTERVAL_LEVEL)
        out.update(kid=kid, kid_lo=kid - z * se, kid_hi=kid + z * se)
    return out


def image_scores(clf: EvalClassifier, images: torch.Tensor, labels: torch.Tensor, root: Optional[str] = None,
                 seed: int = 0, split: str = "test", val_size: int = HELD_OUT) -> dict[str, Optional[float]]:
    """``image_metrics`` plus ``score_intervals``, from one forward pass, against the reference ``split``."""
    feats, preds = clf.features_and_predictions(images)
    labels = labels.cpu().long()
    out = _point_scores(clf, feats, preds, labels, root, split, val_size)
    out.update(score_intervals(clf, feats, preds.cpu() == labels, labels, root, seed, split, val_size))
    return out
