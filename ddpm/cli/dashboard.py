"""``ddpm dashboard``."""
from __future__ import annotations

import argparse

from ddpm.cli import Command, number, register_command


@register_command("dashboard")
class Dashboard(Command):
    """Start optuna-dashboard on a study's storage and artifact store (its trials' grids and best.pt).
    ddpm dashboard quickstart
    ddpm dashboard schedules --storage postgresql://user:pw@db-host/optuna --port 8081
Serves on 127.0.0.1 (--host 0.0.0.0 to reach it from other machines); Ctrl-C stops.
Needs the dashboard extra: pip install 'ddpm-sweeps[dashboard]' (scripts/setup.sh installs it)."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("study", help="study name")
        p.add_argument("--storage", default=None,
                       help="Optuna storage URL (default: sqlite:///runs/STUDY/study.db, where ddpm sweep puts it)")
        p.add_argument("--out-dir", default="runs", help="where default storages live (default runs)")
        p.add_argument("--artifacts", metavar="PATH", default=None,
                       help="artifact store (default: the one the study recorded, else runs/STUDY/artifacts)")
        p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        p.add_argument("--port", type=number(0, 65535, integer=True), default=8080,
                       help="port to listen on (default 8080; 0: any free port)")

    def take_action(self, args: argparse.Namespace) -> int:
        from ddpm.sweeps.dashboard import dashboard_target, require_dashboard, serve_dashboard

        require_dashboard()  # the install hint before any storage is opened
        target = dashboard_target(args.study, args.storage, args.out_dir, args.artifacts)

        def ready(page: str) -> None:
            print(f"optuna-dashboard: {page}  (study {target.study}, artifacts in {target.artifacts}; Ctrl-C stops)",
                  flush=True)

        try:
            serve_dashboard(target, args.host, args.port, on_ready=ready)
        except KeyboardInterrupt:
            return 0
        return 0
