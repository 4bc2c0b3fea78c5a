"""The Optuna objective: one trial = the CLI's own ``train()`` + one guidance grid, scored by the sweep.

Per trial: suggest every searched key, build the config (base + overrides + params) with the run
folder ``runs/<study>/trial-<n>/``, train with a pruning callback (a per-epoch value reported to the
trial) and a tracker, evaluate the guidance grid on the best checkpoint once, store the whole table
with the trial, and return the objective(s) read at the best omega.

A retried trial (its worker died, or the sweep was interrupted) copies its predecessor's run folder
and continues from ``last.pt`` instead of epoch 0; on a machine without that folder it downloads the folder's
stored copy from the study's artifact store (``ddpm.sweeps.trial_outputs``: every trial sends its checkpoint and
metrics there after each epoch, and its grids and guidance files at the end). A trial that raises or diverges is recorded failed
with its reason; the study goes on.

What a trial stores (its user attributes) is one typed record, ``ddpm.sweeps.record.TrialRecord``:
written here field by field as the trial goes, read by the runner, the CLI, the tracker and the report.
"""
from __future__ import annotations

import math
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Optional

import optuna

from ddpm.config import set_dotted
from ddpm.progress import console
from ddpm.sweeps.artifacts import study_artifact_location
from ddpm.sweeps.metrics import OBJECTIVE_METRICS, PRUNE_METRICS, best_guidance_row
from ddpm.sweeps.record import TrialRecord
from ddpm.sweeps.spec import PruneSpec, SweepSpec, suggest_params, trial_config
from ddpm.sweeps.trial_outputs import TrialOutputs, fetch_outputs
from ddpm.train import Callback, TrainState


class PruningCallback(Callback):
    """Adds the sweep's per-epoch metric to each epoch's record and reports it to the trial.

    ``sample_fid``/``sample_accuracy`` come from ``ddpm.evaluation.quick_metric`` on a few samples scored
    against the validation split, comparable across schedules and T (the noise loss is not);
    ``val_loss``/``test_loss`` read the record's validation noise loss (test without a validation split).
    Raises ``optuna.TrialPruned`` when the pruner says so (after the epoch's checkpoint is saved).
    """

    def __init__(self, trial: optuna.Trial, prune: PruneSpec, active: bool) -> None:
        self.trial, self.prune, self.active = trial, prune, active
        self.metric = PRUNE_METRICS[prune.metric]
        self.classifiers: Any = None   # a ClassifierCache once samples are scored: one load per trial, not per epoch

    def on_epoch_metrics(self, run: TrainState, record: dict[str, Any]) -> None:
        if not self.metric.needs_samples:
            return
        from ddpm.evaluation import quick_metric
        from ddpm.evaluation.classifier import ClassifierCache

        self.classifiers = self.classifiers or ClassifierCache()
        device = next(run.eval_model.parameters()).device
        clf = self.classifiers.get(run.cfg.data.dataset, run.cfg.data.root, device)
        record.update(quick_metric(run.eval_model, run.cfg, n=self.prune.n, steps=self.prune.steps,
                                   split=scoring_split(run.cfg), classifier=clf))

    def on_epoch_end(self, run: TrainState, record: dict[str, Any]) -> None:
        value = self.metric.value(record)
        if not math.isfinite(value):
            return
        self.trial.report(value, step=int(record["epoch"]))
        if self.active and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}: {self.prune.metric} = {value:.4g}")


class OutputsUpload(Callback):
    """After each epoch (its checkpoint saved), the trial's changed output files into the study's artifact store.
    First in the callback list: a pruned trial's last epoch is stored too. A store that fails is a warning."""

    def __init__(self, number: int, outputs: TrialOutputs) -> None:
        self.number, self.outputs = number, outputs

    def on_epoch_end(self, run: TrainState, record: dict[str, Any]) -> None:
        try:
            self.outputs.sync(run.run_dir)
        except Exception as err:
            _store_warning(self.number, self.outputs.location, err)


def _store_warning(number: int, location: str, err: BaseException) -> None:
    console.print(f"[yellow]warning: trial {number}: could not store its files in the artifact store "
                  f"{location}: {err}[/]", soft_wrap=True, highlight=False)


