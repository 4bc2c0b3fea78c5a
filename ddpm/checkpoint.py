"""Checkpoints: tensors and plain data only, written atomically, read with ``weights_only=True``.

A checkpoint holds model, EMA, optimiser, LR scheduler, epoch, RNG states, metric history and the
resolved config (as a dict), so ``ddpm sample`` and ``--resume`` need nothing else.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ddpm.config import ExperimentConfig, config_from_dict
from ddpm.errors import CheckpointError
from ddpm.io import atomic_write_bytes

FORMAT = "ddpm-checkpoint/1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        for name in ("checkpoints/best.pt", "best.pt", "checkpoints/last.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first[:160]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a ddpm checkpoint (format {FORMAT} expected)")
    ckpt["path"] = str(path)
    return ckpt


def checkpoint_config(ckpt: dict[str, Any]) -> ExperimentConfig:
    data = ckpt["config"]
    if isinstance(data.get("data"), dict) and "val_size" not in data["data"]:
        # saved before the validation split existed: the run trained on every training image
        data = {**data, "data": {**data["data"], "val_size": 0}}
    # what was trained stays loadable: the terminal alpha_bar_T guard applies to new configs only
    return config_from_dict(data, source=ckpt.get("path", "<checkpoint>"), check_endpoint=False)


def load_model(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True):
    """(ConditionalDDPM in eval mode, config, checkpoint dict) from a checkpoint file or run folder."""
    from ddpm.diffusion import ConditionalDDPM

    ckpt = load_checkpoint(path, map_location=device)
    cfg = checkpoint_config(ckpt)
    model = ConditionalDDPM(cfg)
    state = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt['path']}: weights do not fit the config's model ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), cfg, ckpt
