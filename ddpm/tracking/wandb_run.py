"""Weights & Biases backend: one W&B run per training run or sweep trial, ``epoch`` as the step metric.

Per epoch: train/test noise loss, lr, throughput, any extra record key (e.g. the sweep's quick sample
metric) and the epoch's 10x10 grid as an image. After training: summary (best test loss, the final state as
``trial_state``: W&B's UI has its own State column), the best checkpoint as a model artifact when
``tracking.log_model`` is on and, for sweeps, the guidance table. Tracking never stops training: the first W&B error prints one warning and
turns this tracker into a no-op; ``train()`` still writes metrics.jsonl and the grids.
"""
from __future__ import annotations

import math
import netrc
import os
import re
import sys
import threading
import urllib.error
import urllib.request
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlparse

from rich.markup import escape

from ddpm.progress import console
from ddpm.redact import redact, redact_argv
from ddpm.tracking.base import RunLink, RunSpec, Tracker, register_tracker
from ddpm.tracking.wandb_env import CACHE_SUBDIR, STAGING_SUBDIR, run_files_in
from ddpm.train import TrainState

# metrics.jsonl record key -> W&B history key (the "<section>/" prefix makes a dashboard section)
RECORD_KEYS: dict[str, str] = {
    "train_loss": "train/noise_loss",
    "test_loss": "test/noise_loss",
    "lr": "train/lr",
    "images_per_s": "train/images_per_s",
    "seconds": "train/epoch_seconds",
}
GRID_KEY = "samples/grid"
GUIDANCE_TABLE_COLUMNS = ("omega", "fid", "fid_lo", "fid_hi", "floor", "accuracy", "accuracy_lo", "accuracy_hi",
                          "kid", "kid_lo", "kid_hi", "n", "diversity", "seconds", "grid")   # grid last: the image
EXIT_CODE = {"complete": 0, "pruned": 0, "failed": 1, "interrupted": 255}

DEFAULT_BASE_URL = "https://api.wandb.ai"
PROBE_TIMEOUT_S = 3.0   # the whole reachability check, DNS included

_notice_lock = threading.Lock()
_offline_notice_shown = False
_offline_reason: Optional[str] = None         # why online tracking fell back to offline (shown in the notice)
_probe_lock = threading.Lock()
_probe_cache: dict[str, Optional[str]] = {}   # base URL -> None (reachable) or why not; one probe per process
_argv_lock = threading.Lock()


