"""Scoring a saved checkpoint (``ddpm eval``): check the request against the model, sweep the guidance
weights with ``evaluate_guidance``, and show the rows as a table with their intervals and n."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ddpm.errors import ConfigError
from ddpm.evaluation.classifier import ClassifierCache, EvalClassifier


@dataclass
class CheckpointScores:
    """What ``evaluate_checkpoint`` measured and where it wrote it."""

    rows: list[dict[str, Any]]
    checkpoint: str
    classifier: EvalClassifier
    out_dir: Path


def evaluate_checkpoint(checkpoint: str | Path, omegas: list[float], n: int = 1000, sampler: Optional[str] = None,
                        steps: Optional[int] = None, eta: Optional[float] = None, seed: int = 0,
                        split: str = "test", device: torch.device | str = "cpu", batch_size: int = 500,
                        out_dir: Optional[str | Path] = None,
                        classifiers: Optional[ClassifierCache] = None) -> CheckpointScores:
    """Load ``checkpoint`` (a .pt or a run folder) and score its samples at each of ``omegas`` against the
    reference ``split``; writes ``<out_dir>/eval.json`` and grids (default out_dir: ``<run>/eval``).
    Requests the model cannot serve (n < 2, steps outside 1..T, an unknown sampler, ``val`` without a
    validation split) are a ConfigError before any sampling."""
    from ddpm.checkpoint import load_model
    from ddpm.evaluation.guidance import evaluate_guidance
    from ddpm.sampling import Sampling

    if n < 2:
        raise ConfigError(f"--n {n}: must be >= 2 (FID needs a covariance)")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be >= 1")
    device = torch.device(device)
    model, cfg, ckpt = load_model(checkpoint, device)
    Sampling.from_config(cfg, device, sampler=sampler, steps=steps, eta=eta, steps_key="--steps")  # bad steps or
    # an unknown sampler fail here, before any work: the same checks as every other sampling call
    if split == "val" and cfg.data.val_size == 0:
        raise ConfigError(f"--split val: {ckpt['path']} was trained without a validation split "
                          f"(data.val_size = 0); use --split test")
    out = Path(out_dir) if out_dir else Path(ckpt["path"]).parent.parent / "eval"
    clf = (classifiers or ClassifierCache()).get(cfg.data.dataset, cfg.data.root, device)
    rows = evaluate_guidance(model, cfg, omegas, n=n, sampler=sampler, steps=steps, eta=eta, device=device,
                             out_dir=out, seed=seed, checkpoint=ckpt["path"], classifier=clf,
                             batch_size=batch_size, split=split)
    return CheckpointScores(rows, str(ckpt["path"]), clf, out)


def print_table(rows: list[dict], title: str = "") -> None:
    """The guidance rows as a console table: FID, accuracy and KID with their 95% intervals, and n; the
    lowest FID is starred."""
    from rich.console import Console
    from rich.table import Table

    from ddpm.evaluation.guidance import best_row
    from ddpm.sweeps.verdict import fmt_interval

    best = best_row(rows)["omega"] if rows else None
    t = Table(title=title)
    for col in ("omega", "FID [95%]", "floor", "accuracy [95%]", "KID [95%]", "diversity", "n", "seconds"):
        t.add_column(col, justify="right")
    for r in rows:
        mark = " *" if r["omega"] == best else ""
        t.add_row(f"{r['omega']:g}{mark}", fmt_interval(r["fid"], r.get("fid_lo"), r.get("fid_hi")),
                  f"{r['floor']:.2f}", fmt_interval(r["accuracy"], r.get("accuracy_lo"), r.get("accuracy_hi")),
                  fmt_interval(r.get("kid"), r.get("kid_lo"), r.get("kid_hi")),
                  "-" if r["diversity"] is None else f"{r['diversity']:.3f}", str(r.get("n", "-")),
                  f"{r['seconds']:.1f}")
    Console(width=140).print(t)
    if best is not None:
        print(f"* lowest FID at omega={best:g}; brackets: 95% intervals (their methods: eval.json 'interval')")


def show_scores(scores: CheckpointScores, split: str, n: int) -> None:
    """``ddpm eval``'s console output: the table, then where the files went."""
    print_table(scores.rows, title=f"{scores.checkpoint}: {split} split, n={n}, "
                                   f"classifier accuracy {scores.classifier.test_accuracy:.2%}")
    print(f"wrote {scores.out_dir / 'eval.json'} and {len(scores.rows)} grids under {scores.out_dir / 'grids'}")
