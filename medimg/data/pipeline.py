"""The whole data path in one call: open, decode once, split — what training and ``describe`` use."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from medimg.record_options import setting
from medimg.data.cache import DecodedImages, load_images
from medimg.data.intensity import CHOICES as INTENSITY_CHOICES
from medimg.data.intensity import parse as parse_intensity
from medimg.data.records import DatasetSource
from medimg.data.registry import MEDMNIST_SIZES
from medimg.data.sources import open_dataset
from medimg.data.splits import DEFAULT_NEAR_DUPLICATE_DISTANCE, DEFAULT_RATIOS, Split, check_near_duplicate_distance, make_split

INTENSITY_HELP = (f"how images stored beyond 8 bits become pixels, one rule for the whole dataset: "
                  f"{', '.join(INTENSITY_CHOICES)} (auto: the registered dataset's choice, else the bit depth for "
                  f"unsigned images and the dataset's range for signed or float ones)")
NEAR_DUPLICATE_HELP = ("keep images whose 256-bit difference hashes (imagehash dHash at 64 px) differ in at most "
                       "this many bits in one split (none: exact duplicates only, as splits were made before)")


@dataclass(frozen=True)
class DataConfig:
    """Everything that decides which pixels and labels a run sees (saved with every run)."""

    dataset: str = setting(help="a registered name (medimg datasets) or the path of an image folder")
    size: int = setting(64, "decode and cache the images at this size in pixels")
    split_seed: int = setting(0, "seed of the generated split")
    split_ratios: tuple[float, float, float] = DEFAULT_RATIOS
    medmnist_size: int = setting(28, "which official MedMNIST file to read", choices=MEDMNIST_SIZES)
    intensity: str = setting("auto", INTENSITY_HELP)  # medimg.data.intensity
    near_duplicate_distance: int | None = setting(DEFAULT_NEAR_DUPLICATE_DISTANCE, NEAR_DUPLICATE_HELP)  # .splits

    def __post_init__(self):
        parse_intensity(self.intensity)
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
