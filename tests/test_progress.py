"""Progress output: the study bar (trial k of N, elapsed, ETA from finished trials) and the plain lines printed
instead of bars when stderr is not a terminal."""
from __future__ import annotations

import io

from rich.console import Console

import ddpm.progress as progress
from ddpm.progress import PlainProgress, StudyProgress


def _recording(monkeypatch, terminal: bool) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setenv("DDPM_PROGRESS", "1")
    monkeypatch.setattr(progress, "console", progress._Console(file=out, force_terminal=terminal, width=60))
    monkeypatch.setattr(progress, "progress_enabled", lambda: terminal)
    monkeypatch.setattr(progress, "plain_progress_enabled", lambda: not terminal)
    return out


def test_study_bar_shows_k_of_n_and_an_eta_from_finished_trials(monkeypatch):
    _recording(monkeypatch, terminal=True)
    with StudyProgress("tiny", total=3, done=1) as sp:
        assert sp.bar is not None
        assert "trial 2/3" in sp.status() and "eta" not in sp.status()  # no trial finished here yet
        sp.trial_started()
        sp.trial_finished(seconds=60.0)
        task = sp.bar.tasks[0]
        assert task.completed == 2 and task.total == 3
        assert "trial 3/3" in sp.status() and "2/3 finished" in sp.status()
        assert 0 < sp.eta() <= 60.0  # one trial left at the mean duration (60 s), less the time it has run
        shown = io.StringIO()
        Console(file=shown, width=120).print(sp.bar)
        assert "study tiny" in shown.getvalue() and "trial 3/3  2/3 finished  elapsed 0:00:00  eta" in shown.getvalue()


def test_study_without_a_trial_limit_counts_trials(monkeypatch):
    _recording(monkeypatch, terminal=True)
    with StudyProgress("open", total=None) as sp:
        sp.trial_finished(seconds=5.0)
        assert "trial 2 " in sp.status() + " " and sp.eta() is None


def test_plain_lines_off_a_terminal(monkeypatch):
    out = _recording(monkeypatch, terminal=False)
    with StudyProgress("tiny", total=2) as sp:
        assert sp.bar is None
        sp.trial_started()
        sp.trial_finished(seconds=3.0)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("study tiny: trial 1/2 started  0/2 finished  elapsed 0:00:0"), lines
    assert lines[1].startswith("study tiny: trial finished  1/2 finished"), lines
    assert "eta 0:00:0" in lines[1]


def test_plain_progress_prints_at_its_interval_and_never_wraps(monkeypatch):
    out = _recording(monkeypatch, terminal=False)
    long_info = "loss 0.1234 " + "x" * 100  # longer than the console's 60 columns
    with PlainProgress(interval=0) as p:
        task = p.add_task("epoch 1", total=4, info="")
        for _ in range(4):
            p.update(task, advance=1, info=long_info)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("epoch 1: 2/4 (50%)  elapsed 0:00:00  eta ") and lines[1].endswith("x" * 100)
    out.truncate(0)
    out.seek(0)
    with PlainProgress(interval=3600) as p:  # an hour between lines: a short task prints none
        task = p.add_task("epoch 2", total=4, info="")
        for _ in range(4):
            p.advance(task)
    assert out.getvalue() == ""


def test_progress_off_prints_nothing(monkeypatch):
    monkeypatch.setenv("DDPM_PROGRESS", "0")
    assert not progress.progress_enabled() and not progress.plain_progress_enabled()
    assert not isinstance(progress.make_progress(), PlainProgress)


def test_interval_from_the_environment(monkeypatch):
    monkeypatch.setenv("DDPM_PROGRESS_INTERVAL", "5")
    assert progress.plain_interval() == 5.0
    for bad in ("soon", "-1"):
        monkeypatch.setenv("DDPM_PROGRESS_INTERVAL", bad)
        assert progress.plain_interval() == progress.DEFAULT_INTERVAL
