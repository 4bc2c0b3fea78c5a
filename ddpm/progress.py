"""Progress on the console (stderr), shared by training, sampling, evaluation and sweeps.

On a terminal: rich progress bars (a sweep's study bar above the per-trial bars). Elsewhere (CI logs,
``nohup``): plain lines, a task's at most every ``DDPM_PROGRESS_INTERVAL`` seconds (default 30) and the
study's at each trial's start and end, never hard-wrapped. ``DDPM_PROGRESS=0`` turns both off.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator, Optional, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

T = TypeVar("T")
DEFAULT_INTERVAL = 30.0


class _Console(Console):
    """A console whose plain-text lines are never hard-wrapped (a log keeps one line per message);
    tables and other renderables still fit its width."""

    def print(self, *objects: Any, soft_wrap: Optional[bool] = None, **kwargs: Any) -> None:  # type: ignore[override]
        if soft_wrap is None:
            soft_wrap = all(isinstance(o, str) for o in objects)
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


def _log_width() -> Optional[int]:
    """Not a terminal and no COLUMNS: tables 160 wide rather than rich's 80 (a log has no edge to fit)."""
    return None if sys.stderr.isatty() or os.environ.get("COLUMNS") else 160


console = _Console(stderr=True, highlight=False, width=_log_width())


def _wanted() -> bool:
    return os.environ.get("DDPM_PROGRESS", "1") != "0"


def progress_enabled() -> bool:
    """Live progress bars: stderr is a terminal and DDPM_PROGRESS is not 0."""
    return _wanted() and sys.stderr.isatty()


def plain_progress_enabled() -> bool:
    """Plain progress lines: stderr is not a terminal (a log file, a pipe) and DDPM_PROGRESS is not 0."""
    return _wanted() and not sys.stderr.isatty()


def plain_interval() -> float:
    """Seconds between a task's plain progress lines (``DDPM_PROGRESS_INTERVAL``, default 30)."""
    try:
        value = float(os.environ.get("DDPM_PROGRESS_INTERVAL", DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value >= 0 else DEFAULT_INTERVAL


def clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _PlainTask:
    def __init__(self, description: str, total: Optional[float], completed: float, info: str) -> None:
        self.description, self.total, self.completed, self.info = description, total, completed, info
        self.start = self.last = time.monotonic()
        self.first = completed

    def line(self) -> str:
        now = time.monotonic()
        done = self.completed - self.first
        eta = ""
        if self.total and done > 0 and self.completed < self.total:
            eta = f"  eta {clock((now - self.start) / done * (self.total - self.completed))}"
        count = f"{self.completed:g}/{self.total:g}" if self.total else f"{self.completed:g}"
        pct = f" ({100 * self.completed / self.total:.0f}%)" if self.total else ""
        return f"{self.description}: {count}{pct}  elapsed {clock(now - self.start)}{eta}  {self.info}".rstrip()


class PlainProgress:
    """The part of rich's ``Progress`` that ddpm uses, printing a task's state as one plain line at most every
    ``interval`` seconds: progress for logs, where a live bar would be silence or garbage."""

    def __init__(self, interval: Optional[float] = None) -> None:
        self.interval = plain_interval() if interval is None else interval
        self.tasks: dict[int, _PlainTask] = {}
        self.next_id = 0

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.tasks.clear()

    def add_task(self, description: str, total: Optional[float] = 100.0, completed: float = 0,
                 info: str = "", **fields: Any) -> TaskID:
        tid, self.next_id = TaskID(self.next_id), self.next_id + 1
        self.tasks[tid] = _PlainTask(description, total, completed, info)
        return tid

    def update(self, task_id: TaskID, advance: Optional[float] = None, completed: Optional[float] = None,
               info: Optional[str] = None, **fields: Any) -> None:
        task = self.tasks.get(task_id)
        if task is None:
            return
        task.completed = completed if completed is not None else task.completed + (advance or 0)
        task.info = info if info is not None else task.info
        now = time.monotonic()
        if now - task.last >= self.interval:
            task.last = now
            console.print(task.line(), markup=False)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def remove_task(self, task_id: TaskID) -> None:
        self.tasks.pop(task_id, None)


def make_progress(transient: bool = True) -> Any:
    """Bars on a terminal, :class:`PlainProgress` lines in a log, nothing with DDPM_PROGRESS=0."""
    if plain_progress_enabled():
        return PlainProgress()
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=console, transient=transient, disable=not progress_enabled())


def progress_steps(items: Iterable[T], description: str, enabled: bool = True,
                   total: int | None = None) -> Iterator[T]:
    """Iterate with a transient progress bar (plain lines in a log) when ``enabled``."""
    if not enabled or not _wanted():
        yield from items
        return
    total = total if total is not None else len(items)  # type: ignore[arg-type]
    with make_progress() as p:
        task = p.add_task(description, total=total, info="")
        for item in items:
            yield item
            p.advance(task)


class _StatusColumn(ProgressColumn):
    """The study's status text, computed at each refresh (elapsed and ETA tick while a trial runs)."""

    def __init__(self, study: "StudyProgress") -> None:
        super().__init__()
        self.study = study

    def render(self, task: Any) -> Text:
        return Text(self.study.status())


class StudyProgress:
    """A sweep's study-level progress: trial k of N, elapsed, ETA from the durations of the trials that
    finished in this session. On a terminal a rich bar drawn above the per-trial bars (rich nests live
    displays); in a log one plain line when a trial starts and when it ends."""

    def __init__(self, study: str, total: Optional[int], done: int = 0) -> None:
        self.study, self.total, self.done = study, total, done
        self.durations: list[float] = []
        self.start = self.trial_start = time.monotonic()
        self.bar: Optional[Progress] = None
        self.task: Optional[TaskID] = None

    def __enter__(self) -> "StudyProgress":
        if progress_enabled():
            self.bar = Progress(TextColumn("[bold]study {task.description}"), BarColumn(), _StatusColumn(self),
                                console=console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.study, total=self.total, completed=self.done)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()

    def k(self) -> int:
        """The trial running now (1-based), counting the study's trials finished before this session."""
        k = self.done + 1
        return min(k, self.total) if self.total else k

    def eta(self) -> Optional[float]:
        if not self.durations or not self.total:
            return None
        mean = sum(self.durations) / len(self.durations)
        running = time.monotonic() - self.trial_start if self.done < self.total else 0.0
        return max(mean * max(self.total - self.done, 0) - running, 0.0)

    def status(self, head: str = "") -> str:
        of = f"/{self.total}" if self.total else ""
        eta = self.eta()
        return (f"{head or f'trial {self.k()}{of}'}  {self.done}{of} finished  "
                f"elapsed {clock(time.monotonic() - self.start)}" + (f"  eta {clock(eta)}" if eta is not None else ""))

    def trial_started(self) -> None:
        self.trial_start = time.monotonic()
        self._show(f"trial {self.k()}{f'/{self.total}' if self.total else ''} started")

    def trial_finished(self, seconds: Optional[float] = None) -> None:
        self.durations.append(seconds if seconds is not None else time.monotonic() - self.trial_start)
        self.done += 1
        self._show("trial finished")

    def _show(self, head: str) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=self.done)
        elif plain_progress_enabled():
            console.print(f"study {self.study}: {self.status(head)}", markup=False)
