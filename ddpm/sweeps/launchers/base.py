"""What every launcher shares: the base class, the one function a worker job runs (``ddpm worker`` as a
subprocess, wherever the job lands), and the watch loop that moves the study bar while the jobs run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any, Callable, Optional

from ddpm.errors import ConfigError
from ddpm.sweeps.launchers.options import LauncherOptions


class Launcher:
    """Starts and watches N ``ddpm worker`` processes; the study itself lives in the storage.

    ``connect(url)`` checks everything and reaches the engine before the study is touched (a bad address
    or a storage the workers cannot share is a one-line ConfigError, nothing created); it returns the
    launcher ``run_study`` hands the workers to (None: ``run_study``'s own processes on this machine).
    ``launch(...)`` starts the workers and returns when every one of them has ended."""

    name = ""

    def __init__(self, options: LauncherOptions) -> None:
        self.options = options

    def connect(self, url: str) -> Optional["Launcher"]:
        return self

    def launch(self, spec: Any, url: str, workers: int, n_trials: Optional[int], timeout: Optional[float],
               extra: tuple[str, ...], watch: tuple[Any, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Let go of the engine (``ddpm sweep`` calls it however the study ended)."""


def _die_with_parent() -> None:
    """``preexec_fn``: the worker gets SIGINT (stops like on Ctrl-C: its trial is re-queued and resumes) when the
    job process that started it dies, e.g. a Ray task cancelled with force or a job killed by its scheduler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # a Ray worker thread blocks them
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG


def run_worker_process(args: list[str], env: dict[str, str], cwd: str) -> int:
    """The body of every launched job: ``python -m ddpm worker ...`` (``args``) in ``cwd`` with ``env`` added,
    with this machine's Python; returns its exit status. Cancelling the job (KeyboardInterrupt here) stops the
    worker with SIGINT first, SIGKILL after a minute."""
    if not os.path.isdir(cwd):
        raise RuntimeError(f"{cwd}: not on this node; the sweep's folder must be at the same path on every machine")
    proc = subprocess.Popen([sys.executable, *args], env={**os.environ, **env}, cwd=cwd, preexec_fn=_die_with_parent)
    try:
        while True:  # in steps: Ray's cancel raises KeyboardInterrupt between Python steps, not inside a wait
            try:
                return proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        raise
    finally:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def watch_jobs(wait_done: Callable[[float], bool], watch: tuple[Any, Any], poll_s: float = 3.0) -> None:
    """Until ``wait_done(poll_s)`` (blocks up to ``poll_s`` s) says every job ended: move the study bar as trials
    finish in the storage, as ``ddpm sweep --workers N`` does."""
    from ddpm.sweeps.runner import _show_finished

    seen = None
    while True:
        done = wait_done(poll_s)
        seen = _show_finished(*watch, seen)
        if done:
            return


def report_exit(worker: int, status: Any) -> None:
    """A worker job that did not end with status 0: say so (its running trial, if any, is failed by the study's
    heartbeat and retried by a live worker, or by the next `ddpm sweep`)."""
    from ddpm.progress import console

    if status != 0:
        console.print(f"warning: worker {worker} ended with {status}; the study's heartbeat retries the trial it held",
                      style="yellow", soft_wrap=True, markup=False, highlight=False)


def threads_of(options: LauncherOptions) -> int:
    return max(1, int(options.cpus_per_worker))


def need(module: str, launcher: str, extra: str) -> Any:
    """``import module`` or a one-line ConfigError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"--launcher {launcher} needs the {module} package, not installed here: "
                          f"pip install 'ddpm-sweeps[{extra}]'") from None


def refuse_file_storage(url: str, why: str) -> None:
    from ddpm.sweeps.storage import local_storage_file, redact_url

    if local_storage_file(url) is not None:
        raise ConfigError(f"storage {redact_url(url)} is a file on this machine and {why}: use a server every "
                          f"machine reaches, e.g. --storage postgresql://user:pw@db-host/optuna")
