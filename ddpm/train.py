"""The training loop (the seed's ``solver``, grown up). One ``train()`` serves the CLI and every sweep trial.

Per epoch: mean train loss (the training objective; the noise loss for the seed's eps/uniform one), validation
and test noise loss (||eps - eps_hat||^2 unweighted for every objective, so runs compare), learning rate,
throughput and a 10x10 sample grid; ``last.pt`` every epoch, ``best.pt`` at the lowest validation noise loss
(the test noise loss when ``data.val_size`` is 0); ``metrics.jsonl`` appended.
Callbacks (W&B tracking, Optuna pruning) observe the run; they never own a second loop.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from ddpm import data as data_mod
from ddpm.checkpoint import RESUME_KEYS, load_checkpoint, save_checkpoint, validate_checkpoint
from ddpm.config import ExperimentConfig, save_config
from ddpm.diffusion import ConditionalDDPM
from ddpm.errors import ConfigError, TrainingDiverged
from ddpm.grids import grid_labels, save_grid
from ddpm.io import append_jsonl, read_jsonl
from ddpm.progress import console, make_progress
from ddpm.runtime import autocast_dtype, memory_format, resolve_device, seed_everything
from ddpm.sampling import Sampling


class Callback:
    """Hooks into ``train()``. ``on_epoch_end`` may raise (e.g. optuna.TrialPruned) to stop the run."""

    def on_train_start(self, run: "TrainState") -> None: ...

    def on_epoch_metrics(self, run: "TrainState", record: dict[str, Any]) -> None:
        """Called before the epoch is saved: may add keys to ``record`` (e.g. a quick sample metric)."""

    def on_epoch_end(self, run: "TrainState", record: dict[str, Any]) -> None: ...

    def on_step_end(self, run: "TrainState") -> None:
        """After each optimiser step (``run.step``, ``run.images_seen``); setting ``run.stop_requested`` ends
        training after this step (a partial epoch is not recorded; ``train()`` returns with status "stopped")."""

    def on_train_end(self, run: "TrainState", status: str, reason: Optional[str]) -> None: ...


@dataclass
class TrainState:
    cfg: ExperimentConfig
    run_dir: Path
    model: ConditionalDDPM
    ema: Optional[ConditionalDDPM]
    device: torch.device
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0                      # completed epochs
    best_test_loss: float = math.inf
    best_val_loss: float = math.inf     # the selection value of best.pt when there is a validation split
    status: str = "running"
    step: int = 0                       # optimiser steps and images of this train() call (on_step_end)
    images_seen: int = 0
    steps_per_epoch: int = 0
    stop_requested: bool = False

    @property
    def eval_model(self) -> ConditionalDDPM:
        return self.ema if self.ema is not None else self.model

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"


# frozen sections: a resumed run must have the same model and diffusion process
_RESUME_FROZEN = ("model", "diffusion", "data")


# keys added after runs were saved: what their absence meant (runs before the validation split trained on
# every training image)
_ADDED_KEYS = {("data", "val_size"): 0, ("data", "val_limit"): None, ("diffusion", "prediction"): "eps",
               ("diffusion", "zero_terminal_snr"): False}


def _check_resume_config(cfg: ExperimentConfig, saved: dict, path: str) -> None:
    now = cfg.to_dict()
    for section in _RESUME_FROZEN:
        for key, value in now[section].items():
            was = saved[section].get(key, _ADDED_KEYS.get((section, key)))
            if was != value:
                hint = ("; a run from before the validation split: resume it with data.val_size=0"
                        if (section, key) == ("data", "val_size") and key not in saved[section] else "")
                raise ConfigError(f"{path}: cannot resume with {section}.{key} = {value!r}; "
                                  f"the run was started with {was!r}{hint}")


def _holds_a_run(run_dir: Path) -> bool:
    ckpts = run_dir / "checkpoints"
    return bool(read_jsonl(run_dir / "metrics.jsonl")) or (ckpts / "last.pt").exists() or (ckpts / "best.pt").exists()


def _resume_checkpoint(cfg: ExperimentConfig, run_dir: Path) -> Optional[dict]:
    """``last.pt`` to resume from; None for a run with nothing saved yet (it starts at epoch 1).

    A run whose epochs were recorded (metrics.jsonl rows, best.pt) but whose last.pt is gone is refused:
    starting again would write epoch 1 a second time and overwrite the real best.pt."""
    last = run_dir / "checkpoints" / "last.pt"
    if last.is_file():
        ckpt = validate_checkpoint(load_checkpoint(last), RESUME_KEYS)
        _check_resume_config(cfg, ckpt["config"], str(last))
        return ckpt
    rows = read_jsonl(run_dir / "metrics.jsonl")
    best = run_dir / "checkpoints" / "best.pt"
    if rows or best.exists():
        held = f"{run_dir / 'metrics.jsonl'} records {len(rows)} epoch(s)" if rows else f"{best} exists"
        raise ConfigError(f"cannot resume {run_dir}: {held} but {last} is missing; restore last.pt (or copy "
                          f"best.pt to last.pt to continue from the best epoch), or train under another name=; "
                          f"nothing was changed")
    return None


def _repair_run_files(run: "TrainState", ckpt: Optional[dict]) -> None:
    """Make the run folder agree with the checkpoint it (re)starts from, after a kill at any write point.

    last.pt's history is the source of truth: metrics.jsonl is rewritten from it (a torn line and epochs
    the checkpoint does not hold are dropped; they are trained again and appended once). best.pt missed
    when the kill fell between last.pt and best.pt is copied from last.pt (the same payload). Temporary
    files of interrupted atomic writes are removed."""
    from ddpm.io import jsonl_text, remove_stale_temporaries, write_jsonl

    metrics = run.run_dir / "metrics.jsonl"
    for path in (run.last_checkpoint, run.best_checkpoint, metrics, run.run_dir / "config.yaml"):
        remove_stale_temporaries(path)
    history = list(ckpt["history"]) if ckpt is not None else []
    try:
        current = metrics.read_text() if metrics.exists() else None
    except (OSError, UnicodeDecodeError):
        current = None
    if current is not None or history:
        if current != jsonl_text(history):
            write_jsonl(metrics, history)
    if ckpt is None or not history:
        return
    losses = [r.get("test_loss") for r in history]
    best = ckpt["best_test_loss"]
    if losses[-1] == best and best not in losses[:-1]:  # the last epoch was the best one: best.pt must hold it
        held = None
        if run.best_checkpoint.is_file():
            try:
                held = load_checkpoint(run.best_checkpoint).get("epoch")
            except Exception:  # an unreadable best.pt is replaced like a missing one
                held = None
        if held != ckpt["epoch"]:
            from ddpm.io import atomic_write_bytes

            atomic_write_bytes(run.best_checkpoint, run.last_checkpoint.read_bytes())


def ema_decay_at(decay: float, step: int) -> float:
    """The EMA decay after ``step`` optimiser steps, warmed up as min(decay, (1 + step) / (10 + step)).

    Without the warm-up the random init keeps weight decay**step in the average: 6% after 2,800 steps at
    0.999, which left a 3-epoch width-16 model's EMA drawing blank images (test loss 0.127 vs 0.056 raw)."""
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def ema_update(ema: ConditionalDDPM, model: ConditionalDDPM, decay: float, step: int) -> None:
    """One EMA step after optimiser step ``step`` (1-based). BatchNorm running statistics are averaged with the
    same decay as the weights; every other buffer (schedule tables, batch counters) is copied from ``model``.

    Copying the live model's statistics instead pairs averaged weights with the statistics of the latest
    weights: at lr 3e-3 (the recipe) that EMA drew FID 288 / 173 / 71 at omega 0.5 / 1 / 2 after 3 epochs where
    the raw weights drew 54 / 33 / 44, and re-estimating its statistics under the EMA weights gave 30 / 27 / 57."""
    decay = ema_decay_at(decay, step)
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)
    for (name, e), b in zip(ema.named_buffers(), model.buffers()):
        if name.endswith(("running_mean", "running_var")):
            e.lerp_(b, 1.0 - decay)
        else:
            e.copy_(b)


