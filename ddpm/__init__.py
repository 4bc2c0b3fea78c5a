"""ddpm: class-conditional DDPM with classifier-free guidance, Optuna sweeps, W&B tracking, reports."""

__version__ = "0.1.0"
