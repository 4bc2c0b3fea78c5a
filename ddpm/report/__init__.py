"""Best-config reports of an Optuna study: ``write_report(study_name, storage, out_dir)``.

Reads the study's storage and its trials' run folders (offline; no W&B; a run folder this machine does not hold
is read from the study's artifact store, cached in ``out_dir/.store-cache/``) and writes, in ``out_dir``
(default ``reports/<study>``): ``best_config.yaml``, ``report.html`` (self-contained),
``report.md`` (+ ``img/``) and ``trials.csv``.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from ddpm.redact import redact, redact_text
from ddpm.report.best_config import write_best_config
from ddpm.report.collect import StudyData, StudyNotFound, collect
from ddpm.report.html import write_html
from ddpm.report.markdown import write_markdown
from ddpm.report.sections import SECTIONS, ReportContext, build_sections, register_section
from ddpm.report.trials_csv import write_trials_csv
from ddpm.sweeps.trial_outputs import STORE_CACHE

__all__ = ["write_report", "default_report_dir", "collect", "StudyData", "StudyNotFound", "SECTIONS", "register_section"]


def default_report_dir(study_name: str) -> Path:
    """``reports/<study>``, the name made one safe folder name: a study called ``../x``, ``a/b`` or
    ``/abs`` (any string is a valid Optuna study name) never writes outside ``reports/``."""
    safe = re.sub(r"[^\w.\-]+", "_", study_name).lstrip(".") or "study"
    return Path("reports") / safe


def write_report(study_name: str, storage: Optional[str] = None, out_dir: str | Path | None = None) -> Path:
    """Write the report of ``study_name`` and return the path of ``report.html``.

    ``out_dir`` (an explicit choice) is used as given; the default is :func:`default_report_dir`."""
    out = Path(out_dir) if out_dir is not None else default_report_dir(study_name)
    data = collect(study_name, storage, cache=out / STORE_CACHE)
    out.mkdir(parents=True, exist_ok=True)
    best = data.best()
    best_yaml = write_best_config(out / "best_config.yaml", data, best)
    write_trials_csv(out / "trials.csv", data)
    sections = redact(build_sections(ReportContext(data, best, best_yaml, out)), data.secrets)
    title = f"Study {data.name}: best-config report"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (f"Written {now} by `ddpm report {data.name}` from the Optuna storage and the trials' run "
                f"folders (offline). Files beside it: best_config.yaml, trials.csv, report.md.")
    title, subtitle = redact_text(title, data.secrets), redact_text(subtitle, data.secrets)
    write_markdown(out / "report.md", title, subtitle, sections)
    return write_html(out / "report.html", title, subtitle, sections)
