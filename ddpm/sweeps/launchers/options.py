"""The sweep file's ``launcher:`` section: how `ddpm sweep --launcher ray|slurm` sizes and places its workers.
Typed like the rest of the sweep file (``ddpm.sweeps.spec``); the flags of the same names override it::

    launcher:
      cpus_per_worker: 2          # Ray num_cpus / SLURM --cpus-per-task; also each worker's torch threads
      gpus_per_worker: 0.25       # Ray: 4 workers share a GPU (default: 1 when the cluster has GPUs, else 0);
                                  # SLURM: whole GPUs only (--gpus-per-node)
      address: auto               # Ray: a running cluster (auto, host:port, ray://host:10001); default: this machine
      partition: gpu              # SLURM --partition
      time: 240                   # SLURM --time, minutes per worker job
      mem_gb: 16                  # SLURM --mem
      folder: null                # submitit's job folder (logs, pickles): default <out_dir>/<study>/slurm
      setup: ["source .venv/bin/activate"]   # SLURM: shell lines run before each worker
      sbatch: {account: proj1, qos: normal}  # SLURM: any other sbatch option
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ddpm.errors import ConfigError


@dataclass
class LauncherOptions:
    cpus_per_worker: int = 1
    gpus_per_worker: Optional[float] = None
    address: Optional[str] = None
    partition: Optional[str] = None
    time: int = 60
    mem_gb: Optional[float] = None
    folder: Optional[str] = None
    setup: list[str] = field(default_factory=list)
    sbatch: dict[str, Any] = field(default_factory=dict)


def check_launcher_options(o: LauncherOptions, src: str) -> LauncherOptions:
    """Every bound, as a one-line error naming the file (or flag) and the key."""
    if o.cpus_per_worker < 1:
        raise ConfigError(f"{src}: launcher.cpus_per_worker = {o.cpus_per_worker}: must be >= 1")
    if o.gpus_per_worker is not None and not 0 <= o.gpus_per_worker:
        raise ConfigError(f"{src}: launcher.gpus_per_worker = {o.gpus_per_worker}: must be >= 0 "
                          f"(a fraction lets Ray workers share a GPU)")
    if o.time < 1:
        raise ConfigError(f"{src}: launcher.time = {o.time}: minutes, must be >= 1")
    if o.mem_gb is not None and o.mem_gb <= 0:
        raise ConfigError(f"{src}: launcher.mem_gb = {o.mem_gb}: must be > 0")
    for k in ("address", "partition", "folder"):
        if getattr(o, k) == "":
            raise ConfigError(f"{src}: launcher.{k} = '': leave it out or name one")
    if not all(isinstance(line, str) for line in o.setup):
        raise ConfigError(f"{src}: launcher.setup = {o.setup!r}: must be a list of shell lines")
    return o
