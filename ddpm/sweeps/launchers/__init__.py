"""Launchers: how `ddpm sweep FILE --launcher NAME --workers N` starts its ``ddpm worker`` processes (a registry).

Every launcher runs ``ddpm worker`` unchanged against the study's storage: the launching process creates
(or resumes) and pins the study first, then the launcher only starts and watches the processes. Adding
one is a module with a :class:`Launcher` subclass plus one registry line below; ``uses`` names the
``launcher:`` keys (and flags) it reads, so a flag meant for another launcher is refused.
"""
from __future__ import annotations

from ddpm.registry import Registry
from ddpm.sweeps.launchers.base import Launcher
from ddpm.sweeps.launchers.local import LocalLauncher
from ddpm.sweeps.launchers.options import LauncherOptions, check_launcher_options
from ddpm.sweeps.launchers.ray_tasks import RayLauncher
from ddpm.sweeps.launchers.slurm_array import SlurmLauncher, sbatch_script

LAUNCHERS: Registry[type[Launcher]] = Registry("launcher")
LAUNCHERS.add("local", LocalLauncher, uses=())
LAUNCHERS.add("ray", RayLauncher, uses=("address", "cpus_per_worker", "gpus_per_worker"))
LAUNCHERS.add("slurm", SlurmLauncher, uses=("partition", "time", "cpus_per_worker", "gpus_per_worker", "mem_gb"))

__all__ = ["LAUNCHERS", "Launcher", "LauncherOptions", "check_launcher_options", "sbatch_script"]
