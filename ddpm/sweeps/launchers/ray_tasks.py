"""``--launcher ray``: N ``ddpm worker`` processes as Ray tasks, each with its CPUs and GPU share.

Without an address, ``ray.init()`` starts (or joins) a Ray instance on this machine; ``--address auto`` joins
the cluster started here with ``ray start``, ``host:port`` or ``ray://host:10001`` one elsewhere. A worker's
storage must be reachable from every node: a SQLite or journal file is accepted only while the cluster is
this machine alone (one node, not a ``ray://`` client), i.e. when Ray only places the processes.
"""
from __future__ import annotations

import os
import socket
from typing import Any, Optional

from ddpm.errors import ConfigError
from ddpm.progress import console
from ddpm.sweeps.launchers.base import Launcher, need, refuse_file_storage, report_exit, run_worker_process, \
    threads_of, watch_jobs

OBJECT_STORE_BYTES = 100 * 1024 ** 2  # a Ray started here holds only the tasks' exit codes: 100 MB, not 30% of RAM


def _probe(address: str) -> None:
    """host:port (or ray://host:port) must answer a TCP connect within 5 s: Ray itself retries for a minute."""
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address}: expected auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({e.strerror or e}); start one "
                          f"with `ray start --head` or fix the address") from None


class RayLauncher(Launcher):
    name = "ray"

    def connect(self, url: str) -> Optional[Launcher]:
        address = self.options.address
        if address is not None and address.startswith("ray://"):
            refuse_file_storage(url, "a ray:// cluster runs its workers on other machines")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # each worker's trial lines as they are, not "[repeated 2x]"
        ray = need("ray", "ray", "ray")
        if address not in (None, "auto"):
            _probe(address)
        try:
            if address is None:
                ray.init(include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, logging_level="warning")
            else:
                ray.init(address=address, logging_level="warning")
        except Exception as e:  # Ray's own ConnectionError, RuntimeError, ...: one line, nothing created
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"--address {address or '(this machine)'}: cannot reach Ray: {first}") from None
        self.ray = ray
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) > 1:
            try:
                refuse_file_storage(url, f"the Ray cluster has {len(nodes)} machines")
            except ConfigError:
                ray.shutdown()
                raise
        return self

    def _gpus(self) -> float:
        g = self.options.gpus_per_worker
        return g if g is not None else (1.0 if self.ray.cluster_resources().get("GPU", 0) > 0 else 0.0)

    def launch(self, spec: Any, url: str, workers: int, n_trials: Optional[int], timeout: Optional[float],
               extra: tuple[str, ...], watch: tuple[Any, Any]) -> None:
        from ddpm.sweeps.runner import worker_command

        ray = self.ray
        cpus, gpus = threads_of(self.options), self._gpus()
        args, env = worker_command(spec, url, n_trials, timeout, extra, cpus)
        task = ray.remote(run_worker_process)
        refs = [task.options(num_cpus=cpus, num_gpus=gpus, max_retries=0, name=f"ddpm-worker-{spec.study}-{i}")
                .remote(args + ["--worker-id", str(i)], env, os.getcwd()) for i in range(workers)]
        console.print(f"started {workers} worker(s) as Ray tasks ({cpus} CPU, {gpus:g} GPU each)", soft_wrap=True)
        index = {r: i for i, r in enumerate(refs)}
        pending = list(refs)

        def wait_done(poll_s: float) -> bool:
            ready, pending[:] = ray.wait(pending, num_returns=len(pending), timeout=poll_s)
            for r in ready:
                report_exit(index[r], _status(ray, r))
            return not pending

        try:
            watch_jobs(wait_done, watch)
        except KeyboardInterrupt:
            for r in pending:  # each task stops its worker with SIGINT (its trial is re-queued), then ends
                ray.cancel(r)
            ray.wait(pending, num_returns=len(pending), timeout=70)
            raise

    def close(self) -> None:
        ray = getattr(self, "ray", None)
        if ray is not None and ray.is_initialized():
            ray.shutdown()


def _status(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except Exception as e:  # the task itself died (its node, its process) or raised
        return (str(e).strip().splitlines() or [type(e).__name__])[-1]
