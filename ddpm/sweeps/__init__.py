"""Optuna sweeps from YAML: spec (schema), samplers/pruners (registries), storage (URLs), objective
(one trial = ``ddpm.train.train`` + a guidance grid), runner (studies and workers)."""
from ddpm.sweeps.runner import open_sweep_study, run_study, run_worker, storage_url
from ddpm.sweeps.spec import SweepSpec, load_sweep
from ddpm.sweeps.storage import open_storage, redact_url

__all__ = ["SweepSpec", "load_sweep", "open_sweep_study", "run_study", "run_worker", "storage_url", "open_storage",
           "redact_url"]