class EpochLine(Callback):
    """One short line per epoch, prefixed with the trial, so several workers' output stays readable."""

    def __init__(self, number: int, keys: tuple[str, ...]) -> None:
        self.number, self.keys = number, keys

    def on_epoch_end(self, run: TrainState, record: dict[str, Any]) -> None:
        extra = "".join(f"  {k}={record[k]:.4g}" for k in self.keys if isinstance(record.get(k), (int, float)))
        val = f"  val_noise_loss={record['val_loss']:.4f}" if "val_loss" in record else ""
        console.print(f"  trial {self.number} epoch {record['epoch']}/{run.cfg.train.epochs}  "
                      f"test_noise_loss={record['test_loss']:.4f}{val}{extra}  {record['seconds']:.0f}s", soft_wrap=True)


class RunLinkRecord(Callback):
    """Stores the trial's W&B run (id, path, URL, folder) as soon as its tracker has opened it, so the study
    links to the run even when the trial later fails or its worker dies. Runs after the tracker's callback."""

    def __init__(self, trial: optuna.Trial, tracker: Any) -> None:
        self.trial, self.tracker = trial, tracker

    def on_train_start(self, run: TrainState) -> None:
        if self.tracker.link is not None:
            TrialRecord.write_run_link(self.trial, self.tracker.link)


def scoring_split(cfg: Any) -> str:
    """Trials are scored and pruned on the validation split; on the test split only without one (val_size 0)."""
    return "val" if cfg.data.val_size > 0 else "test"


def frozen(trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    return next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)


def _tracker(cfg: Any, spec: SweepSpec, trial: optuna.Trial, params: dict[str, Any]) -> Callback:
    from ddpm.tracking import tracker_callback

    extra = {"study": spec.study, "trial": trial.number, **{f"param/{k}": v for k, v in params.items()}}
    return tracker_callback(cfg, job_type="trial", group=spec.study, name=f"trial-{trial.number}",
                            extra_config=extra, tags=["sweep", spec.study], finish_on_train_end=False)


