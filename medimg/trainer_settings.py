"""How and where Lightning trains: one CPU, one GPU, or many GPUs and nodes with DDP — settings only."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class TrainerSettings:
    accelerator: str = "auto"  # "cpu", "gpu", "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" for several GPUs or nodes
    precision: str = "auto"  # "auto": bf16 autocast where the hardware has it, else 32
    deterministic: bool = True
    channels_last: bool = True
    num_workers: int = 0  # data are in memory; workers only pay off with heavy augmentation
    progress: bool = True

    def resolved_precision(self) -> str:
        if self.precision != "auto":
            return self.precision
        if self._on_gpu():
            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"

    def _on_gpu(self) -> bool:
        return self.accelerator in ("gpu", "cuda") or (self.accelerator == "auto" and torch.cuda.is_available())

    def build(self, *, max_epochs: int, callbacks=(), logger=False, default_root_dir=None, **kwargs):
        import pytorch_lightning as pl

        if self.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        return pl.Trainer(
            accelerator=self.accelerator, devices=self.devices, num_nodes=self.num_nodes, strategy=self.strategy,
            precision=self.resolved_precision(), deterministic=self.deterministic, max_epochs=max_epochs,
            callbacks=list(callbacks), logger=logger, default_root_dir=default_root_dir,
            enable_progress_bar=self.progress, enable_model_summary=False, num_sanity_val_steps=0, **kwargs)

    def to_dict(self) -> dict:
        return dict(asdict(self), resolved_precision=self.resolved_precision())


def cpu_has_fast_bf16() -> bool:
    """bf16 matmuls run natively (AVX512-BF16 or AMX) rather than emulated, where autocast pays off."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))
