"""SimCLR's views (lightly's transform, one image at a time): they differ, keep channels, repeat per seed, and grey
ones get no colour augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medimg.ssl.views import SimCLRViews, simclr_transform, view_settings
from medimg.ssl.config import SSLConfig

@pytest.mark.parametrize("channels", [1, 3])
def test_views_differ_keep_channels_and_repeat_per_seed(channels):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, channels), dtype=np.uint8)
    mean, std = ([0.45], [0.23]) if channels == 1 else ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    views = SimCLRViews(images, simclr_transform(view_settings(32, colour=channels == 3, mean=mean, std=std)), seed=0)
    v0, v1 = views[0, 0]
    assert v0.shape == v1.shape == (channels, 32, 32)  # lightly's default normalize would make grey 3-channel
    assert not torch.equal(v0, v1)
    assert all(torch.equal(a, b) for a, b in zip(views[0, 0], views[0, 0]))  # seeded by (seed, epoch, position)
    assert not torch.equal(views[0, 1][0], v0)  # another epoch, other views


def test_grey_settings_have_no_colour_augmentation():
    grey = view_settings(64, colour=False, mean=[0.45], std=[0.23])
    assert grey["cj_sat"] == grey["cj_hue"] == grey["random_gray_scale"] == 0
    assert grey["normalize"] == dict(mean=[0.45], std=[0.23])
    assert view_settings(64, colour=True, mean=[0.5] * 3, std=[0.5] * 3)["cj_sat"] > 0
