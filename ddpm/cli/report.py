"""``ddpm report``."""
from __future__ import annotations

import argparse

from ddpm.cli import Command, register_command
from ddpm.errors import DDPMError


def require_report_libraries() -> None:
    """A one-line error, before any work, when the report's charting library is missing (an install made
    before matplotlib became a dependency)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DDPMError("matplotlib is not installed (the report draws its charts with it); install it with "
                        "`pip install matplotlib` or rerun scripts/setup.sh") from None


@register_command("report")
class Report(Command):
    """Write a study's best-config report, offline (Optuna storage + run folders; a run folder this machine
    does not hold is read from the study's artifact store, cached in <out>/.store-cache), e.g.
    ddpm report quickstart
    Writes <out>/best_config.yaml (rerun with `ddpm train`), report.html (self-contained),
    report.md (+ img/) and trials.csv; prints the path of report.html."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("study", help="study name")
        p.add_argument("--storage", default=None,
                       help="Optuna storage URL (default: sqlite:///runs/STUDY/study.db, where ddpm sweep puts it)")
        p.add_argument("--out", default=None, help="output folder (default: reports/STUDY)")

    def take_action(self, args: argparse.Namespace) -> int:
        require_report_libraries()
        from ddpm.report import write_report

        print(write_report(args.study, storage=args.storage, out_dir=args.out))
        return 0
