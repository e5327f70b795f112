"""How and where Lightning trains (:class:`TrainerSettings`): one CPU, one GPU, or many GPUs and nodes with DDP.

Settings only, shared by fine-tuning and self-supervised pretraining; a run's numerics (the resolved precision and
deterministic kernels) are part of its identity (the fine-tuning stage's ``numerics``). :func:`quiet_lightning`
keeps Lightning's start-up lines out of a run's output.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

from medimg.record_options import setting


@dataclass(frozen=True)
class TrainerSettings:
    """How and where Lightning trains: one CPU, one GPU, or many GPUs and nodes with DDP — settings only."""

    accelerator: str = setting("auto", "cpu, gpu or auto")
    devices: int | str = setting(1, "devices per node (a number, or auto)")
    num_nodes: int = setting(1, "machines (DDP)")
    strategy: str = setting("auto", "e.g. ddp for several GPUs or nodes")
    precision: str = setting("auto", "32-true, bf16-mixed, 16-mixed, or auto: bf16 (or 16) autocast on a GPU, 32-true "
                                     "on a CPU")
    deterministic: bool = setting(True, "deterministic kernels (--no-deterministic is faster on GPU)")
    channels_last: bool = setting(True, "channels-last memory layout")
    num_workers: int = setting(0, "data-loader worker processes (data are in memory; workers only pay off with "
                                  "heavy augmentation)")
    progress: bool = setting(True, "progress bars")

    def resolved_precision(self) -> str:
        if self.precision != "auto":
            return self.precision
        if self._on_gpu():
            import torch

            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        # on a CPU, never: some report avx512_bf16 yet ran bf16 slower, with other results (issue #12)
        return "32-true"

    def _on_gpu(self) -> bool:
        import torch

        return self.accelerator in ("gpu", "cuda") or (self.accelerator == "auto" and torch.cuda.is_available())

    def build(self, *, max_epochs: int, callbacks=(), logger=False, default_root_dir=None, **kwargs):
        import warnings

        import pytorch_lightning as pl

        # raised inside pytorch-lightning 2.6 by torch 2.14, once per fit; nothing a user can act on (a chapter
        # that trains in its kernel would show it, and the command line too)
        warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")

        if self.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        return pl.Trainer(
            accelerator=self.accelerator, devices=self.devices, num_nodes=self.num_nodes, strategy=self.strategy,
            precision=self.resolved_precision(), deterministic=self.deterministic, max_epochs=max_epochs,
            callbacks=list(callbacks), logger=logger, default_root_dir=default_root_dir,
            enable_progress_bar=self.progress, enable_model_summary=False, num_sanity_val_steps=0,
            # medimg's EpochSampler shards the training images itself; validation is whole on every process
            use_distributed_sampler=False, **kwargs)

    def to_dict(self) -> dict:
        return dict(asdict(self), resolved_precision=self.resolved_precision())


def quiet_lightning() -> None:
    """Lightning's informational lines (GPU available, seed set, ...) below warnings: a run shows its own progress."""
    for name in ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda",
                 "lightning_fabric.utilities.seed", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
