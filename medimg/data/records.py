"""The records a dataset is opened into: one image (:class:`ImageRecord`) and one dataset (:class:`DatasetSource`).

Every reader (image folders, MedMNIST npz files, generated sets) returns these; nothing here reads a file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medimg.data.registry import DatasetSpec

SPLITS = ("train", "val", "test")



@dataclass(frozen=True)
class ImageRecord:
    """One image: ``id`` is stable across runs (a relative path, or ``split/index`` in an npz)."""

    id: str
    label: int
    path: Path | None = None
    group: str | None = None  # images sharing a group (patient, lesion) stay in one split
    duplicate_of: str | None = None  # an exact duplicate declared in labels.csv
    official_split: str | None = None


@dataclass(frozen=True)
class DatasetSource:
    """A dataset opened for reading: its spec, where it lives, its classes and its images."""

    spec: DatasetSpec
    root: Path  # the folder, or the npz file
    classes: tuple[str, ...]
    records: tuple[ImageRecord, ...]
    fingerprint: str  # of the files' names and bytes (medimg.data.fingerprint): the same on every machine
    source_size: int | None = None  # pixel size of an npz or generated set
    not_images: tuple[str, ...] = ()  # files under the image folders that Pillow cannot open (relative paths)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def has_official_split(self) -> bool:
        return all(r.official_split for r in self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)