@torch.no_grad()
def test_noise_loss(model: ConditionalDDPM, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    seed: int, amp_dtype: Optional[torch.dtype], mem: torch.memory_format) -> float:
    """Mean noise loss (``ConditionalDDPM.noise_loss``: Algorithm 1's for the seed) on held-out images with a fixed
    generator, so epochs compare like with like."""
    was = model.training
    model.eval()
    g = torch.Generator(device=images.device).manual_seed(seed)
    total, n = 0.0, 0
    amp = torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].contiguous(memory_format=mem)
        with amp:
            loss = model.noise_loss(x, labels[i:i + batch_size], generator=g)
        total += float(loss) * len(x)
        n += len(x)
    model.train(was)
    return total / max(n, 1)


def sample_grid(run: TrainState, omega: Optional[float] = None, per_class: int = 10, seed: Optional[int] = None
                ) -> torch.Tensor:
    """A (num_classes x per_class) grid from the EMA (or raw) model with the config's sampler."""
    cfg = run.cfg
    g = torch.Generator(device=run.device).manual_seed(cfg.train.seed + 1 if seed is None else seed)
    labels = grid_labels(cfg.model.num_classes, per_class)
    return Sampling.from_config(cfg, run.device).sample(run.eval_model, labels, g, omega=omega, show_progress=True)


