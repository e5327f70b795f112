"""The whole data path in one call: open, decode once, split — what training and ``describe`` use."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from .cache import DecodedImages, load_images
from .sources import DatasetSource, open_dataset
from .splits import DEFAULT_NEAR_DUPLICATE_DISTANCE, DEFAULT_RATIOS, Split, make_split


@dataclass(frozen=True)
class DataConfig:
    """Everything that decides which pixels and labels a run sees (saved with every run)."""

    dataset: str  # a registered name or a folder path
    size: int = 64  # cached image size in pixels
    split_seed: int = 0
    split_ratios: tuple[float, float, float] = DEFAULT_RATIOS
    medmnist_size: int = 28  # which official MedMNIST file
    # how stored intensities beyond 8 bits become 8-bit pixels (see medimg.data.intensity); "auto" uses the
    # registered dataset's choice, else the bit depth (unsigned) or the dataset's range (signed, float)
    intensity: str = "auto"
    # images whose 256-bit difference hashes differ in at most this many bits stay in one split;
    # None groups exact duplicates only (how splits were made before near-duplicates were grouped)
    near_duplicate_distance: int | None = DEFAULT_NEAR_DUPLICATE_DISTANCE

    def __post_init__(self):
        from .intensity import parse
        from .splits import check_near_duplicate_distance

        parse(self.intensity)
        check_near_duplicate_distance(self.near_duplicate_distance)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PreparedData:
    config: DataConfig
    source: DatasetSource
    decoded: DecodedImages
    split: Split

    def part(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images, labels, positions) of one split, in record order."""
        idx = self.split.indices(split, self.decoded.ids)
        return self.decoded.images[idx], self.decoded.labels[idx], idx

    @property
    def classes(self) -> tuple[str, ...]:
        return self.source.classes


def prepare(config: DataConfig, *, data_dir: str | os.PathLike | None = None, progress: bool = True) -> PreparedData:
    source = open_dataset(config.dataset, data_dir_override=data_dir, medmnist_size=config.medmnist_size)
    decoded = load_images(source, config.size, intensity=config.intensity, progress=progress)
    split = make_split(source, decoded, seed=config.split_seed, ratios=config.split_ratios,
                       near_duplicate_distance=config.near_duplicate_distance)
    return PreparedData(config=config, source=source, decoded=decoded, split=split)
