"""The training clock of the time-to-quality benchmark: a ``train()`` callback that scores the model every
``every_s`` seconds of training (checked after each optimiser step, so mid-epoch too), pauses the clock while
it scores, and stops training at ``budget_s`` after a last score there.

Training seconds = wall time since ``on_train_start`` minus the time spent scoring. They include everything
else ``train()`` does, as ``ddpm train`` would: the steps, the data pipeline, and at each epoch's end the
test/validation noise loss and the checkpoints.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from ddpm.train import Callback, TrainState


@dataclass
class Mark:
    """Where a score is taken: training seconds, images and steps so far, epochs (fractional), final or not."""
    train_seconds: float
    images_seen: int
    step: int
    epoch: float
    final: bool


class IntervalScorer(Callback):
    """Calls ``score(run, mark)`` at each multiple of ``every_s`` training seconds and, as the final point, at
    ``budget_s`` (then sets ``run.stop_requested``) or at the run's last step if its epochs end first.
    ``finish(run)`` scores a run that ended without a final point (no step at all).
    ``clock`` is the time source (a test may pass its own)."""

    def __init__(self, every_s: float, budget_s: float, score: Callable[[TrainState, Mark], None],
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.every_s, self.budget_s, self.score, self.clock = every_s, budget_s, score, clock
        self.start = self.paused = 0.0
        self.next_at = every_s
        self.final_done = False
        self.last_step = 0      # the run's last optimiser step (its epochs may end before the budget)

    def train_seconds(self) -> float:
        return self.clock() - self.start - self.paused

    def on_train_start(self, run: TrainState) -> None:
        self.start, self.paused, self.next_at = self.clock(), 0.0, self.every_s
        self.last_step = (run.cfg.train.epochs - run.epoch) * run.steps_per_epoch

    def on_step_end(self, run: TrainState) -> None:
        t = self.train_seconds()
        at_budget = t >= self.budget_s
        final = at_budget or run.step >= self.last_step
        if final or t >= self.next_at:
            self._score(run, t, final)
            while self.next_at <= t:
                self.next_at += self.every_s
        if at_budget:
            run.stop_requested = True

    def finish(self, run: TrainState) -> None:
        """The final point, unless it was scored (a run that ended without training a step)."""
        if not self.final_done:
            self._score(run, self.train_seconds(), True)

    def _score(self, run: TrainState, t: float, final: bool) -> None:
        epoch = run.step / run.steps_per_epoch if run.steps_per_epoch else float(run.epoch)
        began = self.clock()
        try:
            self.score(run, Mark(t, run.images_seen, run.step, round(epoch, 3), final))
        finally:
            self.paused += self.clock() - began
        self.final_done = self.final_done or final
