"""``ddpm eval``: guidance sweep of a checkpoint scored by the evaluation classifier."""
from __future__ import annotations

import argparse
from pathlib import Path

from ddpm.cli import Command, number, register_command
from ddpm.runtime import SEED_MAX
from ddpm.cli.sample import parse_floats
from ddpm.errors import ConfigError

TRAIN_CLASSIFIER = "train-classifier"


def train_classifier_action(dataset: str, root: str | None, device: str, force: bool) -> int:
    from ddpm.data import DATASETS
    from ddpm.evaluation import classifier_path, get_classifier
    from ddpm.progress import console
    from ddpm.runtime import resolve_device

    if dataset not in DATASETS:
        raise ConfigError(f"--dataset {dataset!r}: unknown; valid: {', '.join(sorted(DATASETS))}")
    path = classifier_path(dataset)
    if force and path.is_file():
        path.unlink()
    clf = get_classifier(dataset, root, resolve_device(device, "--device"))
    console.print(f"{dataset} evaluation classifier: {path} (test accuracy {clf.test_accuracy:.2%})")
    print(f"{clf.test_accuracy:.4f}")
    return 0


@register_command("eval")
class Eval(Command):
    """Score a checkpoint's samples at several guidance weights, e.g.
    ddpm eval runs/seed --omega -1,0,0.5,1,2,5,10 --n 1000 --sampler ddim --steps 50
    Per omega: FID in the evaluation classifier's feature space against the test split (--split val: the
    validation split, the training file's last data.val_size images), the real-data floor (the same FID
    for n real training images), conditional accuracy and a diversity score (intra-class feature spread
    relative to real data; 1 = real, 0 = one image per class).
    Writes <out>/eval.json and <out>/grids/omega<w>.png (default out: <run>/eval).
    `ddpm eval train-classifier [--dataset mnist]` trains (or shows) the cached evaluation classifier."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("checkpoint", help=f"a .pt checkpoint or a run folder; or `{TRAIN_CLASSIFIER}`")
        p.add_argument("--omega", default="-1,0,0.5,1,2,5,10",
                       help="comma-separated guidance weights (default: the seed's -1,0,0.5,1,2,5,10)")
        p.add_argument("--n", type=number(1, integer=True), default=1000, help="samples per omega, labels cycling 0..9 (default 1000)")
        p.add_argument("--sampler", default=None, help="ddpm or ddim (default: the config's)")
        p.add_argument("--steps", type=number(1, integer=True), default=None, help="sampling steps (default: the config's, else T)")
        p.add_argument("--eta", type=number(0), default=None, help="DDIM eta (default: the config's)")
        p.add_argument("--seed", type=number(0, SEED_MAX, integer=True), default=0)
        p.add_argument("--split", choices=("test", "val"), default="test",
                       help="reference split: test (final numbers, default) or val (the validation split)")
        p.add_argument("--device", default="auto")
        p.add_argument("--batch-size", type=number(1, integer=True), default=500, help="images sampled at once (default 500)")
        p.add_argument("--out", default=None, help="output folder (default: <run>/eval)")
        p.add_argument("--dataset", default="mnist", help=f"with {TRAIN_CLASSIFIER}: the dataset (default mnist)")
        p.add_argument("--data-root", default=None, help=f"with {TRAIN_CLASSIFIER}: folder of the IDX files")
        p.add_argument("--force", action="store_true", help=f"with {TRAIN_CLASSIFIER}: retrain even if cached")

    def take_action(self, args: argparse.Namespace) -> int:
        if args.checkpoint == TRAIN_CLASSIFIER:
            return train_classifier_action(args.dataset, args.data_root, args.device, args.force)
        omegas = parse_floats(args.omega, "--omega")
        if args.n < 2:
            raise ConfigError(f"--n {args.n}: must be >= 2 (FID needs a covariance)")
        if args.batch_size < 1:
            raise ConfigError(f"--batch-size {args.batch_size}: must be >= 1")

        from ddpm.checkpoint import load_model
        from ddpm.evaluation import evaluate_guidance, get_classifier
        from ddpm.runtime import resolve_device

        device = resolve_device(args.device, "--device")
        model, cfg, ckpt = load_model(args.checkpoint, device)
        if args.steps is not None and not 1 <= args.steps <= cfg.diffusion.T:
            raise ConfigError(f"--steps {args.steps}: must lie in 1..{cfg.diffusion.T} (the model's T)")
        from ddpm.samplers import make_sampler
        make_sampler(args.sampler or cfg.sample.sampler)   # an unknown sampler fails before any work
        if args.split == "val" and cfg.data.val_size == 0:
            raise ConfigError(f"--split val: {ckpt['path']} was trained without a validation split "
                              f"(data.val_size = 0); use --split test")
        out = Path(args.out) if args.out else Path(ckpt["path"]).parent.parent / "eval"
        clf = get_classifier(cfg.data.dataset, cfg.data.root, device)
        rows = evaluate_guidance(model, cfg, omegas, n=args.n, sampler=args.sampler, steps=args.steps,
                                 eta=args.eta, device=device, out_dir=out, seed=args.seed,
                                 checkpoint=ckpt["path"], classifier=clf, batch_size=args.batch_size,
                                 split=args.split)
        print_table(rows, title=f"{ckpt['path']}: {args.split} split, n={args.n}, "
                                f"classifier accuracy {clf.test_accuracy:.2%}")
        print(f"wrote {out / 'eval.json'} and {len(rows)} grids under {out / 'grids'}")
        return 0


def print_table(rows: list[dict], title: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    from ddpm.evaluation import best_row
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
