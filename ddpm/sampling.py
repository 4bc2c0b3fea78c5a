"""The one way from a config to images: ``Sampling`` picks the image sampler and its settings.

Every caller samples through here: the training loop's grids (``train.sample_grid``), ``ddpm sample``,
``ddpm eval`` and the sweeps (``evaluation.generate``) and ``ddpm bench``. Only this module reads
``train.path`` for sampling (batched guidance, BatchNorm folding, chunks, precision, memory format) and the
``sample.*`` defaults, and only ``samplers.check_steps`` (called here and by config validation) judges a
step count: out of 1..T is a one-line ConfigError, never a silent clamp.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from ddpm.config import ExperimentConfig, TrainConfig
from ddpm.runtime import autocast_dtype, memory_format
from ddpm.samplers import Sampler, check_steps, make_sampler

# images per network pass when sampling on a CPU: 200-image guided passes at width 16-128 took 10-34% less
# time as 64-image pieces (2-core AMD EPYC, reports/benchmarks/cpu-knobs-2026-11-30.md)
CPU_SAMPLE_CHUNK = 64


def sampling_options(t: TrainConfig, device: torch.device) -> dict[str, Any]:
    """Keyword arguments of ``Sampler.sample`` for the configured path on ``device``."""
    fast = t.path == "fast"
    chunk = t.sample_chunk if t.sample_chunk is not None else (CPU_SAMPLE_CHUNK if device.type == "cpu" else None)
    return {"autocast_dtype": autocast_dtype(t, device), "memory_format": memory_format(t),
            "fold_batchnorm": fast and t.fold_batchnorm, "chunk": chunk if fast else None}


def cap_steps(steps: Optional[int], T: int) -> Optional[int]:
    """A step *budget* shared by models of different T (a sweep's ``guidance.steps``/``prune_on.steps``,
    the bench's settings) as a step count for this model: at most T. Callers holding a count use it as is."""
    return None if steps is None else min(steps, T)


@dataclass(frozen=True)
class Sampling:
    """A configured sampler: ``name``, ``steps`` (None = all T), ``eta``, default ``omega`` and the path's
    ``options`` on ``device``. Build it with ``from_config``; call ``sample``."""

    sampler: Sampler
    omega: float
    device: torch.device
    options: dict[str, Any]

    @property
    def name(self) -> str:
        return self.sampler.name

    @property
    def steps(self) -> Optional[int]:
        return self.sampler.steps

    @property
    def eta(self) -> float:
        return self.sampler.eta

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, device: torch.device | str, *, sampler: Optional[str] = None,
                    steps: Optional[int] = None, eta: Optional[float] = None, omega: Optional[float] = None,
                    cuda_graph: bool = False, steps_key: str = "steps") -> "Sampling":
        """``cfg.sample`` with the given values overriding it (None = the config's). ``steps`` outside
        1..diffusion.T raises a ConfigError naming ``steps_key`` (e.g. ``--steps`` for the CLI).
        ``cuda_graph``: replay the guided pass as a CUDA graph (fast path on CUDA only; ignored elsewhere)."""
        s, t, device = cfg.sample, cfg.train, torch.device(device)
        steps = (check_steps(steps, cfg.diffusion.T, steps_key) if steps is not None
                 else check_steps(s.steps, cfg.diffusion.T, "sample.steps"))
        made = make_sampler(sampler or s.sampler, steps, float(s.eta if eta is None else eta),
                            batched_guidance=t.path == "fast")   # the seed's two passes on the faithful path
        options = sampling_options(t, device)
        if cuda_graph and t.path == "fast" and device.type == "cuda":
            options["cuda_graph"] = True
        return cls(made, float(s.omega if omega is None else omega), device, options)

    def sample(self, model: torch.nn.Module, labels: torch.Tensor, generator: Optional[torch.Generator] = None,
               omega: Optional[float] = None, batch_size: Optional[int] = None, to_cpu: bool = False,
               show_progress: bool = False) -> torch.Tensor:
        """Images in [0, 1] for ``labels`` at ``omega`` (default: this sampling's), ``batch_size`` at a time
        (None: all at once) from the one ``generator``; ``to_cpu`` moves each batch off the device when done."""
        w = self.omega if omega is None else float(omega)
        step = len(labels) if batch_size is None else batch_size
        out = []
        for i in range(0, len(labels), max(step, 1)):
            images = self.sampler.sample(model, labels[i:i + step].to(self.device), w, generator=generator,
                                         show_progress=show_progress, **self.options)
            out.append(images.cpu() if to_cpu else images)
        return torch.cat(out) if len(out) != 1 else out[0]
