"""Which images each optimiser step of a pretraining run sees: a function of (seed, step), so a run resumes anywhere.

Step ``s`` takes batch ``s % per_pass`` of pass ``s // per_pass`` over the pool, in the pass's order from
:class:`medimg.data.EpochSampler` (the order fine-tuning uses, seeded by ``(seed, pass)``; in a DDP run each
process takes its own shard of it). A pass drops its last partial batch (a batch of one image has no
negatives and breaks batch norm), unless the pool is smaller than a batch, when a step is the whole pool.

Lightning's own restart logic counts epochs and batches within them, and a state saved at the end of an
epoch resumes one batch into the *next* epoch (Lightning 2.6); here the run is one Lightning epoch of
``steps`` batches, the state is saved after any step, and :class:`StepBatches` starts at the saved step.
"""
from __future__ import annotations

from torch.utils.data import Sampler

from medimg.data import EpochSampler


class StepBatches(Sampler):
    """Batches of ``(position, pass)`` keys for steps ``start .. steps - 1`` (a batch sampler for ``DataLoader``).

    ``n`` images, ``batch_size`` per process; the whole run is ``steps`` steps, or else ``passes`` passes over
    this process's shard of the pool. ``start`` is the first step to yield (set it from a resumed state before
    the loader is iterated). ``len()`` is ``steps`` whatever ``start`` is: Lightning sizes the one epoch by it
    and stops at ``max_steps``. Raises ``ValueError`` for an empty pool, a batch size below 2, or neither
    ``steps`` nor ``passes``.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, steps: int | None = None, passes: int | None = None,
                 start: int = 0, rank: int | None = None, world_size: int | None = None):
        if n < 2 or batch_size < 2:
            raise ValueError(f"a contrastive batch needs at least 2 images (pool {n}, batch {batch_size})")
        if not (steps or passes):
            raise ValueError("give the run's length: steps or passes")
        self.order = EpochSampler(n, seed=seed, rank=rank, world_size=world_size)
        self.batch_size, self.start = batch_size, start
        self.steps = steps or passes * self.per_pass

    @property
    def per_pass(self) -> int:
        """Steps in one pass over this process's shard of the pool."""
        return max(1, len(self.order) // self.batch_size)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        per_pass, size = self.per_pass, min(self.batch_size, len(self.order))
        keys = None
        for step in range(self.start, self.steps):
            epoch, b = divmod(step, per_pass)
            if keys is None or keys[0][1] != epoch:
                self.order.set_epoch(epoch)
                keys = list(self.order)
            yield keys[b * size:(b + 1) * size]


class PoolBatches:
    """The pooled uint8 images ``(N, H, W, C)`` fetched a batch at a time: ``dataset[keys]`` for a list of
    ``(position, pass)`` keys from :class:`StepBatches` is one ``(B, H, W, C)`` uint8 tensor (no per-image work:
    the views are made from it as tensors, :mod:`medimg.ssl.tensor_views`). Use with ``collate_fn=as_batch``."""

    def __init__(self, images):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, keys):
        import numpy as np
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.images[[k[0] for k in keys]]))


def as_batch(batch):
    """``collate_fn`` for :class:`PoolBatches`: the fetched tensor is already the batch."""
    return batch