def _payload(run: TrainState, opt, sched, g_data: torch.Generator, g_noise: torch.Generator) -> dict[str, Any]:
    return {
        "config": run.cfg.to_dict(),
        "model": run.model.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "optimizer": opt.state_dict(),
        "lr_scheduler": sched.state_dict(),
        "epoch": run.epoch,
        "best_test_loss": run.best_test_loss,
        "best_val_loss": run.best_val_loss,
        "history": run.history,
        "rng": {"torch": torch.get_rng_state(), "data": g_data.get_state(), "noise": g_noise.get_state()},
    }


def _print_epoch(rec: dict[str, Any], epochs: int) -> None:
    val = f"  val_noise_loss={rec['val_loss']:.4f}" if "val_loss" in rec else ""
    console.print(f"epoch {rec['epoch']}/{epochs}  train_noise_loss={rec['train_loss']:.4f}  "
                  f"test_noise_loss={rec['test_loss']:.4f}{val}  lr={rec['lr']:.2e}  "
                  f"{rec['images_per_s']:.0f} img/s  {rec['seconds']:.1f}s")


def print_history(history: list[dict[str, Any]], title: str = "training") -> None:
    from rich.table import Table

    table = Table(title=title)
    val = any("val_loss" in r for r in history)
    for col in ("epoch", "train loss", "test loss") + (("val loss",) if val else ()) + ("lr", "img/s", "seconds"):
        table.add_column(col, justify="right")
    for r in history:
        v = ((f"{r['val_loss']:.4f}" if "val_loss" in r else "-"),) if val else ()
        table.add_row(str(r["epoch"]), f"{r['train_loss']:.4f}", f"{r['test_loss']:.4f}", *v, f"{r['lr']:.2e}",
                      f"{r['images_per_s']:.0f}", f"{r['seconds']:.1f}")
    console.print(table)


@dataclass
class _Loop:
    """What one run's epochs share besides ``TrainState``: optimiser, generators, data, precision."""
    opt: torch.optim.Optimizer
    sched: Any
    g_data: torch.Generator
    g_noise: torch.Generator
    amp_dtype: Optional[torch.dtype]
    mem: torch.memory_format
    net: Optional[torch.nn.Module] = None   # the eager denoiser (saved; compiled copies wrap it)
    batches: Any = None                     # filled by _load_data: training batches, test and val tensors
    test: tuple[torch.Tensor, ...] = ()
    val: Optional[tuple[torch.Tensor, torch.Tensor]] = None