def base_url() -> str:
    return (os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def _probe(url: str, timeout: float) -> Optional[str]:
    """None when an HTTP server answers at ``url`` (any status below 500, e.g. 401/404); else why not.
    Follows HTTP(S)_PROXY like W&B does."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError as e:
        return None if e.code < 500 else f"HTTP {e.code}"
    except Exception as e:  # URLError (refused, DNS), socket timeout, TLS errors, ...
        reason = getattr(e, "reason", None) or e
        return f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason


def wandb_unreachable(timeout: float = PROBE_TIMEOUT_S) -> Optional[str]:
    """Why the W&B server (WANDB_BASE_URL) cannot be reached, or None when it answers. Checked once per
    process and base URL (a sweep's trials reuse the answer), in a thread bounded by ``timeout`` so that a
    server that accepts connections but never answers, or a DNS lookup that hangs, costs ``timeout`` at
    most instead of W&B's 90 s init timeout."""
    url = base_url()
    with _probe_lock:
        if url in _probe_cache:
            return _probe_cache[url]
        result: list[Optional[str]] = []
        worker = threading.Thread(target=lambda: result.append(_probe(url, timeout)), daemon=True,
                                  name="wandb-probe")
        worker.start()
        worker.join(timeout + 0.5)
        why = result[0] if result else f"no answer within {timeout:g} s"
        _probe_cache[url] = why
        return why


def fall_back_offline(why: str) -> None:
    """Online tracking is off for the rest of this process; the one offline notice says why.

    Also sets WANDB_MODE=offline: W&B's own usage telemetry follows that variable, not a run's mode, and
    would otherwise post to the dead server at exit and wait for it (10 s per process, measured)."""
    global _offline_reason
    with _notice_lock:
        if _offline_reason is None:
            _offline_reason = why
            os.environ["WANDB_MODE"] = "offline"


def has_credentials() -> bool:
    """True when W&B can log in without asking: WANDB_API_KEY, or a netrc entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        auth = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def configured_mode(configured: str) -> str:
    """online | offline | disabled, as configured. WANDB_MODE=disabled always wins (tests, CI); ``auto``
    follows WANDB_MODE when set, else goes online with credentials and offline without."""
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env == "disabled" or configured == "disabled":
        return "disabled"
    if configured in ("online", "offline"):
        return configured
    if env in ("online", "offline"):
        return env
    if env == "dryrun":
        return "offline"
    return "online" if has_credentials() else "offline"


def resolve_mode(configured: str) -> str:
    """online | offline | disabled: ``configured_mode``, with online turned offline (one notice per process)
    when the W&B server does not answer, so runs never wait for it and still log everything to disk."""
    mode = configured_mode(configured)
    if mode == "online":
        why = _offline_reason or wandb_unreachable()
        if why is not None:
            fall_back_offline(why)
            return "offline"
    return mode


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def best_epoch(history: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    finite = [r for r in history if _is_number(r.get("test_loss"))]
    return min(finite, key=lambda r: r["test_loss"]) if finite else None


class WandbTracker(Tracker):
    """Mirrors one run into W&B. Holds its own ``wandb.Run`` (``reinit="create_new"``), so sequential
    trials and trials in threads never write into each other's run."""

    def __init__(self, spec: RunSpec, finish_on_train_end: bool = True) -> None:
        super().__init__(spec, finish_on_train_end)
        self._run: Any = None
        self._link: Optional[RunLink] = None
        self._broken = False
        self._last_epoch = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, run_dir: Path) -> None:
        if self._run is not None or self._broken:
            return
        spec = self.spec
        if spec.mode == "online":
            why = _offline_reason or wandb_unreachable()
            if why is not None:
                fall_back_offline(why)
                spec.mode = "offline"
        try:
            self._run = self._init(Path(spec.dir) if spec.dir is not None else Path(run_dir))
        except Exception as e:
            if spec.mode != "online":
                self._fail("start", e)
                return
            # online but W&B would not start (auth refused, server error, timeout): offline, nothing lost
            fall_back_offline(redact(f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else type(e).__name__))
            spec.mode = "offline"
            try:
                self._run = self._init(Path(spec.dir) if spec.dir is not None else Path(run_dir))
            except Exception as e2:
                self._fail("start", e2)
                return
        try:
            self._link = run_link(self._run, spec.mode)
            self._run.define_metric(spec.step_metric)
            self._run.define_metric("*", step_metric=spec.step_metric)
            if spec.step_metric == "epoch":
                self._run.define_metric(RECORD_KEYS["test_loss"], step_metric="epoch", summary="min")
            self._announce()
        except Exception as e:
            self._fail("start", e)

    def _init(self, wb_dir: Path) -> Any:
        """``wandb.init`` for this run. W&B records the process arguments (``sys.argv``) in the run's
        metadata and has no setting to pass other ones, so argv is redacted for the duration of the call
        (a storage URL's password would otherwise be stored in every run)."""
        import wandb

        spec = self.spec
        # absolute: W&B's service process writes the run and keeps the cwd it started with, which may not be
        # this process's cwd any more (a relative dir then loses the run's log)
        wb_dir = wb_dir.resolve()
        wb_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(silent=True, console="off", save_code=False)
        with _argv_lock, run_files_in(wb_dir / "wandb" / STAGING_SUBDIR, wb_dir / "wandb" / CACHE_SUBDIR):
            argv = sys.argv
            sys.argv = redact_argv(argv)
            try:
                return wandb.init(
                    project=spec.project, entity=redact(spec.entity), group=spec.group, job_type=spec.job_type,
                    name=spec.name, tags=list(dict.fromkeys(t[:64] for t in spec.tags if t)),
                    config=redact(spec.config), dir=str(wb_dir), mode=spec.mode, reinit="create_new",
                    settings=settings, id=spec.run_id, resume="allow" if spec.run_id else None)
            finally:
                sys.argv = argv

    def _files(self) -> Any:
        """W&B stages (table images, artifact files) inside this run's own folder during the block."""
        if self._run is None:
            return nullcontext()
        settings = self._run.settings
        return run_files_in(Path(settings.sync_dir) / STAGING_SUBDIR, Path(settings.wandb_dir) / CACHE_SUBDIR)

    def _announce(self) -> None:
        global _offline_notice_shown
        if self.spec.mode == "online":
            console.print(f"W&B run: {self._run.url}", soft_wrap=True)
            return
        with _notice_lock:
            if _offline_notice_shown:
                return
            _offline_notice_shown = True
            why = _offline_reason
        sync_dir = Path(self._run.settings.sync_dir)
        head = (f"[yellow]W&B server {escape(redact(base_url()))} cannot be used ({escape(redact(why))}): "
                f"tracking offline for this process[/]; " if why else "W&B offline: ")
        console.print(f"{head}runs under {sync_dir.parent}/offline-run-*; "
                      f"upload with `wandb sync {sync_dir}` (one folder per run; a sweep prints one command for all "
                      f"its runs when it ends)", soft_wrap=True)

    def finish(self, state: str = "complete", reason: Optional[str] = None) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        try:
            run.summary["trial_state"] = state   # not "state": that would shadow the W&B UI's own State column
            if reason:
                run.summary["trial_state_reason"] = redact(reason)[:1000]
            if state != "complete":
                run.tags = tuple(dict.fromkeys([*run.tags, state]))
            run.finish(exit_code=EXIT_CODE.get(state, 1))
        except Exception as e:
            self._fail("finish", e)
            try:
                run.finish(exit_code=1)
            except Exception:
                pass

    def _fail(self, what: str, e: Exception) -> None:
        if not self._broken:
            self._broken = True
            why = escape(redact(f"{type(e).__name__}: {e}"))
            console.print(f"[yellow]warning: W&B {what} failed ({why}); W&B tracking stops for run "
                          f"'{escape(self.spec.name)}', training goes on (metrics.jsonl and grids are still "
                          f"written)[/]", soft_wrap=True)
        if self._run is not None:  # stop logging, but close the run so its process does not linger
            run, self._run = self._run, None
            try:
                run.finish(exit_code=1)
            except Exception:
                pass

    # -- training hooks ----------------------------------------------------------------------------

    def on_train_start(self, run: TrainState) -> None:
        if run.epoch:  # --resume: a new W&B run that continues the epoch axis where the last one stopped
            self.spec.config = {**self.spec.config, "resumed_from_epoch": run.epoch}
        self._last_epoch = run.epoch
        self.start(run.run_dir)

    def on_epoch_end(self, run: TrainState, record: dict[str, Any]) -> None:
        if self._run is None:
            return
        try:
            import wandb

            epoch = int(record["epoch"])
            data: dict[str, Any] = {"epoch": epoch}
            for key, value in record.items():
                if key in ("epoch", "grid"):
                    continue
                if _is_number(value):
                    data[RECORD_KEYS.get(key, key)] = value
            if record.get("grid"):
                path = Path(run.run_dir) / record["grid"]
                if path.is_file():
                    data[GRID_KEY] = wandb.Image(str(path), caption=f"epoch {epoch}: row r = digit r, "
                                                 f"omega={run.cfg.sample.omega}")
            with self._files():
                self._run.log(data)
            self._last_epoch = max(self._last_epoch, epoch)
        except Exception as e:
            self._fail("log", e)

    def on_train_end(self, run: TrainState, status: str, reason: Optional[str]) -> None:
        if self._run is not None:
            try:
                summary: dict[str, Any] = {"epochs_completed": run.epoch, "trial_state": status}
                best = best_epoch(run.history)
                if best is not None:
                    summary["best/test_noise_loss"] = best["test_loss"]
                    summary["best/epoch"] = best["epoch"]
                if run.history:
                    summary["final/train_noise_loss"] = run.history[-1]["train_loss"]
                    summary["final/test_noise_loss"] = run.history[-1]["test_loss"]
                if reason:
                    summary["trial_state_reason"] = redact(reason)[:1000]
                self._run.summary.update(summary)
                if self.spec.log_checkpoint and run.best_checkpoint.is_file():
                    with self._files():
                        self._log_checkpoint(run)
            except Exception as e:
                self._fail("summary", e)
        if self.finish_on_train_end:
            self.finish(status, reason)

    def _log_checkpoint(self, run: TrainState) -> None:
        import wandb

        # a study's trials share a project: the study name keeps trial-0 of two studies apart
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", "-".join(filter(None, (self.spec.group, self.spec.name))))
        art = wandb.Artifact(f"{name}-best", type="model",
                             metadata={"best_test_noise_loss": run.best_test_loss, "epoch": run.epoch})
        art.add_file(str(run.best_checkpoint), name="best.pt")
        self._run.log_artifact(art, aliases=["best"])

    # -- after training ----------------------------------------------------------------------------

    def log_guidance(self, rows: list[dict[str, Any]], out_dir: str | Path) -> None:
        self.start(Path(out_dir))
        if self._run is None or not rows:
            return
        try:
            import wandb

            rows = sorted(rows, key=lambda r: r["omega"])
            table = wandb.Table(columns=list(GUIDANCE_TABLE_COLUMNS))
            for r in rows:
                grid = Path(out_dir) / r["grid"] if r.get("grid") else None
                image = wandb.Image(str(grid), caption=f"omega={r['omega']}") if grid and grid.is_file() else None
                table.add_data(*[r.get(c) for c in GUIDANCE_TABLE_COLUMNS[:-1]], image)
            # two charts, not one: FID (tens) and accuracy (0..1) do not share a useful y scale
            data: dict[str, Any] = {"guidance/table": table}
            for metric in ("fid", "accuracy"):
                pts = [(r["omega"], r[metric]) for r in rows if _is_number(r.get(metric))]
                if pts:
                    data[f"guidance/{metric}_vs_omega"] = wandb.plot.line(
                        wandb.Table(data=[list(p) for p in pts], columns=["omega", metric]), "omega", metric,
                        title=f"{metric} vs guidance weight omega")
            if self._last_epoch:
                data["epoch"] = self._last_epoch
            with self._files():
                self._run.log(data)
        except Exception as e:
            self._fail("log_guidance", e)

    def _call(self, what: str, fn: Callable[[Any], Any]) -> None:
        """``fn(run)`` while a run is open; a W&B failure goes to ``_fail``, never to the caller."""
        if self._run is None:
            return
        try:
            with self._files():
                fn(self._run)
        except Exception as e:
            self._fail(what, e)

    def log(self, values: dict[str, Any], step: Optional[int] = None) -> None:
        self._call("log", lambda run: run.log(values, step=step))

    def log_summary(self, values: dict[str, Any]) -> None:
        self._call("log_summary", lambda run: run.summary.update(redact(values)))

    @property
    def active(self) -> bool:
        return self._run is not None

    @property
    def run_id(self) -> Optional[str]:
        return getattr(self._run, "id", None)

    @property
    def link(self) -> Optional[RunLink]:
        return self._link


def run_link(run: Any, mode: str) -> RunLink:
    """A W&B run's id and local folder; online also its path (entity/project/id) and URL (offline W&B has
    neither: the entity is known only to the server)."""
    from ddpm.io import portable_path

    online = mode == "online"
    return RunLink(run_id=run.id, path=run.path if online else None, url=run.url if online else None,
                   dir=portable_path(run.settings.sync_dir))

register_tracker("wandb")(WandbTracker)
