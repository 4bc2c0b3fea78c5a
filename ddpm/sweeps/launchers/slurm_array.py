"""``--launcher slurm``: N ``ddpm worker`` processes as one SLURM job array, submitted with submitit.

Each array task runs :func:`ddpm.sweeps.launchers.base.run_worker_process` on its node with the sweep's
``launcher:`` resources (partition, time, CPUs, whole GPUs, memory, setup lines, any other sbatch option).
The storage URL reaches the jobs through the environment sbatch copies at submission (``--export=ALL``),
never through submitit's pickles on the shared disk. The job folder (logs) defaults to
``<out_dir>/<study>/slurm`` and, like the sweep's folder, must be on a filesystem every node mounts.
``cluster="local"`` runs the same jobs with submitit's LocalExecutor (tests, a machine without SLURM).
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

from ddpm.errors import ConfigError
from ddpm.progress import console
from ddpm.sweeps.launchers.base import Launcher, need, refuse_file_storage, report_exit, \
    run_worker_process, threads_of, watch_jobs


def slurm_parameters(options: Any, study: str, workers: int) -> dict[str, Any]:
    """submitit.SlurmExecutor parameters (= sbatch options) of the array."""
    params: dict[str, Any] = {"job_name": f"ddpm-{study}", "time": int(options.time), "nodes": 1,
                              "ntasks_per_node": 1, "cpus_per_task": threads_of(options),
                              "array_parallelism": workers, "stderr_to_stdout": True}
    for key, value in (("partition", options.partition), ("gpus_per_node", _whole_gpus(options) or None),
                       ("mem", f"{options.mem_gb:g}GB" if options.mem_gb else None),
                       ("setup", list(options.setup) or None), ("additional_parameters", dict(options.sbatch) or None)):
        if value is not None:
            params[key] = value
    return params


def _whole_gpus(options: Any) -> int:
    g = options.gpus_per_worker or 0
    if g != int(g):
        raise ConfigError(f"launcher.gpus_per_worker = {g:g}: SLURM gives whole GPUs to a job; use 0, 1, 2, ... "
                          f"(sharing a GPU between workers is a --launcher ray feature)")
    return int(g)


def sbatch_script(options: Any, folder: str | Path, study: str, workers: int) -> str:
    """The sbatch script `ddpm sweep --launcher slurm` submits for ``workers`` workers, rendered by the function
    submitit's SlurmExecutor renders it with (which itself needs ``srun``; this does not: dry runs, tests)."""
    need("submitit", "slurm", "slurm")
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=workers,
                               **slurm_parameters(options, study, workers))


class SlurmLauncher(Launcher):
    name = "slurm"
    cluster = "slurm"

    def connect(self, url: str) -> Optional[Launcher]:
        self.submitit = need("submitit", "slurm", "slurm")
        if self.cluster == "slurm":
            refuse_file_storage(url, "SLURM runs its workers on other machines")
            if shutil.which("sbatch") is None or shutil.which("srun") is None:
                raise ConfigError("--launcher slurm: no sbatch/srun on this machine; run `ddpm sweep` on a SLURM "
                                  "login node (--dry-run shows the job script anywhere)")
        _whole_gpus(self.options)
        return self

    def _executor(self, spec: Any, workers: int) -> Any:
        folder = str(Path(self.options.folder or spec.study_dir / "slurm").absolute())
        if self.cluster == "local":
            ex = self.submitit.LocalExecutor(folder=folder)
            ex.update_parameters(timeout_min=int(self.options.time), setup=list(self.options.setup))
            return ex
        ex = self.submitit.SlurmExecutor(folder=folder)
        ex.update_parameters(**slurm_parameters(self.options, spec.study, workers))
        return ex

    def launch(self, spec: Any, url: str, workers: int, n_trials: Optional[int], timeout: Optional[float],
               extra: tuple[str, ...], watch: tuple[Any, Any]) -> None:
        from ddpm.sweeps.runner import STORAGE_ENV, worker_command

        args, env = worker_command(spec, url, n_trials, timeout, extra, threads_of(self.options))
        env.pop(STORAGE_ENV)  # from the submitting environment, not written into the pickles
        ex = self._executor(spec, workers)
        saved = dict(os.environ)
        os.environ[STORAGE_ENV] = url  # sbatch (and the LocalExecutor) copy this process's environment into the jobs
        try:
            with ex.batch():
                jobs = [ex.submit(run_worker_process, args + ["--worker-id", str(i)], env, os.getcwd())
                        for i in range(workers)]
        finally:
            os.environ.clear()
            os.environ.update(saved)
        console.print(f"submitted {workers} worker(s) as {self.cluster} job(s) {jobs[0].job_id.split('_')[0]}"
                      f"{'_[0-' + str(workers - 1) + ']' if self.cluster == 'slurm' else ''}; logs in {ex.folder}",
                      soft_wrap=True, markup=False, highlight=False)
        reported: set[int] = set()

        def wait_done(poll_s: float) -> bool:
            import time

            time.sleep(poll_s)
            for i, job in enumerate(jobs):
                if i not in reported and job.done():
                    reported.add(i)
                    report_exit(i, _status(job))
            return len(reported) == len(jobs)

        try:
            watch_jobs(wait_done, watch)
        except KeyboardInterrupt:
            for job in jobs:
                job.cancel(check=False)
            raise


class LocalArrayLauncher(SlurmLauncher):
    """The SLURM launcher's jobs through submitit's LocalExecutor (this machine; a SQLite storage is fine)."""
    cluster = "local"


def _status(job: Any) -> Any:
    try:
        return job.result()
    except Exception as e:  # the job failed or was cancelled; submitit's message ends with the cause
        return (str(e).strip().splitlines() or [type(e).__name__])[-1]
