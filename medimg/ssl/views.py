"""The two views SimCLR contrasts: lightly's ``SimCLRTransform`` with settings for small medical images.

Every setting is explicit and recorded in the checkpoint (:func:`view_settings`), and each item's
randomness comes from ``(seed, epoch, position)``, so a resumed or distributed run draws the views an
uninterrupted single-process run would.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from medimg.data.transforms import mix_seed


def view_settings(size: int, *, colour: bool, mean, std, min_scale: float = 0.4, intensity_jitter: float = 0.4) -> dict:
    """``SimCLRTransform``'s arguments for small medical images, all explicit.

    Against SimCLR's ImageNet defaults: crops keep at least ``min_scale`` of the image (40% by default: 8% of
    a 32-64 px image leaves too little anatomy), brightness and contrast jitter is gentler
    (``intensity_jitter``, 0.4 by default; 0 switches it off, since intensities carry diagnosis in grey
    images), saturation 0.2 and hue 0.02 on colour (stain and pigment colour matter), none on grey;
    grey-scaling is rare (colour) or off (grey), vertical flips and rotations of up to 15 degrees are on,
    as in the fine-tuning augmentation (lightly's default rotation is by 90 degrees, which no upright
    X-ray or CT slice shows), and blur scales with the image: sigma up to 1 px at 64 px, SimCLR's 2 px
    from 128 px. ``normalize`` is the backbone's own mean and std, one value per model channel: lightly's
    default (ImageNet, three values) silently broadcasts a grey view to three channels.
    """
    sat, hue = (0.2, 0.02) if colour else (0.0, 0.0)
    jitter = bool(intensity_jitter or sat or hue)
    return dict(
        input_size=size, min_scale=float(min_scale),
        cj_prob=0.8 if jitter else 0.0, cj_strength=1.0, cj_bright=float(intensity_jitter),
        cj_contrast=float(intensity_jitter), cj_sat=sat, cj_hue=hue,
        random_gray_scale=0.1 if colour else 0.0,
        gaussian_blur=0.5, sigmas=(0.1, min(2.0, size / 64)),
        hf_prob=0.5, vf_prob=0.5, rr_prob=0.5, rr_degrees=15.0,
        normalize=dict(mean=[float(m) for m in mean], std=[float(s) for s in std]),
    )


def simclr_transform(settings: dict):
    """lightly's ``SimCLRTransform(**settings)``: a PIL image in, a list of two normalised tensors out."""
    from lightly.transforms import SimCLRTransform

    return SimCLRTransform(**settings)


class SimCLRViews(Dataset):
    """Two augmented views of each pooled uint8 image (N, H, W, 1|3), fed to lightly as PIL images.

    Each item's randomness comes from (seed, epoch, position), as in
    :class:`~medimg.data.ImageDataset`: the same views whatever the workers or processes.
    lightly's blur and rotation draw from numpy's global generator, torchvision's from torch's,
    so both are seeded per item.
    """

    def __init__(self, images: np.ndarray, transform, *, seed: int):
        self.images, self.transform, self.seed = images, transform, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key):
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        a = self.images[i]
        image = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)  # mode "L" or "RGB"
        with seeded(mix_seed(self.seed, epoch, i)):
            view0, view1 = self.transform(image)
        return view0, view1


@contextmanager
def seeded(seed: int):
    """torch's and numpy's global generators seeded with ``seed`` inside the block, restored after it."""
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(state)
