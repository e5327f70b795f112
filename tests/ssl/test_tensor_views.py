"""The views made as batched tensor operations (medimg.ssl.tensor_views): seeded by (seed, step, position), right in
shape, range and channels, and each part doing what it says on known images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medimg.ssl.tensor_views import BatchViews
from medimg.ssl.views import view_settings

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def images(n=6, size=32, channels=3, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8))


def off(settings: dict, **on) -> dict:
    """Every random part switched off, then ``on`` set."""
    return {**settings, "min_scale": 1.0, "rr_prob": 0.0, "hf_prob": 0.0, "vf_prob": 0.0, "cj_prob": 0.0,
            "random_gray_scale": 0.0, "gaussian_blur": 0.0, **on}


@pytest.mark.parametrize("colour", [True, False])
def test_views_are_a_function_of_seed_step_and_position(colour):
    s = view_settings(32, colour=colour, mean=MEAN, std=STD, intensity_jitter=0.4)
    x = images(channels=3)
    a0, a1 = BatchViews(s, seed=1)(x, step=7)
    b0, b1 = BatchViews(s, seed=1)(x, step=7)
    assert torch.equal(a0, b0) and torch.equal(a1, b1) and a0.shape == (6, 3, 32, 32) and a0.dtype == torch.float32
    assert not torch.equal(a0, a1)  # two views of one image differ
    assert not torch.equal(BatchViews(s, seed=1)(x, step=8)[0], a0)  # another step, other views
    assert not torch.equal(BatchViews(s, seed=2)(x, step=7)[0], a0)  # another seed
    assert not torch.equal(BatchViews(s, seed=1)(x, step=7, rank=1)[0], a0)  # another process's shard
    low, high = (0 - 0.5) / 0.25, (1 - 0.5) / 0.25
    assert a0.min() >= low - 1e-5 and a0.max() <= high + 1e-5


def test_nothing_random_is_the_image_itself_normalised():
    x = images()
    v0, v1 = BatchViews(off(view_settings(32, colour=True, mean=MEAN, std=STD)), seed=0)(x, step=0)
    expected = (x.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    assert torch.allclose(v0, expected, atol=1e-4) and torch.allclose(v1, expected, atol=1e-4)


def test_flips_mirror_the_image_exactly():
    x = images()
    v, _ = BatchViews(off(view_settings(32, colour=True, mean=[0] * 3, std=[1] * 3), hf_prob=1.0), seed=0)(x, step=0)
    assert torch.allclose(v, (x.permute(0, 3, 1, 2).float() / 255).flip(-1), atol=1e-4)
    v, _ = BatchViews(off(view_settings(32, colour=True, mean=[0] * 3, std=[1] * 3), vf_prob=1.0), seed=0)(x, step=0)
    assert torch.allclose(v, (x.permute(0, 3, 1, 2).float() / 255).flip(-2), atol=1e-4)


def test_a_crop_keeps_at_least_min_scale_of_a_marked_image():
    """An image whose left half is white: a crop of at least half its area shows some of both halves."""
    x = torch.zeros(64, 32, 32, 3, dtype=torch.uint8)
    x[:, :, :16] = 255
    s = off(view_settings(32, colour=True, mean=[0] * 3, std=[1] * 3), min_scale=0.5)
    v, _ = BatchViews(s, seed=0)(x, step=0)
    white = v.mean((1, 2, 3))
    assert white.std() > 0.05  # crops differ
    assert (white > 0).all() and (white < 1).all()  # none falls wholly inside one half


def test_grey_copies_stay_grey_and_colour_jitter_keeps_grey_grey():
    grey = images(channels=1).expand(-1, -1, -1, 3).contiguous()
    s = view_settings(32, colour=False, mean=MEAN, std=STD, intensity_jitter=0.4)
    v, _ = BatchViews(s, seed=0)(grey, step=3)
    assert torch.equal(v[:, 0], v[:, 1]) and torch.equal(v[:, 0], v[:, 2])
    # colour settings on a grey image: saturation and hue leave it grey (up to rounding)
    c, _ = BatchViews(view_settings(32, colour=True, mean=MEAN, std=STD), seed=0)(grey, step=3)
    assert torch.allclose(c[:, 0], c[:, 1], atol=1e-4) and torch.allclose(c[:, 1], c[:, 2], atol=1e-4)


def test_one_channel_images_give_one_channel_views():
    s = view_settings(32, colour=False, mean=[0.5], std=[0.25], intensity_jitter=0.4)
    v0, v1 = BatchViews(s, seed=0)(images(channels=1), step=0)
    assert v0.shape == v1.shape == (6, 1, 32, 32)


def test_blur_smooths_and_grey_scaling_equals_luma():
    x = images()
    s = off(view_settings(32, colour=True, mean=[0] * 3, std=[1] * 3), gaussian_blur=1.0, sigmas=(1.0, 1.0))
    v, _ = BatchViews(s, seed=0)(x, step=0)
    raw = x.permute(0, 3, 1, 2).float() / 255
    assert v.diff(dim=-1).abs().mean() < 0.5 * raw.diff(dim=-1).abs().mean()
    assert torch.allclose(v.mean((2, 3)), raw.mean((2, 3)), atol=0.02)  # blur keeps the mean
    s = off(view_settings(32, colour=True, mean=[0] * 3, std=[1] * 3), random_gray_scale=1.0)
    v, _ = BatchViews(s, seed=0)(x, step=0)
    luma = (raw * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    assert torch.allclose(v[:, 0], luma, atol=1e-4) and torch.equal(v[:, 0], v[:, 2])


def test_brightness_and_contrast_factors_match_torchvision_where_nothing_clips():
    from torchvision.transforms.v2 import functional as TF

    x = torch.full((1, 8, 8, 3), 100, dtype=torch.uint8)
    x[0, :4] = 140
    views = BatchViews(off(view_settings(8, colour=True, mean=[0] * 3, std=[1] * 3), cj_prob=1.0, cj_sat=0.0,
                           cj_hue=0.0), seed=0)
    p = views.parameters(2, views.generator(0))
    v, _ = views(x, step=0)
    raw = x.permute(0, 3, 1, 2).float() / 255
    expected = TF.adjust_contrast(TF.adjust_brightness(raw, float(p["brightness"][0])), float(p["contrast"][0]))
    assert torch.allclose(v, expected, atol=1e-4)


def test_refuses_what_is_not_a_uint8_batch():
    with pytest.raises(ValueError, match="uint8"):
        BatchViews(view_settings(8, colour=True, mean=MEAN, std=STD), seed=0)(torch.zeros(2, 8, 8, 3), step=0)
