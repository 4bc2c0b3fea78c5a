"""Guidance sweeps and the cheap per-epoch sample metric: sample, then score with ``ddpm.evaluation.metrics``.

``evaluate_guidance`` is the code path of ``ddpm eval``: each guidance weight is sampled once from the
same seed (so rows differ only by omega), scored against a reference split, and drawn as a 10x10 grid.
The reference split is ``test`` for final numbers (``ddpm eval``'s default) and ``val`` (the training
file's last ``data.val_size`` images) wherever a score selects something: sweep objectives, pruning.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Optional

import torch

from ddpm.config import ExperimentConfig
from ddpm.diffusion import ConditionalDDPM
from ddpm.errors import ConfigError
from ddpm.evaluation.classifier import EvalClassifier, accuracy, get_classifier
from ddpm.evaluation.metrics import INTERVAL_LEVEL, INTERVAL_METHODS, fid_to_test, image_scores, real_floor
from ddpm.grids import cycle_labels, save_grid
from ddpm.io import atomic_write_json
from ddpm.sampling import Sampling, cap_steps

# n: images scored; <key>_lo/_hi: the 95% interval of fid, accuracy and kid (methods: INTERVAL_METHODS,
# also written to eval.json); kid/_lo/_hi are None below n = 3. Rows stored before these keys existed lack them.
ROW_KEYS = ("omega", "fid", "floor", "accuracy", "diversity", "seconds", "grid",
            "n", "fid_lo", "fid_hi", "accuracy_lo", "accuracy_hi", "kid", "kid_lo", "kid_hi")
LOWER_IS_BETTER = {"fid": True, "floor": True, "seconds": True, "accuracy": False, "diversity": False,
                   "kid": True}


def _device(model: ConditionalDDPM, device: Optional[str | torch.device]) -> torch.device:
    return torch.device(device) if device is not None else next(model.parameters()).device


def generate(model: ConditionalDDPM, cfg: ExperimentConfig, labels: torch.Tensor, omega: Optional[float],
             sampler: Optional[str], steps: Optional[int], eta: Optional[float], device: torch.device,
             seed: int = 0, batch_size: int = 500, show_progress: bool = False) -> torch.Tensor:
    """Images in [0, 1] for ``labels`` at guidance weight ``omega``, on the CPU, in batches from one generator
    (None for omega/sampler/steps/eta: the config's; steps outside 1..T: a ConfigError)."""
    sampling = Sampling.from_config(cfg, device, sampler=sampler, steps=steps, eta=eta)
    return _draw(sampling, model, labels, omega, seed, batch_size, show_progress)


def _draw(sampling: Sampling, model: ConditionalDDPM, labels: torch.Tensor, omega: Optional[float], seed: int,
          batch_size: int, show_progress: bool) -> torch.Tensor:
    g = torch.Generator(device=sampling.device).manual_seed(seed)
    return sampling.sample(model.to(sampling.device), labels, g, omega=omega, batch_size=batch_size, to_cpu=True,
                           show_progress=show_progress)


def grid_order(labels: torch.Tensor, num_classes: int, per_class: int = 10) -> torch.Tensor:
    """Indices of up to ``per_class`` samples of each class, class by class (row r = digit r)."""
    rows = [torch.nonzero(labels == c).flatten()[:per_class] for c in range(num_classes)]
    if all(len(r) == per_class for r in rows):
        return torch.cat(rows)
    return torch.argsort(labels[: num_classes * per_class], stable=True)


def reference_split(cfg: ExperimentConfig, split: str) -> tuple[str, int]:
    """(split, val_size) of a reference split for ``cfg``; ``val`` needs a validation split (data.val_size > 0)."""
    if split not in ("val", "test"):
        raise ConfigError(f"split {split!r}: valid: val, test")
    if split == "val" and cfg.data.val_size == 0:
        raise ConfigError("split 'val': the config has no validation split (data.val_size = 0); "
                          "score on split 'test' or set data.val_size > 0")
    return split, cfg.data.val_size


def evaluate_guidance(model: ConditionalDDPM, cfg: ExperimentConfig, omegas: list[float], n: int = 1000,
                      sampler: Optional[str] = None, steps: Optional[int] = None, eta: Optional[float] = None,
                      device: Optional[str | torch.device] = None, out_dir: Optional[str | Path] = None,
                      seed: int = 0, show_progress: bool = True, checkpoint: Optional[str] = None,
                      classifier: Optional[EvalClassifier] = None, batch_size: int = 500,
                      split: str = "test") -> list[dict[str, Any]]:
    """Sample ``n`` images (labels cycling 0..K-1) at each guidance weight and score them against the
    reference ``split`` (``test`` for final numbers, ``val`` for model selection).

    Returns one row per omega with keys ``ROW_KEYS``; with ``out_dir`` also writes
    ``out_dir/grids/omega<w>.png`` and ``out_dir/eval.json`` (rows plus split, sampler, steps, n,
    checkpoint, classifier accuracy, the interval methods). Row ``seconds`` include the intervals' cost."""
    if n < 2:
        raise ValueError(f"n = {n}: FID needs at least 2 samples")
    split, val_size = reference_split(cfg, split)
    dev = _device(model, device)
    # a bad sampler or step count fails here, before any work
    sampling = Sampling.from_config(cfg, dev, sampler=sampler, steps=steps, eta=eta)
    clf = classifier or get_classifier(cfg.data.dataset, cfg.data.root, dev, show_progress=show_progress)
    floor = real_floor(clf, n, cfg.data.dataset, cfg.data.root, split=split, val_size=val_size)
    labels = cycle_labels(n, cfg.model.num_classes)
    out = Path(out_dir) if out_dir is not None else None
    rows: list[dict[str, Any]] = []
    for w in omegas:
        start = time.perf_counter()
        images = _draw(sampling, model, labels, w, seed, batch_size, show_progress)
        m = image_scores(clf, images, labels, cfg.data.root, split=split, val_size=val_size)
        grid = None
        if out is not None:
            rel = Path("grids") / f"omega{w:g}.png"
            save_grid(images[grid_order(labels, cfg.model.num_classes)], out / rel, nrow=10)
            grid = rel.as_posix()
        diversity = None if math.isnan(m["diversity"]) else m["diversity"]   # None: < 2 samples per class
        rows.append({"omega": float(w), "fid": m["fid"], "floor": floor, "accuracy": m["accuracy"],
                     "diversity": diversity, "seconds": round(time.perf_counter() - start, 2), "grid": grid,
                     **{k: m[k] for k in ROW_KEYS[7:]}})
    if out is not None:
        atomic_write_json(out / "eval.json", {
            "checkpoint": checkpoint, "dataset": cfg.data.dataset, "split": split,
            "reference_images": _reference_text(split, val_size), "sampler": sampling.name,
            "steps": sampling.steps, "eta": sampling.eta, "n": n, "seed": seed,
            "classifier_test_accuracy": clf.test_accuracy,
            "classifier": clf.key, "interval": {"level": INTERVAL_LEVEL, **INTERVAL_METHODS}, "rows": rows, "best": best_row(rows) if rows else None,
            "config": cfg.to_dict()})
    return rows


def _reference_text(split: str, val_size: int) -> str:
    return ("the test file" if split == "test"
            else f"the last {val_size} images of the training file (validation split)")


def json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of a guidance row (Optuna user attributes and the confirmation record are JSON)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if hasattr(v, "item"):
            v = v.item()
        elif isinstance(v, Path):
            v = str(v)
        out[k] = v
    return out


def best_row(rows: list[dict[str, Any]], key: str = "fid", lower: Optional[bool] = None) -> dict[str, Any]:
    """The row (one omega) with the best ``key``: lowest when ``lower`` (default: ``LOWER_IS_BETTER``, i.e.
    lowest FID/floor/seconds/KID, highest accuracy/diversity), else highest. Missing, NaN and infinite values
    lose; the first of equals wins. The one best-row selection (``ddpm eval``, eval.json and the sweep
    objective via ``ddpm.sweeps.metrics.best_guidance_row``). ``rows`` must not be empty."""
    if not rows:
        raise ValueError("no guidance rows to choose from")
    sign = 1.0 if (LOWER_IS_BETTER.get(key, True) if lower is None else lower) else -1.0

    def score(r: dict[str, Any]) -> float:
        v = r.get(key)
        return math.inf if v is None or not math.isfinite(float(v)) else sign * float(v)
    return min(rows, key=score)


def quick_metric(model: ConditionalDDPM, cfg: ExperimentConfig, *, n: int, steps: int, omega: Optional[float] = None,
                 sampler: str = "ddim", seed: int = 0, eta: float = 0.0,
                 device: Optional[str | torch.device] = None,
                 classifier: Optional[EvalClassifier] = None, split: str = "val") -> dict[str, float]:
    """A cheap per-epoch sample metric for sweeps: ``n`` deterministic DDIM samples (``steps`` steps at most:
    a budget, capped at the model's T; the config's omega unless given) -> ``sample_fid`` (classifier-feature FID to the reference ``split``,
    by default the validation split) and ``sample_accuracy``. The same n, seed and step count make it
    comparable across schedules and T; a sweep's ``prune_on`` (``ddpm.sweeps.spec.PruneSpec``) holds the
    defaults of ``n`` and ``steps``."""
    split, val_size = reference_split(cfg, split)
    dev = _device(model, device)
    clf = classifier or get_classifier(cfg.data.dataset, cfg.data.root, dev)
    labels = cycle_labels(n, cfg.model.num_classes)
    images = generate(model, cfg, labels, omega, sampler, cap_steps(steps, cfg.diffusion.T), eta, dev, seed,
                      batch_size=n)
    feats, preds = clf.features_and_predictions(images)
    return {"sample_fid": fid_to_test(clf, feats, cfg.data.root, split, val_size),
            "sample_accuracy": accuracy(preds, labels)}
