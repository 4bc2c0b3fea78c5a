"""``ddpm eval`` (guidance sweep of a checkpoint) and ``ddpm eval train-classifier`` (the evaluation classifier)."""
from __future__ import annotations

import argparse

from ddpm.cli import Command, number, parse_floats, register_command
from ddpm.errors import ConfigError
from ddpm.runtime import SEED_MAX


@register_command("eval")
class Eval(Command):
    """Score a checkpoint's samples at several guidance weights, e.g.
    ddpm eval runs/seed --omega -1,0,0.5,1,2,5,10 --n 1000 --sampler ddim --steps 50
    Per omega: FID in the evaluation classifier's feature space against the test split (--split val: the
    validation split, the training file's last data.val_size images), the real-data floor (the same FID
    for n real training images), conditional accuracy and a diversity score (intra-class feature spread
    relative to real data; 1 = real, 0 = one image per class).
    Writes <out>/eval.json and <out>/grids/omega<w>.png (default out: <run>/eval).
    `ddpm eval train-classifier [--dataset mnist] [--force]` trains (or shows) the evaluation classifier."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("checkpoint", help="a .pt checkpoint or a run folder")
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

    def take_action(self, args: argparse.Namespace) -> int:
        from ddpm.evaluation.checkpoints import evaluate_checkpoint, show_scores
        from ddpm.runtime import resolve_device

        omegas = parse_floats(args.omega, "--omega")
        scores = evaluate_checkpoint(args.checkpoint, omegas, n=args.n, sampler=args.sampler, steps=args.steps,
                                     eta=args.eta, seed=args.seed, split=args.split,
                                     device=resolve_device(args.device, "--device"),
                                     batch_size=args.batch_size, out_dir=args.out)
        show_scores(scores, args.split, args.n)
        return 0


@register_command("eval train-classifier")
class TrainClassifier(Command):
    """Train (or show) the evaluation classifier whose features and predictions `ddpm eval` scores with, e.g.
    ddpm eval train-classifier --dataset mnist            # show the one in use (train it if there is none)
    ddpm eval train-classifier --dataset mnist --force    # retrain it (the defaults reproduce the shipped one)
    The classifier is cached at $DDPM_CACHE/classifiers/ (default ~/.cache/ddpm); every later evaluation
    uses the cached one in preference to the one shipped with the package. Prints its test accuracy."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", default="mnist", help="the dataset (default mnist)")
        p.add_argument("--data-root", default=None, help="folder of the IDX files (default: the shipped dataset)")
        p.add_argument("--device", default="auto")
        p.add_argument("--force", action="store_true", help="retrain even if a cached or shipped classifier exists")
        p.add_argument("--epochs", type=number(1, integer=True), default=None,
                       help="with --force: training epochs (default: the shipped classifier's, 3)")
        p.add_argument("--limit", type=number(1, integer=True), default=None,
                       help="with --force: train on the first N of the classifier's training images "
                            "(default: all; fewer for a smoke test)")

    def take_action(self, args: argparse.Namespace) -> int:
        from ddpm.data import DATASETS
        from ddpm.evaluation.classifier import ClassifierCache
        from ddpm.progress import console
        from ddpm.runtime import resolve_device

        if args.dataset not in DATASETS:
            raise ConfigError(f"--dataset {args.dataset!r}: unknown; valid: {', '.join(sorted(DATASETS))}")
        if not args.force and (args.epochs is not None or args.limit is not None):
            raise ConfigError("--epochs and --limit say how to retrain: add --force")
        clf, path = ClassifierCache().ensure(args.dataset, args.data_root, resolve_device(args.device, "--device"),
                                             force=args.force, epochs=args.epochs, limit=args.limit)
        console.print(f"{args.dataset} evaluation classifier: {path} (test accuracy {clf.test_accuracy:.2%})")
        print(f"{clf.test_accuracy:.4f}")
        return 0
