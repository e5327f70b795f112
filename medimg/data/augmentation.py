"""The fine-tuning augmentations as a record: the settings a run is named by, without importing torch (the pipeline
that applies them is :mod:`medimg.data.transforms`)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Augmentation:
    """The paper's augmentations — rotation, flips, zoom, blur — with every parameter explicit."""

    rotation_degrees: float = 15.0
    horizontal_flip_p: float = 0.5
    vertical_flip_p: float = 0.5
    zoom: tuple[float, float] = (0.9, 1.1)  # scale factors; >1 zooms in
    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.1, 1.0)  # in pixels of the cached image

    def build(self):
        """The torchvision ``v2.Compose`` of these augmentations, for ``(C, H, W)`` float tensors."""
        from torchvision.transforms import InterpolationMode, v2

        kernel = 2 * math.ceil(3 * self.blur_sigma[1]) + 1
        return v2.Compose([
            v2.RandomAffine(degrees=self.rotation_degrees, scale=self.zoom, interpolation=InterpolationMode.BILINEAR),
            v2.RandomHorizontalFlip(self.horizontal_flip_p),
            v2.RandomVerticalFlip(self.vertical_flip_p),
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=self.blur_sigma)], p=self.blur_p),
        ])

    def to_dict(self) -> dict:
        return asdict(self)
