"""The unlabelled images a self-supervised network learns from: the training splits of a lineage-safe pool.

A pool is one or more datasets; only their training splits are pooled (never a validation or test
image). Before anything is decoded, every pooled dataset is checked against each dataset that will be
fine-tuned from the checkpoint (its *target*): a dataset that shares source images with a target
(BreastMNIST is made from BUSI) is refused, since its training split may hold that target's test
images. A target's own training split may be pooled: it is split with the same settings as the
fine-tuning, so its validation and test images stay out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medimg.ssl.config import SSLConfig
from medimg.data import DataConfig, LineageCheck, check_lineage, load_images, open_dataset, prepare
from medimg.data.records import DatasetSource
from medimg.errors import MedimgError


@dataclass(frozen=True)
class Pool:
    """The pooled training images, at the model's channel count, and where they came from."""

    images: np.ndarray  # (N, size, size, in_chans) uint8
    sources: tuple[DatasetSource, ...]
    hashes: dict[str, set[str]]  # per dataset, content hashes of its pooled images (file bytes for folders)
    in_chans: int
    grey_as: str | None  # how grey images were fed; None for an all-colour pool
    colour: bool  # any colour dataset in the pool
    record: tuple[dict, ...]  # per dataset: name, fingerprint, channels, train images, pooled images


def data_config(config: SSLConfig, dataset: str) -> DataConfig:
    """The data settings ``config`` reads ``dataset`` with: the same split as fine-tuning at these settings."""
    return DataConfig(dataset, size=config.size, split_seed=config.split_seed, medmnist_size=config.medmnist_size,
                      intensity=config.intensity, near_duplicate_distance=config.near_duplicate_distance)


def pool_images(config: SSLConfig, *, progress: bool = False) -> Pool:
    """Decode every dataset of ``config``, keep its train split, and pool them (a seeded subsample of at most
    ``config.max_images``)."""
    parts = []
    for name in config.datasets:
        data = prepare(data_config(config, name), progress=progress)
        images, _, idx = data.part("train")
        parts.append((data, images, np.array(data.decoded.sha256)[idx]))
    channels = {d.source.name: d.decoded.channels for d, _, _ in parts}
    in_chans, grey_as = pool_channels(channels, config.grey_as)
    owner = np.concatenate([np.full(len(x), k) for k, (_, x, _) in enumerate(parts)])
    keep = np.arange(len(owner))
    if config.max_images is not None and config.max_images < len(keep):
        keep = np.sort(np.random.default_rng(config.seed).choice(len(keep), config.max_images, replace=False))
    images = np.concatenate([x if x.shape[-1] == in_chans else np.repeat(x, in_chans, axis=-1) for _, x, _ in parts])
    hashes = np.concatenate([h for _, _, h in parts])[keep]
    owner = owner[keep]
    record = tuple(dict(name=d.source.name, requested=d.config.dataset, fingerprint=d.source.fingerprint,
                        channels=d.decoded.channels, train_images=len(x), pooled_images=int((owner == k).sum()),
                        split=d.split.to_dict())
                   for k, (d, x, _) in enumerate(parts))
    return Pool(images=images[keep], sources=tuple(d.source for d, _, _ in parts),
                hashes={d.source.name: set(hashes[owner == k]) for k, (d, _, _) in enumerate(parts)},
                in_chans=in_chans, grey_as=grey_as, colour=any(c == 3 for c in channels.values()), record=record)


def pool_channels(channels: dict[str, int], grey_as: str | None) -> tuple[int, str | None]:
    """The model's input channels and the effective grey_as for datasets of these channel counts."""
    grey = [name for name, c in channels.items() if c == 1]
    colour = [name for name, c in channels.items() if c == 3]
    if not grey:
        return 3, None
    if colour and grey_as != "replicate":
        raise MedimgError(f"pooling grey {', '.join(grey)} with colour {', '.join(colour)} needs grey images "
                          f"copied to 3 channels: pass --grey-as replicate (grey_as='replicate')")
    if grey_as is None:
        raise MedimgError(f"{', '.join(grey)} {'is' if len(grey) == 1 else 'are'} grey: pass --grey-as single "
                          f"(a 1-channel model, in_chans=1) or --grey-as replicate (copied to 3 channels)")
    return (1 if grey_as == "single" else 3), grey_as


_channels = pool_channels  # the name tests and older code import


def check_target(config: SSLConfig, target: DatasetSource, sources, hashes: dict | None = None) -> LineageCheck:
    """Check each pooled dataset against ``target`` (not against each other); one record for all.

    The target's own training split is allowed (it is split as fine-tuning splits it, so its validation and
    test images stay out); any other pooled dataset sharing source images with it (declared lineage, or identical files
    between folders) is refused unless ``config.allow_overlap``.
    """
    overlaps = []
    for source in sources:
        if source.name == target.name:  # its own training split
            continue
        check = check_lineage([target, source], allow_overlap=config.allow_overlap, hashes=hashes,
                              purpose=f"SSL pretraining on {source.name} before fine-tuning on {target.name}")
        overlaps += check.overlaps
    return LineageCheck(datasets=(target.name, *(s.name for s in sources)), overlaps=tuple(overlaps),
                        overridden=bool(overlaps))


def check_targets(config: SSLConfig, targets: tuple[str, ...], *, progress: bool = False, pool: Pool | None = None
                  ) -> dict[str, dict]:
    """Every target of ``targets`` checked against ``config``'s datasets: by declared lineage before anything is
    decoded (``pool`` None), and, once ``pool`` is decoded, by content where both are folders. Returns each
    target's record: datasets, overlaps, overridden, own_training_split."""
    out = {}
    sources = [open_dataset(d, medmnist_size=config.medmnist_size) for d in config.datasets]
    for name in targets:
        target = open_dataset(name, medmnist_size=config.medmnist_size)
        hashes = None
        if pool is not None and target.spec.kind == "folder" and any(
                s.spec.kind == "folder" and s.name != target.name for s in pool.sources):
            # folders can hold copies of each other's files: compare what is pooled with the whole target
            hashes = {target.name: set(load_images(target, config.size, intensity=config.intensity,
                                                   progress=progress).sha256), **pool.hashes}
        check = check_target(config, target, pool.sources if pool is not None else sources, hashes)
        own = [s.name for s in sources if s.name == target.name]
        out[name] = dict(check.to_dict(), own_training_split=own)
    return out