def _start_run(cfg: ExperimentConfig, run_dir: Path, resume: bool, quiet: bool) -> tuple[TrainState, _Loop]:
    """Checks, model, optimiser and (with ``resume``) the state of ``last.pt``; then the run folder is
    repaired and ``config.yaml`` written. Nothing is written before every check passed."""
    t = cfg.train
    device = resolve_device(t.device)
    data_mod.check_model_fits(cfg)  # before anything is written: a model the data cannot feed is a ConfigError
    seed_everything(t.seed)
    amp_dtype, mem = autocast_dtype(t, device), memory_format(t)

    # nothing is written before these checks pass: a refused start or resume leaves the folder as it was
    ckpt = _resume_checkpoint(cfg, run_dir) if resume else None
    if not resume and _holds_a_run(run_dir):
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another name=")

    model = ConditionalDDPM(cfg).to(device).to(memory_format=mem)
    ema = copy.deepcopy(model).requires_grad_(False) if t.ema_decay is not None else None
    fused = device.type == "cuda" and t.path == "fast"
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=t.lr, fused=fused or None)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=t.milestones, gamma=t.gamma)
    loop = _Loop(opt, sched, torch.Generator().manual_seed(t.seed),
                 torch.Generator(device=device).manual_seed(t.seed + 12345), amp_dtype, mem)
    run = TrainState(cfg, run_dir, model, ema, device)

    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["lr_scheduler"])
        run.epoch, run.best_test_loss, run.history = ckpt["epoch"], ckpt["best_test_loss"], ckpt["history"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        loop.g_data.set_state(ckpt["rng"]["data"])
        loop.g_noise.set_state(ckpt["rng"]["noise"])
        if not quiet:
            console.print(f"resuming {run_dir} after epoch {run.epoch}")

    run_dir.mkdir(parents=True, exist_ok=True)
    _repair_run_files(run, ckpt)
    save_config(cfg, run_dir / "config.yaml")
    return run, loop


def _load_data(run: TrainState, loop: _Loop, quiet: bool) -> None:
    """Resident tensors on the device (fast path) or the seed's per-sample DataLoader (faithful); training
    images exclude the validation split (the training file's last data.val_size images)."""
    t, d, device = run.cfg.train, run.cfg.data, run.device
    test_x, test_y = data_mod.tensors(d.dataset, "test", d.root, d.mean, d.std, d.test_limit)
    loop.test = (test_x.to(device), test_y.to(device))
    if d.val_size > 0:
        val_x, val_y = data_mod.tensors(d.dataset, "val", d.root, d.mean, d.std, d.val_limit, val_size=d.val_size)
        loop.val = (val_x.to(device), val_y.to(device))
    elif not quiet and run.epoch < t.epochs:
        console.print("data.val_size = 0: no validation split; best.pt is selected on the test noise loss")
    # the best selection value so far, from the history (a run saved before the split has no val_loss)
    run.best_val_loss = min((r["val_loss"] for r in run.history if "val_loss" in r), default=math.inf)
    if t.path == "fast":
        train_x, train_y = data_mod.tensors(d.dataset, "train", d.root, d.mean, d.std, d.limit, val_size=d.val_size)
        loop.batches = data_mod.TensorBatches(train_x.to(device), train_y.to(device), t.batch_size, True, loop.g_data)
    else:
        loop.batches = data_mod.faithful_loader(d.dataset, "train", d.root, d.mean, d.std, d.limit, t.batch_size,
                                                True, loop.g_data, val_size=d.val_size)
    run.steps_per_epoch = len(loop.batches)


def _compiled(run: TrainState, loop: _Loop) -> None:
    """``train.compile`` (fast path): the model runs a torch.compile wrapper of the eager ``loop.net``."""
    if run.cfg.train.compile and run.cfg.train.path == "fast":
        run.model.network = torch.compile(loop.net)  # type: ignore[assignment]


def _train_epoch(run: TrainState, loop: _Loop, epoch: int, progress: Any, callbacks: list[Callback] = ()
                 ) -> tuple[float, int, float]:
    """One pass over the training batches (Algorithm 1 per batch): (loss sum, images, seconds)."""
    t, device, model = run.cfg.train, run.device, run.model
    model.train()
    b_task = progress.add_task(f"epoch {epoch}", total=len(loop.batches), info="")
    n_img, start = 0, time.perf_counter()
    # the loss sum stays on the device; CUDA syncs (finite check, progress) every sync_every steps
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    sync_every = 50 if device.type == "cuda" else 1
    # optional hook: a callback written before on_step_end existed (duck-typed, not a Callback subclass) still works
    step_hooks = [cb.on_step_end for cb in callbacks if hasattr(cb, "on_step_end")]
    for step, (x, y) in enumerate(loop.batches):
        x = x.to(device, non_blocking=True).contiguous(memory_format=loop.mem)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=loop.amp_dtype, enabled=loop.amp_dtype is not None):
            loss = model(x, y, generator=loop.g_noise)
        if step % sync_every == 0 and not torch.isfinite(loss):
            raise TrainingDiverged(f"{run.run_dir}: loss is {float(loss.detach())} at epoch {epoch}, image "
                                   f"{n_img}; lower train.lr (now {t.lr}) or set train.grad_clip")
        loop.opt.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        loop.opt.step()
        if run.ema is not None:
            ema_update(run.ema, model, t.ema_decay, (epoch - 1) * len(loop.batches) + step + 1)  # type: ignore[arg-type]
        loss_sum += loss.detach().double() * len(x)
        n_img += len(x)
        if step % sync_every == 0:
            progress.update(b_task, advance=1, info=f"loss {float(loss_sum) / n_img:.4f}")
        else:
            progress.update(b_task, advance=1)
        run.step, run.images_seen = run.step + 1, run.images_seen + len(x)
        for hook in step_hooks:
            hook(run)
        if run.stop_requested:
            break
    total = float(loss_sum)
    if not math.isfinite(total):
        raise TrainingDiverged(f"{run.run_dir}: train loss is {total} in epoch {epoch}; lower train.lr "
                               f"(now {t.lr}) or set train.grad_clip")
    if device.type == "cuda":
        torch.cuda.synchronize()
    progress.remove_task(b_task)
    return total, n_img, time.perf_counter() - start


