"""Where a W&B run goes and where its files land.

Names and places follow one rule: an explicit config value (``tracking.project`` / ``entity`` / ``dir``) wins,
else W&B's own environment variable (``WANDB_PROJECT`` / ``WANDB_ENTITY`` / ``WANDB_DIR``), else our default.

A run is self-contained: W&B copies the files of a table's images and of an artifact into a staging folder
and records that folder's paths in the run's log, for ``wandb sync`` to read later. W&B's default staging
folder is in the user's home (``~/.local/share/wandb``), so copying ``runs/`` to another machine before
``wandb sync`` lost them; ``run_files_in`` points staging into the run's own ``offline-run-*`` folder, and
W&B's cache (its service logs; the artifact cache) into the run's ``wandb/`` folder unless
``WANDB_CACHE_DIR`` is set. W&B reads both variables when it stages a file, so they are set around each
W&B call and restored after (one lock: parallel trials in threads each stage into their own run).
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

DEFAULT_PROJECT = "ddpm-sweeps"
STAGING_SUBDIR = "staging"     # <offline-run-*>/staging/artifacts/staging/...: W&B appends artifacts/staging
CACHE_SUBDIR = "cache"         # <run folder>/wandb/cache/logs/...

_env_lock = threading.RLock()


def _explicit(value: Optional[str], env: str) -> Optional[str]:
    """``value`` when set, else the environment variable ``env`` when set (non-blank), else None."""
    if value is not None and str(value).strip():
        return value
    return os.environ.get(env, "").strip() or None


def wandb_project(configured: Optional[str]) -> str:
    return _explicit(configured, "WANDB_PROJECT") or DEFAULT_PROJECT


def wandb_entity(configured: Optional[str]) -> Optional[str]:
    """None = W&B's default entity for the account."""
    return _explicit(configured, "WANDB_ENTITY")


def wandb_dir(configured: Optional[str]) -> Optional[Path]:
    """The folder W&B creates its ``wandb/`` folder in: ``tracking.dir``, else WANDB_DIR, else None (= the
    run folder, which the caller knows)."""
    chosen = _explicit(configured, "WANDB_DIR")
    return Path(chosen).expanduser() if chosen else None


@contextmanager
def run_files_in(staging_root: Path, cache_root: Path) -> Iterator[None]:
    """W&B stages under ``staging_root`` (always: a run's staged files belong in the run) and caches under
    ``cache_root`` (unless the user set WANDB_CACHE_DIR) for the duration of the block."""
    values = {"WANDB_DATA_DIR": str(staging_root)}
    with _env_lock:
        if not os.environ.get("WANDB_CACHE_DIR", "").strip():
            values["WANDB_CACHE_DIR"] = str(cache_root)
        before = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for k, v in before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
