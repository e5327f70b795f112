"""The learning curve written during pretraining: a Lightning callback that probes the backbone every few steps.

Its points are the rows of :mod:`medimg.ssl.curve` (which reads them back without Lightning): the callback lives
here so that reading a curve, a check or a budget never imports Lightning.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl

from medimg.atomic import write_text
from medimg.probe.batchnorm import checkpoint_init
from medimg.ssl.curve import COLUMNS, Prober, read_curve_file


class LearningCurve(pl.Callback):
    """Writes the curve's points during training (only on the first process of a DDP run)."""

    def __init__(self, path: Path, prober: Prober, *, every: int, batch_size: int, references=None):
        self.path, self.prober, self.every, self.batch_size = Path(path), prober, every, batch_size
        self.references = references  # callable giving the reference rows, run once before the first point

    def _write(self, rows: list[dict]) -> None:
        write_text(self.path, pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(index=False))

    def _point(self, trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        start = time.perf_counter()
        step = trainer.global_step
        old = read_curve_file(self.path)
        rows = [r for r in old if not (r["kind"] == "checkpoint" and r["step"] >= step)]
        if self.references and not any(r["kind"] != "checkpoint" for r in rows):
            rows += self.references()
        world = trainer.world_size
        rows += self.prober.rows(module.backbone, init=checkpoint_init(module.config), kind="checkpoint", step=step,
                                 pairs=step * self.batch_size * world,
                                 train_seconds=round(module.clock["train_seconds"], 1))
        self._write(rows)
        module.clock["curve_seconds"] += time.perf_counter() - start

    def on_train_start(self, trainer, module):
        rows = read_curve_file(self.path)
        if self.references and trainer.is_global_zero and any(r["kind"] != "checkpoint" for r in rows):
            self.references(known=rows)  # a resumed curve's references fill a fresh machine's cache
        done = {r["step"] for r in rows if r["kind"] == "checkpoint"}
        if trainer.global_step not in done:
            self._point(trainer, module)

    def on_train_batch_end(self, trainer, module, *_):
        if trainer.global_step % self.every == 0:
            self._point(trainer, module)

    def on_train_end(self, trainer, module):
        done = {r["step"] for r in read_curve_file(self.path) if r["kind"] == "checkpoint"}
        if trainer.global_step not in done:
            self._point(trainer, module)
        if self.prober.pool_images is not None and trainer.is_global_zero:  # the last point under the alternative
            other = "pool" if checkpoint_init(module.config) == "checkpoint-frozen" else "carried"
            rows = [r for r in read_curve_file(self.path)
                    if not (r["kind"] == "checkpoint" and r["step"] == trainer.global_step and r.get("bn") == other)]
            rows += self.prober.rows(module.backbone, init=checkpoint_init(module.config), rule=other,
                                     kind="checkpoint", step=trainer.global_step,
                                     pairs=trainer.global_step * self.batch_size * trainer.world_size,
                                     train_seconds=round(module.clock["train_seconds"], 1))
            self._write(rows)