class SweepObjective:
    """Callable for ``study.optimize``; returns one float per objective."""

    def __init__(self, spec: SweepSpec, verbose: bool = True) -> None:
        self.spec, self.verbose = spec, verbose

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        spec = self.spec
        start = time.time()
        tracker: Optional[Callback] = None
        state, reason = "failed", None
        try:
            params = suggest_params(spec.space, trial)  # a conditional key (when:) only when its condition holds
            name = f"trial-{trial.number}"
            run_dir, outputs = self._start(trial, spec.study_dir / name, params)
            cfg = trial_config(spec, params, name)  # a choice the config rejects fails this trial only
            TrialRecord.write(trial, config=cfg.to_dict())
            callbacks: list[Callback] = [OutputsUpload(trial.number, outputs)]
            if spec.prune is not None:
                callbacks.append(PruningCallback(trial, spec.prune, active=spec.pruner != "none"))
            if self.verbose:
                keys = ((spec.prune.metric,) if spec.prune is not None
                        and spec.prune.metric not in ("test_loss", "val_loss") else ())
                callbacks.append(EpochLine(trial.number, keys))
            tracker = _tracker(cfg, spec, trial, params)
            if tracker is not None:
                callbacks += [tracker, RunLinkRecord(trial, tracker)]

            from ddpm.train import train

            run = train(cfg, run_dir=run_dir, resume=True, callbacks=callbacks, quiet=True)
            values, summary = self._score(trial, cfg, run, tracker)
            self._upload(trial, run.run_dir, outputs)
            if tracker is not None:
                tracker.log_summary(summary)  # type: ignore[attr-defined]
            state = "complete"
            return values if len(values) > 1 else values[0]
        except optuna.TrialPruned as e:
            state, reason = "pruned", str(e) or "pruned"
            TrialRecord.write(trial, failure_reason=reason)
            raise
        except KeyboardInterrupt:
            state, reason = "interrupted", "interrupted (Ctrl-C); rerunning the sweep resumes this trial"
            TrialRecord.write(trial, failure_reason=reason, interrupted=True)
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {e}".replace("\n", " ")[:500]
            TrialRecord.write(trial, failure_reason=reason)
            raise
        finally:
            TrialRecord.write(trial, duration_s=round(time.time() - start, 2))
            if tracker is not None:
                try:
                    tracker.finish(state, reason)  # type: ignore[attr-defined]
                except Exception as err:  # tracking must never change a trial's result
                    console.print(f"[yellow]warning: tracker finish failed: {err}[/]", soft_wrap=True)

    def _start(self, trial: optuna.Trial, run_dir: Path, params: dict[str, Any]) -> tuple[Path, TrialOutputs]:
        """Choose and record the trial's run folder; a retry first copies its predecessor's folder (resume
        from last.pt), or downloads its stored copy when this machine does not hold it. Nothing already on
        disk is deleted: a folder that exists (another study of the same name in another storage, or an older
        study whose numbers restarted at 0) is left as it is and this trial runs in the next free
        ``trial-<n>-v<k>`` (recorded in the ``run_dir`` attribute). Returns the folder and the trial's uploader."""
        stored = TrialRecord.from_trial(frozen(trial))
        before = stored.retried_trial
        previous = stored.run_dir  # inherited from the failed trial by the retry callback
        wanted = run_dir
        run_dir = _free_run_dir(run_dir)
        if run_dir != wanted and self.verbose:
            owner = _owner(wanted)
            console.print(f"trial {trial.number}: {wanted} already exists{f' ({owner})' if owner else ''} and is left "
                          f"untouched; this trial runs in {run_dir}", soft_wrap=True)
        outputs = TrialOutputs(trial, study_artifact_location(trial.study, self.spec.out_dir), stored.outputs)
        source = None  # where a retry's run folder came from
        if before is not None and previous and Path(previous).is_dir() and Path(previous).resolve() != wanted.resolve():
            shutil.copytree(previous, run_dir, ignore=shutil.ignore_patterns("*.tmp", "wandb"))
            source = ""
        elif before is not None and stored.outputs and self._fetch(trial, outputs, run_dir):
            source = f" (downloaded from the artifact store {outputs.location}: this machine has no {previous})"
        if source is not None:
            epoch = _last_epoch(run_dir)
            TrialRecord.write(trial, retry_of=before, failure_reason=None, interrupted=False, resumed_from_epoch=epoch)
            if self.verbose:
                console.print(f"trial {trial.number}: retry of trial {before}, resuming {run_dir} after epoch {epoch}"
                              f"{source}", soft_wrap=True, highlight=False)
        if before is not None:  # a retry inherits its predecessor's attributes: not its W&B run, it opens its own
            TrialRecord.write_run_link(trial, None)
        run_dir.mkdir(parents=True, exist_ok=True)
        _mark(run_dir, self.spec, trial)
        TrialRecord.write(trial, run_dir=str(run_dir), host=socket.gethostname(), pid=os.getpid())
        if stored.baseline:  # set when enqueued (a grid's baseline point too), copied by a retry
            TrialRecord.write(trial, baseline=True)
            trial.study.set_user_attr("baseline_trial", trial.number)
        return run_dir, outputs

    def _fetch(self, trial: optuna.Trial, outputs: TrialOutputs, run_dir: Path) -> bool:
        """Download the predecessor's stored run folder into ``run_dir`` (all files or none); False, with a
        warning, when the store cannot give it (the retry then starts from epoch 0)."""
        try:
            fetch_outputs(outputs.location, outputs.pointer, run_dir)
        except Exception as err:
            console.print(f"[yellow]warning: trial {trial.number}: could not download its predecessor's files from "
                          f"the artifact store {outputs.location} ({err}); it starts from epoch 0[/]",
                          soft_wrap=True, highlight=False)
            return False
        outputs.already_stored(run_dir, outputs.pointer)
        return True

    def _upload(self, trial: optuna.Trial, run_dir: Path, outputs: TrialOutputs) -> None:
        """The trial's grids and best checkpoint into the study's Optuna artifact store (optuna-dashboard shows
        them), and every other output file that changed; a store that fails is a warning: it never changes the
        trial's result."""
        try:
            outputs.finish(run_dir)
        except Exception as err:
            _store_warning(trial.number, outputs.location, err)

    def _score(self, trial: optuna.Trial, cfg: Any, run: TrainState, tracker: Optional[Callback]
               ) -> tuple[list[float], dict[str, Any]]:
        spec = self.spec
        rows: list[dict[str, Any]] = []
        best: Optional[dict[str, Any]] = None
        best_omega = cfg.sample.omega
        if spec.guidance is not None:
            from ddpm.checkpoint import load_model
            from ddpm.evaluation import evaluate_guidance
            from ddpm.evaluation.guidance import json_row
            from ddpm.sampling import cap_steps

            g = spec.guidance
            model, _, ckpt = load_model(run.run_dir, run.device)  # best.pt, as `ddpm sample` would load it
            steps = cap_steps(g.steps, cfg.diffusion.T)   # the sweep's step budget: at most this trial's T
            rows = evaluate_guidance(model, cfg, omegas=g.omegas, n=g.n, sampler=g.sampler, steps=steps,
                                     eta=g.eta, device=run.device, out_dir=run.run_dir, seed=g.seed,
                                     checkpoint=str(ckpt.get("path")), split=scoring_split(cfg))
            rows = [json_row(r) for r in rows]
            best = best_guidance_row(rows, OBJECTIVE_METRICS[g.select or "fid"])
            best_omega = float(best["omega"])
            TrialRecord.write(trial, guidance=rows, guidance_split=scoring_split(cfg))
            if tracker is not None:
                tracker.log_guidance(rows, run.run_dir)  # type: ignore[attr-defined]
        TrialRecord.write(trial, best_omega=best_omega)
        resolved = cfg.to_dict()
        set_dotted(resolved, "sample.omega", best_omega)
        if spec.guidance is not None:
            for key, value in (("sample.sampler", spec.guidance.sampler), ("sample.steps", steps),
                               ("sample.eta", spec.guidance.eta)):
                set_dotted(resolved, key, value)
        TrialRecord.write(trial, config=resolved)
        values = [m.value(best, run.history) for m, _ in spec.objectives]
        for (m, _), v in zip(spec.objectives, values):
            if not math.isfinite(v):
                raise ValueError(f"objective {m.name} is {v} (at omega {best_omega})")
        summary = {f"objective/{m.name}": v for (m, _), v in zip(spec.objectives, values)}
        summary["best_omega"] = best_omega
        return values, summary


