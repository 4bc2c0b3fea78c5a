"""Report charts and blocks without a sweep: integer ticks on trial and epoch axes (real Optuna studies in
memory, real matplotlib figures), Optuna's parallel-coordinate and slice plots, and the gallery block."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import optuna  # noqa: E402
import pytest  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ddpm.grids import grid_png  # noqa: E402
from ddpm.report import figures  # noqa: E402
from ddpm.report.blocks import Figure, Gallery, Section  # noqa: E402
from ddpm.report.html import render_html  # noqa: E402
from ddpm.report.markdown import write_markdown  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture
def drawn(monkeypatch) -> list[Any]:
    """The matplotlib figures the chart functions hand to ``figures.png`` (still drawn into PNG bytes)."""
    out: list[Any] = []
    real = figures.png

    def keep(fig):
        fig.canvas.draw()
        out.append(fig)
        return real(fig)
    monkeypatch.setattr(figures, "png", keep)
    return out


def _study(n: int = 7) -> optuna.Study:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("train.lr", 1e-4, 1e-2, log=True) * 100
                   + t.suggest_categorical("diffusion.schedule", ["linear", "cosine"]).__len__(), n_trials=n)
    return study


def _ticks(axis: Any) -> list[float]:
    lo, hi = sorted(axis.get_view_interval())
    return [t for t in axis.get_majorticklocs() if lo - 1e-9 <= t <= hi + 1e-9]


def _assert_integer_axis(axis: Any) -> None:
    locator = axis.get_major_locator()
    assert isinstance(locator, MaxNLocator) and locator._integer  # AutoLocator is a MaxNLocator too: the flag decides
    ticks = _ticks(axis)
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


def test_trial_axis_of_the_history_has_integer_ticks(drawn) -> None:
    figures.optimisation_history(_study(5), 0, "fid")   # 5 trials: matplotlib's default would tick at 0.5 steps
    ax = drawn[0].axes[0]
    assert ax.get_xlabel() == "Trial"
    _assert_integer_axis(ax.xaxis)


def test_epoch_axis_of_the_loss_curves_has_integer_ticks(drawn) -> None:
    records = [{"epoch": e, "train_loss": 1.0 / e, "test_loss": 1.1 / e} for e in (1, 2, 3)]
    figures.loss_curves([("#0", records), ("#1", records[:2])])
    ax = drawn[0].axes[0]
    assert ax.get_xlabel() == "epoch"
    _assert_integer_axis(ax.xaxis)


def test_slice_plot_has_a_panel_per_parameter_and_an_integer_trial_colour_bar(drawn) -> None:
    data = figures.slices(_study(5), 0, "fid", ["diffusion.schedule", "train.lr"])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    fig = drawn[0]
    panels = [ax for ax in fig.axes if ax.get_xlabel()]
    assert [ax.get_xlabel() for ax in panels] == ["diffusion.\nschedule", "train.\nlr"]  # wrapped, not run together
    (trial_axis,) = [a for ax in fig.axes for a in (ax.xaxis, ax.yaxis) if a.get_label().get_text() == "Trial"]
    _assert_integer_axis(trial_axis)


def test_parallel_coordinate_plot_is_drawn_for_the_given_params(drawn) -> None:
    data = figures.parallel_coordinate(_study(), 0, "fid", ["diffusion.schedule", "train.lr"])
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    labels = [t.get_text() for ax in drawn[0].axes for t in ax.get_xticklabels()]
    assert {"fid", "diffusion.schedule", "train.lr"} <= set(labels)


def test_gallery_renders_side_by_side_in_html_and_as_a_table_in_markdown(tmp_path: Path) -> None:
    import torch

    pngs = [grid_png(torch.full((4, 1, 8, 8), v), nrow=2) for v in (0.0, 0.5, 1.0)]
    figs = [Figure(f"grid-top-trial{i}", p, f"#{i}: lr = {i}; best omega = 2; fid 10 [9, 11]") for i, p in enumerate(pngs)]
    sections = [Section("gallery", "Samples of the top trials", [Gallery(figs, "the top 3")])]
    html = render_html("t", "s", sections)
    (div,) = re.findall(r'<div class="gallery">(.*?)</div>', html)
    assert div.count("<figure") == 3 and div.count("<figcaption>") == 3 and "fid 10 [9, 11]" in div
    assert ".gallery { display: grid;" in html
    md_path = write_markdown(tmp_path / "report.md", "t", "s", sections)
    md = md_path.read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ![")]
    assert len(rows) == 3 and all("best omega = 2" in r for r in rows)
    for i, p in enumerate(pngs):  # each gallery image written beside the Markdown, byte for byte
        assert (tmp_path / "img" / f"grid-top-trial{i}.png").read_bytes() == p
