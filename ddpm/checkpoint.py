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


# what each reader needs: key -> the types its value may have (a dict of tensors is checked as a mapping)
SAMPLE_KEYS: dict[str, tuple[type, ...]] = {"config": (dict,), "model": (dict,), "ema": (dict, type(None))}
RESUME_KEYS: dict[str, tuple[type, ...]] = {
    **SAMPLE_KEYS, "optimizer": (dict,), "lr_scheduler": (dict,), "epoch": (int,), "best_test_loss": (int, float),
    "history": (list,), "rng": (dict,)}
_RNG_KEYS = ("torch", "data", "noise")


def validate_checkpoint(ckpt: dict[str, Any], keys: dict[str, tuple[type, ...]] = SAMPLE_KEYS) -> dict[str, Any]:
    """A loaded checkpoint of the right format that lacks a key, or holds the wrong kind of value there, is a
    one-line CheckpointError naming the file and the key (not a KeyError deep inside sampling or resuming)."""
    path = ckpt.get("path", "<checkpoint>")
    for key, types in keys.items():
        if key not in ckpt and type(None) not in types:
            raise CheckpointError(f"{path}: no {key!r} entry; the file is incomplete or not written by ddpm train")
        value = ckpt.get(key)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise CheckpointError(f"{path}: {key!r} holds {type(value).__name__}, expected {want}")
    for key in ("model", "ema", "optimizer", "lr_scheduler"):
        if key in keys and isinstance(ckpt.get(key), dict) and not all(isinstance(k, str) for k in ckpt[key]):
            raise CheckpointError(f"{path}: {key!r} is not a state dict (its keys are not names)")
    for key in ("model", "ema"):
        if key in keys and isinstance(ckpt.get(key), dict) and \
                not all(isinstance(v, torch.Tensor) for v in ckpt[key].values()):
            raise CheckpointError(f"{path}: {key!r} is not a state dict of tensors")
    if "config" in keys:
        for section in ("model", "diffusion", "data"):
            if not isinstance(ckpt["config"].get(section), dict):
                raise CheckpointError(f"{path}: config.{section} is missing or not a mapping")
    if "rng" in keys:
        missing = [k for k in _RNG_KEYS if not isinstance(ckpt["rng"].get(k), torch.Tensor)]
        if missing:
            raise CheckpointError(f"{path}: rng lacks the {', '.join(missing)} state(s)")
    if "epoch" in keys and ckpt["epoch"] < 0:
        raise CheckpointError(f"{path}: epoch = {ckpt['epoch']}: must be >= 0")
    return ckpt


def checkpoint_config(ckpt: dict[str, Any]) -> ExperimentConfig:
    path = ckpt.get("path", "<checkpoint>")
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"{path}: no 'config' mapping; the file is incomplete or not written by ddpm train")
    data = ckpt["config"]
    if isinstance(data.get("data"), dict) and "val_size" not in data["data"]:
        # saved before the validation split existed: the run trained on every training image
        data = {**data, "data": {**data["data"], "val_size": 0}}
    # what was trained stays loadable: the terminal alpha_bar_T guard applies to new configs only
    return config_from_dict(data, source=path, check_endpoint=False)


def load_model(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True):
    """(ConditionalDDPM in eval mode, config, checkpoint dict) from a checkpoint file or run folder."""
    from ddpm.diffusion import ConditionalDDPM

    ckpt = validate_checkpoint(load_checkpoint(path, map_location=device))
    cfg = checkpoint_config(ckpt)
    model = ConditionalDDPM(cfg)
    state = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{ckpt['path']}: weights do not fit the config's model ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), cfg, ckpt