def _epoch_record(run: TrainState, loop: _Loop, epoch: int, total: float, n_img: int, seconds: float
                  ) -> dict[str, Any]:
    """Steps the learning rate, then the epoch's row: train/test/val noise loss, lr, throughput, grid."""
    t = run.cfg.train
    lr = loop.opt.param_groups[0]["lr"]
    loop.sched.step()
    test_loss = test_noise_loss(run.eval_model, *loop.test, t.batch_size, t.seed + 7, loop.amp_dtype, loop.mem)
    rec: dict[str, Any] = {"epoch": epoch, "train_loss": total / max(n_img, 1), "test_loss": test_loss}
    if loop.val is not None:   # same fixed generator seed as the test loss: epochs compare like with like
        rec["val_loss"] = test_noise_loss(run.eval_model, *loop.val, t.batch_size, t.seed + 7, loop.amp_dtype,
                                          loop.mem)
    rec.update(lr=lr, images_per_s=n_img / seconds, seconds=seconds)
    if t.grid_every and (epoch % t.grid_every == 0 or epoch == t.epochs):
        grid = save_grid(sample_grid(run), run.run_dir / "grids" / f"epoch-{epoch:03d}.png")
        rec["grid"] = str(grid.relative_to(run.run_dir))
    return rec


def _save_epoch(run: TrainState, loop: _Loop, rec: dict[str, Any]) -> None:
    """History, best-so-far, ``last.pt`` (and ``best.pt``), then the metrics line."""
    run.history.append(rec)
    is_best = rec["test_loss"] < run.best_test_loss     # without a validation split: selection on test
    if is_best:
        run.best_test_loss = rec["test_loss"]
    if loop.val is not None:
        is_best = rec["val_loss"] < run.best_val_loss
        if is_best:
            run.best_val_loss = rec["val_loss"]
    run.model.network = loop.net  # save the eager module's weights, not the compiled wrapper's
    payload = _payload(run, loop.opt, loop.sched, loop.g_data, loop.g_noise)
    # last.pt (the source of truth, history included), then best.pt (the same payload), then the
    # metrics line: a kill between any two is repaired by the next --resume (_repair_run_files)
    save_checkpoint(run.last_checkpoint, payload)
    if is_best:
        save_checkpoint(run.best_checkpoint, payload)
    _compiled(run, loop)
    append_jsonl(run.run_dir / "metrics.jsonl", rec)


