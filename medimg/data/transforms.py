"""From cached uint8 arrays to model inputs: augmentation, preprocessing and channels.

Preprocessing (size, mean, std, interpolation) comes from a model's timm ``pretrained_cfg``,
never from constants here. How grey images meet a model is an explicit choice, ``grey_as``:
``"single"`` feeds a 1-channel model (``in_chans=1``), ``"replicate"`` copies the grey
channel three times for a 3-channel model. Nothing converts channels silently.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from torchvision.transforms import InterpolationMode, v2

from medimg.data.augmentation import Augmentation  # noqa: F401 (re-exported)
from medimg.errors import MedimgError

GreyAs = Literal["single", "replicate"]


@dataclass(frozen=True)
class Preprocess:
    """Resize, scale to [0, 1], match the model's channels, normalise — the evaluation transform."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int
    grey_as: str | None  # how grey images were fed, or None for colour
    interpolation: str = "bicubic"

    @classmethod
    def from_pretrained_cfg(cls, cfg: dict, *, image_channels: int, grey_as: GreyAs | None,
                            size: int | None = None) -> "Preprocess":
        """Build from a timm ``pretrained_cfg`` (``model.pretrained_cfg``).

        ``size`` overrides the cfg's input size (small images train at small sizes); mean and
        std always come from the cfg, averaged to one channel for ``grey_as="single"``.
        """
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
        size = size or int(cfg["input_size"][-1])
        interpolation = cfg.get("interpolation", "bicubic")
        if image_channels == 3:
            if grey_as == "single":
                raise MedimgError("colour images cannot feed a 1-channel model: use grey_as='replicate' or "
                                  "a 3-channel model")
            return cls(size, mean, std, 3, None, interpolation)
        if image_channels != 1:
            raise MedimgError(f"images with {image_channels} channels are not supported: use grey (1) or colour (3)")
        if grey_as == "single":
            return cls(size, (float(np.mean(mean)),), (float(np.mean(std)),), 1, "single", interpolation)
        if grey_as == "replicate":
            return cls(size, mean, std, 3, "replicate", interpolation)
        raise MedimgError("grey images need an explicit grey_as: 'single' (a 1-channel model, in_chans=1) "
                          "or 'replicate' (copied to 3 channels)")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (C, H, W) -> float (in_chans, size, size)."""
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            mode = InterpolationMode(self.interpolation) if self.interpolation in ("bilinear", "bicubic", "nearest") \
                else InterpolationMode.BICUBIC
            x = v2.functional.resize(x, [self.size, self.size], interpolation=mode, antialias=True)
        x = x.float().div_(255)
        if x.shape[0] == 1 and self.in_chans == 3:
            x = x.expand(3, -1, -1)
        mean = torch.tensor(self.mean, dtype=x.dtype).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(-1, 1, 1)
        return (x - mean) / std

    def to_dict(self) -> dict:
        return asdict(self)


class ImageDataset(torch.utils.data.Dataset):
    """Cached uint8 images as model inputs.

    ``indices`` select (and may repeat) images; positions flagged in ``extra`` (over-sampled
    copies) are always augmented, with ``augment`` or, if that is off, ``extra_augment``.

    With a ``seed``, each item's augmentation is drawn from its own generator seeded by
    (seed, epoch, position): the same epoch gives the same pixels whether the run was resumed,
    split across workers or processes, or not. :class:`EpochSampler` passes the epoch.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, preprocess: Preprocess, *,
                 indices: np.ndarray | None = None, augment: Augmentation | None = None,
                 extra: np.ndarray | None = None, extra_augment: Augmentation | None = Augmentation(),
                 seed: int | None = None):
        self.images, self.labels, self.preprocess = images, np.asarray(labels), preprocess
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices)
        self.extra = np.zeros(len(self.indices), bool) if extra is None else np.asarray(extra, bool)
        self.seed = seed
        self._augment = augment.build() if augment else None
        self._extra_augment = (augment or extra_augment).build() if self.extra.any() else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        j = int(self.indices[i])
        x = torch.from_numpy(np.array(self.images[j], copy=True)).permute(2, 0, 1)
        transform = self._extra_augment if self.extra[i] else self._augment
        if transform is not None:
            if self.seed is None:
                x = transform(x)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(mix_seed(self.seed, epoch, i))
                    x = transform(x)
        return self.preprocess(x), int(self.labels[j])


class EpochSampler(torch.utils.data.Sampler):
    """Shuffles by (seed, epoch) and yields ``(position, epoch)`` so items can seed themselves.

    Lightning calls ``set_epoch`` before each epoch, so a resumed run sees exactly the batches an
    uninterrupted one would. In a distributed run (DDP: a process group of ``world`` processes, or ``rank``
    and ``world_size`` given) each process takes every ``world``-th position of the same epoch order, from its
    rank: the shards are disjoint, no image is repeated, and each has ``n // world`` images so that every
    process runs the same number of steps (the last ``n % world`` of the epoch's order, fewer than ``world``,
    wait for another epoch's order, as a single process's last partial batch does). The Trainer must then not
    wrap it in a ``DistributedSampler`` (``use_distributed_sampler=False``, as :meth:`TrainerSettings.build` sets).
    """

    def __init__(self, n: int, *, seed: int, shuffle: bool = True, rank: int | None = None,
                 world_size: int | None = None):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shard(self) -> tuple[int, int]:
        if self.world_size is not None:
            return self.rank or 0, self.world_size
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # the running DDP process group
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        _, world = self._shard()
        return self.n // world

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, -1))) \
            if self.shuffle else torch.arange(self.n)
        rank, world = self._shard()
        if world > 1:
            order = order[: self.n - self.n % world][rank::world]
        return iter([(int(i), self.epoch) for i in order])


def mix_seed(*numbers: int) -> int:
    """A 63-bit seed from several integers (stable across runs and platforms)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(repr(numbers).encode()).digest()[:8], "little") >> 1
