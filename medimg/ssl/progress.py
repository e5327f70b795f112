"""Progress of a long pretraining: one line every few steps with step, loss, images per second and ETA.

Lines (not a redrawn bar) so that a run in the background leaves a readable log::

    simclr grey random: step 250/3000 (8%)  loss 5.213  612 img/s  ETA 0:18:40
"""
from __future__ import annotations

import statistics
import sys
import time
from datetime import timedelta

import pytorch_lightning as pl

PAUSE_FACTOR = 20  # a step this many times longer than the median of the steps before it was a pause (SIGSTOP, sleep)
PAUSE_WINDOW = 50  # ... of the last this many steps (at least ten are needed to call one a pause)


def working_seconds(seconds: float, before: list[float]) -> float:
    """The seconds of one step that count as training: its wall time, or, where it is :data:`PAUSE_FACTOR` times
    the median of the :data:`PAUSE_WINDOW` steps ``before`` it, that median (the process was stopped or the machine
    slept: the budget in CPU core-hours and the ETA must not count it)."""
    recent = before[-PAUSE_WINDOW:]
    if len(recent) < 10:
        return seconds
    typical = statistics.median(recent)
    return typical if seconds > PAUSE_FACTOR * typical else seconds


def train_seconds(step_seconds: list[float]) -> tuple[float, float]:
    """``(training, paused)`` seconds of a run's steps (:func:`working_seconds` of each, in order)."""
    working = [working_seconds(x, step_seconds[:i]) for i, x in enumerate(step_seconds)]
    return float(sum(working)), float(sum(step_seconds) - sum(working))


class StepProgress(pl.Callback):
    """Prints a progress line every ``every`` steps and at the last one; also keeps the module's training clock
    (``module.clock["train_seconds"]``: wall time from one step's end to the next, making the views included,
    the learning curve's evaluation, which adds to ``module.clock["curve_seconds"]``, excluded, and a pause
    counted at the typical step's time (:func:`working_seconds`; the rest in ``module.clock["paused_seconds"]``)).
    ``module.step_seconds`` keeps every step's wall time as it was."""

    def __init__(self, label: str, total: int, *, every: int = 10, images_per_step: int, stream=None,
                 quiet: bool = False):
        self.label, self.total, self.every, self.images_per_step = label, total, every, images_per_step
        self.stream, self.quiet = stream or sys.stderr, quiet

    def _mark(self, module):
        self.mark, self.curve_mark = time.perf_counter(), module.clock["curve_seconds"]

    def on_train_start(self, trainer, module):
        self.start_step, self.start_seconds = trainer.global_step, module.clock["train_seconds"]
        self._mark(module)

    def on_train_batch_end(self, trainer, module, *_):
        seconds = (time.perf_counter() - self.mark) - (module.clock["curve_seconds"] - self.curve_mark)
        working = working_seconds(seconds, module.step_seconds)
        module.clock["train_seconds"] += working
        module.clock["paused_seconds"] = module.clock.get("paused_seconds", 0.0) + seconds - working
        module.step_seconds.append(seconds)
        self._mark(module)
        step = trainer.global_step
        if self.quiet or not trainer.is_global_zero or (step % self.every and step != self.total):
            return
        seconds = module.clock["train_seconds"] - self.start_seconds
        done = step - self.start_step
        rate = done * self.images_per_step / max(seconds, 1e-9)
        eta = timedelta(seconds=round((self.total - step) * seconds / max(done, 1)))
        loss = module.step_losses[-1] if module.step_losses else float("nan")
        print(f"{self.label}: step {step}/{self.total} ({100 * step / self.total:.0f}%)  loss {loss:.3f}  "
              f"{rate:.0f} img/s  ETA {eta}", file=self.stream, flush=True)
