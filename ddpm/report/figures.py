"""Report charts as PNG bytes: Optuna's own matplotlib visualisations, plus loss and guidance curves.

Optuna's ``optuna.visualization.matplotlib`` draws the optimisation history, parameter importances,
parallel coordinates, slices and Pareto front (no browser or kaleido needed); the run-folder curves use
matplotlib directly. Trial-number and epoch axes get integer ticks only.
"""
from __future__ import annotations

import io
import math
import warnings
from typing import Any, Callable, Optional, Sequence

import matplotlib.pyplot as plt  # the backend is the caller's: `ddpm` sets Agg (ddpm.cli.configure_libraries)
import optuna
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

DPI = 100


def png(fig: MplFigure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _figure_of(axes: Any) -> MplFigure:
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.figure


def integer_ticks(axis: Any) -> None:
    """Ticks at whole numbers only on ``axis`` (an Axes' xaxis/yaxis): trial numbers and epochs."""
    axis.set_major_locator(MaxNLocator(integer=True))


def _axes_labelled(fig: MplFigure, label: str) -> list[Any]:
    """The x/y axes (colour bars included) of ``fig`` whose label is ``label``."""
    return [axis for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) if axis.get_label().get_text() == label]


def _wrap_dotted_xlabels(fig: MplFigure) -> None:
    """``model.num_feat`` -> ``model.`` / ``num_feat`` on two lines: side-by-side panels' labels must not run together."""
    for ax in fig.axes:
        ax.set_xlabel(ax.get_xlabel().replace(".", ".\n", 1))


def _optuna_plot(draw: Callable[[], Any], size: tuple[float, float] = (7.0, 4.0),
                 finish: Optional[Callable[[MplFigure], None]] = None) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning: the matplotlib backend is "experimental"
        fig = _figure_of(draw())
    if finish is not None:
        finish(fig)
    for axis in _axes_labelled(fig, "Trial"):  # Optuna labels trial-number axes and colour bars "Trial"
        integer_ticks(axis)
    fig.set_size_inches(*size)
    return png(fig)


def optimisation_history(study: optuna.Study, index: int, name: str) -> bytes:
    """Optuna's optimisation history for objective ``index`` (each trial's value and the best so far)."""
    from optuna.visualization.matplotlib import plot_optimization_history

    target = None if len(study.directions) == 1 else (lambda t: t.values[index])
    return _optuna_plot(lambda: plot_optimization_history(study, target=target, target_name=name))


def param_importances(study: optuna.Study, index: int, name: str) -> tuple[bytes, dict[str, float]]:
    """Parameter importances for objective ``index`` (``ddpm.sweeps.importance``, the evaluator the W&B
    study run uses): chart and numbers."""
    from optuna.visualization.matplotlib import plot_param_importances

    from ddpm.sweeps.importance import importance_evaluator, objective_target, param_importances as numbers_of

    numbers = numbers_of(study, index)
    chart = _optuna_plot(lambda: plot_param_importances(study, importance_evaluator(),
                                                        target=objective_target(study, index), target_name=name))
    return chart, numbers


def parallel_coordinate(study: optuna.Study, index: int, name: str, params: list[str]) -> bytes:
    """Optuna's parallel-coordinate plot of ``params`` for objective ``index``: one line per completed trial."""
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    from ddpm.sweeps.importance import objective_target

    return _optuna_plot(lambda: plot_parallel_coordinate(study, params=params, target=objective_target(study, index),
                                                         target_name=name), size=(max(7.0, 1.6 * len(params) + 2), 4.5))


def slices(study: optuna.Study, index: int, name: str, params: list[str]) -> bytes:
    """Optuna's slice plot: objective ``index`` against each of ``params``, one panel per parameter, points
    coloured by trial number."""
    from optuna.visualization.matplotlib import plot_slice

    from ddpm.sweeps.importance import objective_target

    return _optuna_plot(lambda: plot_slice(study, params=params, target=objective_target(study, index),
                                           target_name=name), size=(min(2.6 * len(params) + 1.5, 16.0), 4.0),
                        finish=_wrap_dotted_xlabels)


def pareto_front(study: optuna.Study, names: list[str]) -> bytes:
    """Optuna's Pareto-front plot (2 or 3 objectives)."""
    from optuna.visualization.matplotlib import plot_pareto_front

    return _optuna_plot(lambda: plot_pareto_front(study, target_names=names), size=(6.5, 5.0))


def loss_curves(curves: Sequence[tuple[str, list[dict[str, Any]]]]) -> bytes:
    """Per-epoch train (dashed) and test (solid) noise loss, one colour per trial."""
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for i, (label, records) in enumerate(curves):
        color = f"C{i % 10}"
        epochs = [r["epoch"] for r in records]
        for key, style in (("test_loss", "-"), ("train_loss", "--")):
            ys = [r.get(key, math.nan) for r in records]
            ax.plot(epochs, ys, style, marker="o", ms=3, color=color,
                    label=f"{label} {'test' if key == 'test_loss' else 'train'}")
    ax.set_xlabel("epoch")
    integer_ticks(ax.xaxis)
    ax.set_ylabel("noise loss (MSE of predicted noise)")
    ys = [r.get(k) for _, records in curves for r in records for k in ("train_loss", "test_loss")]
    ys = [y for y in ys if isinstance(y, (int, float)) and y > 0]
    if ys and max(ys) / min(ys) > 3:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Per-epoch noise loss (solid: test, dashed: train)")
    return png(fig)


def guidance_tradeoff(rows: Sequence[dict[str, Any]], title: str) -> bytes:
    """FID (left axis, with the real-data floor) and conditional accuracy (right axis) against omega."""
    omegas = [float(r["omega"]) for r in rows]

    def col(key: str) -> list[float]:
        return [float(r[key]) if isinstance(r.get(key), (int, float)) else math.nan for r in rows]

    fid, floor, acc = col("fid"), col("floor"), col("accuracy")
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    ax.plot(omegas, fid, "o-", color="C0", label="FID (classifier features)")
    if any(math.isfinite(f) for f in floor):
        ax.plot(omegas, floor, ":", color="C0", alpha=0.8, label="real-data floor (FID of real images)")
    ax.set_xlabel("guidance weight omega")
    ax.set_ylabel("FID (lower is better)", color="C0")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(omegas, acc, "s-", color="C3", label="conditional accuracy")
    ax2.set_ylabel("conditional accuracy (higher is better)", color="C3")
    ax2.set_ylim(0, 1.02)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="best")
    ax.set_title(title)
    return png(fig)


def image_png(data: bytes) -> Optional[bytes]:
    """``data`` when it is a readable PNG (a grid written by the run), else None."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except Exception:
        return None
    return data
