"""What ``ddpm sweep`` does once its trials are done: log the study to W&B (when tracking is on), stop
when no trial completed, run the confirmation stage, write the report."""
from __future__ import annotations

import glob
import shlex
from pathlib import Path
from typing import Any, Optional

import optuna

from ddpm.progress import console
from ddpm.sweeps.listing import no_trial_completed
from ddpm.sweeps.spec import SweepSpec
from ddpm.sweeps.storage import reading


def finish_study(study: optuna.Study, spec: SweepSpec, url: str, confirm: bool = True,
                 report: bool = True) -> Optional[str]:
    """Log, confirm (``spec.confirm``, unless ``confirm`` is False) and report (``spec.report``, unless
    ``report`` is False). Returns None, or one line saying why no trial completed (nothing confirmed or
    reported then: a report without a best config would only replace an earlier good one in
    ``reports/<study>/``; ``ddpm trials`` shows the failures and ``ddpm report`` still works)."""
    log_study_run(study, spec)
    print_wandb_sync(spec)
    why = no_trial_completed(study, spec.storage)
    if why:
        return why
    if spec.confirm is not None and confirm:
        from ddpm.sweeps.confirm import run_confirmation

        with reading(url):
            run_confirmation(study, spec, log=lambda line: console.print(line, markup=False, soft_wrap=True))
    path = None
    if spec.report and report:
        from ddpm.report import write_report

        path = write_report(spec.study, url, _report_dir(spec))
    print_next_steps(spec, url, path)
    return None


def _report_dir(spec: SweepSpec) -> Any:
    from ddpm.report import default_report_dir

    return default_report_dir(spec.study)


def print_next_steps(spec: SweepSpec, url: str, report: Optional[Any]) -> None:
    """The end of ``ddpm sweep``: the report's path, best_config.yaml's, and the command that retrains the best
    config (or, with no report written, the command that writes them)."""
    from shlex import quote

    from ddpm.sweeps.storage import default_storage_url, redact_url

    best = _report_dir(spec) / "best_config.yaml"
    if report is None or not best.is_file():  # `ddpm report` reads runs/<study>/study.db unless told otherwise
        flag = f" --storage {quote(redact_url(url))}" if url != default_storage_url("runs", spec.study) else ""
        console.print(f"report: not written; write it (and {best}) with: ddpm report {quote(spec.study)}{flag}",
                      markup=False)
        return
    console.print(f"report: {report}", markup=False)
    console.print(f"best config: {best}", markup=False)
    console.print(f"rerun the best config: ddpm train {quote(str(best))}", markup=False)


def log_study_run(study: optuna.Study, spec: Any) -> None:
    """One study-level W&B run (optimisation history, importances) when tracking is on."""
    from ddpm.tracking import log_study

    cfg = spec.base_config({"out_dir": spec.out_dir})   # the study run beside the trials: <out_dir>/<study>/wandb
    if cfg.tracking.wandb == "disabled":
        return
    try:
        log_study(study, group=spec.study, cfg=cfg)
    except Exception as e:  # tracking never turns a finished study into an error
        console.print(f"[yellow]warning: could not log the study to W&B: {e}[/]", soft_wrap=True)


def wandb_sync_command(spec: Any) -> Optional[str]:
    """One ``wandb sync`` command that uploads every offline W&B run of the study (its trials' runs and the
    study run, reruns included), or None when it has none. Paths as the sweep saw them (relative to where it
    ran), so ``runs/`` can be copied to another machine and synced there from the folder holding it."""
    from ddpm.tracking.wandb_env import wandb_dir

    custom = wandb_dir(spec.base_config().tracking.dir)
    root = Path(spec.study_dir)
    # (as shown, glob of its offline runs): tracking.dir / WANDB_DIR hold every run in one wandb/ folder,
    # else each trial's run folder and the study folder hold their own
    q, g = (lambda p: shlex.quote(str(p))), (lambda p: glob.escape(str(p)))
    where = ([(q(custom / "wandb"), g(custom / "wandb"))] if custom is not None else
             [(q(root / "wandb"), g(root / "wandb")), (f"{q(root)}/trial-*/wandb", f"{g(root)}/trial-*/wandb")])
    folders = [shown for shown, pattern in where
               if any(Path(p).is_dir() for p in glob.glob(f"{pattern}/offline-run-*"))]
    return f"wandb sync {' '.join(folders)}" if folders else None


def print_wandb_sync(spec: Any) -> None:
    command = wandb_sync_command(spec)
    if command:
        console.print(f"W&B offline runs of this study: upload them all with `{command}`", soft_wrap=True,
                      markup=False, highlight=False)