def _run_epochs(run: TrainState, loop: _Loop, callbacks: list[Callback], quiet: bool) -> None:
    t = run.cfg.train
    with make_progress(transient=True) as progress:
        ep_task = progress.add_task("epochs", total=t.epochs, completed=run.epoch, info="")
        while run.epoch < t.epochs:
            epoch = run.epoch + 1
            trained = _train_epoch(run, loop, epoch, progress, callbacks)
            if run.stop_requested:
                return
            rec = _epoch_record(run, loop, epoch, *trained)
            run.epoch = epoch
            for cb in callbacks:
                cb.on_epoch_metrics(run, rec)
            _save_epoch(run, loop, rec)
            if not quiet:
                _print_epoch(rec, t.epochs)
            progress.update(ep_task, advance=1)
            for cb in callbacks:
                cb.on_epoch_end(run, rec)


def train(cfg: ExperimentConfig, run_dir: Optional[str | Path] = None, resume: bool = False,
          callbacks: Iterable[Callback] = (), quiet: bool = False) -> TrainState:
    """Train ``cfg`` into ``run_dir`` (default ``cfg.run_dir``); ``resume`` continues from ``last.pt``."""
    callbacks = list(callbacks)
    run_dir = Path(run_dir) if run_dir is not None else cfg.run_dir
    run, loop = _start_run(cfg, run_dir, resume, quiet)
    _load_data(run, loop, quiet)
    loop.net = run.model.network
    _compiled(run, loop)

    for cb in callbacks:
        cb.on_train_start(run)
    status, reason = "complete", None
    try:
        _run_epochs(run, loop, callbacks, quiet)
        if run.stop_requested:
            status, reason = "stopped", f"a callback stopped training after step {run.step} (epoch {run.epoch} saved)"
    except KeyboardInterrupt:
        status, reason = "interrupted", "KeyboardInterrupt"
        if not quiet:
            console.print(f"[yellow]interrupted: {run.last_checkpoint} holds epoch {run.epoch}; "
                          f"rerun with --resume to continue[/]")
        raise
    except TrainingDiverged as e:
        status, reason = "failed", str(e)
        raise
    except BaseException as e:
        status, reason = _status_of(e)
        raise
    finally:
        run.model.network = loop.net
        run.status = status
        for cb in callbacks:
            try:
                cb.on_train_end(run, status, reason)
            except Exception as cb_err:  # a tracker must never turn a result into a crash
                console.print(f"[yellow]warning: {type(cb).__name__}.on_train_end failed: {cb_err}[/]")
    if not quiet:
        print_history(run.history, title=f"{run_dir}")
    return run


def _status_of(e: BaseException) -> tuple[str, str]:
    if type(e).__name__ == "TrialPruned":
        return "pruned", str(e) or "pruned by the study's pruner"
    return "failed", f"{type(e).__name__}: {e}"
