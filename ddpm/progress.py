"""rich progress bars and console, shared by training, sampling, evaluation and sweeps."""
from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

T = TypeVar("T")
console = Console(stderr=True, highlight=False)


def progress_enabled() -> bool:
    return os.environ.get("DDPM_PROGRESS", "1") != "0" and sys.stderr.isatty()


def make_progress(transient: bool = True) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=console, transient=transient, disable=not progress_enabled())


def progress_steps(items: Iterable[T], description: str, enabled: bool = True,
                   total: int | None = None) -> Iterator[T]:
    """Iterate with a transient progress bar when ``enabled`` and stderr is a terminal."""
    if not enabled or not progress_enabled():
        yield from items
        return
    total = total if total is not None else len(items)  # type: ignore[arg-type]
    with make_progress() as p:
        task = p.add_task(description, total=total, info="")
        for item in items:
            yield item
            p.advance(task)