MARKER = ".ddpm-trial.json"  # in each trial's run folder: which study (storage, name) and trial it belongs to


def _free_run_dir(run_dir: Path) -> Path:
    """``run_dir`` if nothing is there, else the first free ``<name>-v2``, ``-v3``, ... beside it."""
    k = 1
    candidate = run_dir
    while candidate.exists() or candidate.is_symlink():
        k += 1
        candidate = run_dir.with_name(f"{run_dir.name}-v{k}")
    return candidate


def _mark(run_dir: Path, spec: SweepSpec, trial: optuna.Trial) -> None:
    from ddpm.io import atomic_write_json
    from ddpm.sweeps.runner import storage_url  # runner imports this module: a call-time import
    from ddpm.sweeps.storage import redact_url

    atomic_write_json(run_dir / MARKER, {"study": spec.study, "storage": redact_url(storage_url(spec)),
                                         "trial": trial.number, "started": time.strftime("%Y-%m-%d %H:%M:%S")})


def _owner(run_dir: Path) -> str:
    """'trial 3 of study x in <storage>' from a run folder's marker ('' when it has none)."""
    import json

    try:
        m = json.loads((run_dir / MARKER).read_text())
        return f"trial {m['trial']} of study {m['study']} in {m['storage']}, started {m['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _last_epoch(run_dir: Path) -> int:
    from ddpm.io import read_jsonl

    rows = read_jsonl(run_dir / "metrics.jsonl")
    return int(rows[-1]["epoch"]) if rows else 0

