"""What the pretraining tests share: CPU trainer settings and a tiny pretraining record."""
from __future__ import annotations

from medimg.ssl.config import SSLConfig
from medimg.training.trainer import TrainerSettings

CPU = TrainerSettings(progress=False, accelerator="cpu")


def tiny(datasets, **kwargs) -> SSLConfig:
    """resnet18 at 32 px, one epoch of four batches: seconds on two slow cores."""
    return SSLConfig(datasets=datasets, **{**dict(size=32, epochs=1, batch_size=8, max_images=32), **kwargs})
