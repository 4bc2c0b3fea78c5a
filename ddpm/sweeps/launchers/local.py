"""``--launcher local`` (the default): ``run_study``'s own worker processes on this machine, as
``ddpm sweep --workers N`` has always run them (one worker: in the ``ddpm sweep`` process itself)."""
from __future__ import annotations

from typing import Optional

from ddpm.sweeps.launchers.base import Launcher


class LocalLauncher(Launcher):
    name = "local"

    def connect(self, url: str) -> Optional[Launcher]:
        return None  # run_study starts its own processes
