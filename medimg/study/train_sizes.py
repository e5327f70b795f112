"""How many training images a dataset has (:func:`train_images`), for a plan's cost before any data is read:
MedMNIST files are read (their labels only); image folders here are counted, and a folder not here is sized from
its publication (:data:`medimg.data.registry.PUBLISHED_IMAGES`), both times the training fraction (0.7): estimates.
"""
from __future__ import annotations

from dataclasses import dataclass

from medimg.data.registry import get_spec
from medimg.data.splits import DEFAULT_RATIOS

FORWARD_SHARE = 1 / 3  # a forward pass, as a share of a training step's cost per image


@dataclass(frozen=True)
class TrainImages:
    """A dataset's training images: ``n`` (None: unknown), and whether it is an estimate."""

    n: int | None
    estimate: bool

    def __str__(self) -> str:
        return "unknown" if self.n is None else f"{'~' if self.estimate else ''}{self.n:,}"


def train_images(dataset: str) -> TrainImages:
    """How many training images ``dataset`` has: exact for a MedMNIST file here, else estimated (see module)."""
    from medimg.data.image_file import DICOM_SUFFIXES
    from medimg.data.image_folder import image_suffixes
    from medimg.data.medmnist_files import find_medmnist_file
    from medimg.paths import data_dir

    spec = get_spec(dataset)
    if spec.kind == "synthetic":
        return TrainImages(None, True)
    base = data_dir(must_exist=False)  # a plan is made before any data is here, too
    if spec.kind == "medmnist":
        import numpy as np

        path = find_medmnist_file(base, spec.location, 28) if base.is_dir() else None
        if path is not None:
            with np.load(path) as npz:
                return TrainImages(len(npz["train_labels"]), False)
        return TrainImages(None, True)
    root = base / (spec.location or spec.name) if spec.location else None
    if root is not None and root.is_dir():
        suffixes = image_suffixes() | set(DICOM_SUFFIXES)
        n = sum(1 for p in root.rglob("*") if p.suffix.lower() in suffixes and "mask" not in p.name)
        return TrainImages(round(n * DEFAULT_RATIOS[0]), True)
    published = spec.extra.get("published_images")
    return TrainImages(round(published * DEFAULT_RATIOS[0]) if published else None, True)
