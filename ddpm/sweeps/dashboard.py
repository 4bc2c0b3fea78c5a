"""optuna-dashboard on a study's storage and artifact store (``ddpm dashboard STUDY``).

The study is looked up as ``ddpm trials`` does (its default storage ``<out_dir>/<study>/study.db`` unless a
storage URL is given; a missing storage or study is a one-line error), then optuna-dashboard's WSGI app
(``optuna_dashboard.wsgi``) is served on ``host:port`` with the study's artifact store
(``ddpm.sweeps.artifacts``), so a trial's page lists its sample grids and best checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ddpm.errors import DDPMError

INSTALL_HINT = "pip install 'ddpm-sweeps[dashboard]' (scripts/setup.sh installs it)"


class DashboardError(DDPMError):
    """optuna-dashboard is missing or cannot listen where asked."""


@dataclass(frozen=True)
class DashboardTarget:
    study: str
    study_id: int       # optuna-dashboard's URLs name studies by their storage id
    url: str            # the storage URL (unredacted: the server opens it)
    artifacts: str      # the artifact store's location

    def page(self, host: str, port: int) -> str:
        """The study's page on a dashboard served at ``host:port``."""
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/dashboard/studies/{self.study_id}"


def require_dashboard() -> Any:
    """The ``optuna_dashboard`` module, or a one-line DashboardError with the install hint."""
    try:
        import optuna_dashboard
    except ImportError:
        raise DashboardError(f"optuna-dashboard is not installed; {INSTALL_HINT}") from None
    return optuna_dashboard


def dashboard_target(study: str, storage: Optional[str] = None, out_dir: str | Path = "runs",
                     artifacts: Optional[str] = None) -> DashboardTarget:
    """The study to show: its storage URL, id and artifact store (``artifacts``, else the one it recorded)."""
    from ddpm.sweeps.artifacts import study_artifact_location
    from ddpm.sweeps.listing import load_stored_study
    from ddpm.sweeps.spec import check_artifact_location
    from ddpm.sweeps.storage import open_storage_readonly, reading

    url, loaded = load_stored_study(study, storage, out_dir)
    with reading(url):
        location = check_artifact_location(artifacts, "--artifacts") or study_artifact_location(loaded, out_dir)
        return DashboardTarget(study, open_storage_readonly(url).get_study_id_from_name(study), url, location)


def dashboard_app(target: DashboardTarget) -> Any:
    """optuna-dashboard's WSGI application on the study's storage (writable: notes, as in optuna-dashboard)
    and artifact store (read; a folder store that does not exist yet is not created)."""
    from ddpm.sweeps.artifacts import open_artifact_store
    from ddpm.sweeps.storage import open_storage

    dashboard = require_dashboard()
    return dashboard.wsgi(open_storage(target.url), artifact_store=open_artifact_store(target.artifacts, create=False))


def serve_dashboard(target: DashboardTarget, host: str = "127.0.0.1", port: int = 8080,
                    on_ready: Optional[Callable[[str], None]] = None) -> None:
    """Serve optuna-dashboard until Ctrl-C (KeyboardInterrupt propagates); ``on_ready`` gets the study's page
    once the port is bound. A port that cannot be bound is a one-line DashboardError."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):  # the dashboard polls every few seconds: no line per request
        def log_message(self, format: str, *args: Any) -> None:
            pass

    app = dashboard_app(target)
    try:
        server = make_server(host, port, app, handler_class=QuietHandler)
    except OSError as e:
        raise DashboardError(f"cannot listen on {host}:{port}: {e.strerror or e}; pass another --port "
                             f"(or --host)") from None
    with server:
        if on_ready is not None:
            on_ready(target.page(host, server.server_port))
        server.serve_forever()
