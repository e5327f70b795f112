import numpy as np
import pytest
import timm
import torch

from medimg.data import Augmentation, ImageDataset, Preprocess, class_balance
from medimg.data.synthetic import make_synthetic
from medimg.errors import MedimgError


@pytest.fixture(scope="module")
def cfg():
    return timm.create_model("resnet18", pretrained=False).pretrained_cfg


def test_preprocessing_comes_from_the_pretrained_cfg(cfg):
    p = Preprocess.from_pretrained_cfg(cfg, image_channels=3, grey_as=None)
    assert p.mean == tuple(cfg["mean"]) and p.std == tuple(cfg["std"]) and p.size == cfg["input_size"][-1]
    x = torch.full((3, 40, 40), 255, dtype=torch.uint8)
    out = p(x)
    assert out.shape == (3, p.size, p.size)
    assert torch.allclose(out[:, 0, 0], (1 - torch.tensor(cfg["mean"])) / torch.tensor(cfg["std"]), atol=1e-5)


def test_grey_channels_are_an_explicit_choice(cfg):
    with pytest.raises(MedimgError, match="explicit grey_as"):
        Preprocess.from_pretrained_cfg(cfg, image_channels=1, grey_as=None)
    with pytest.raises(MedimgError, match="1-channel model"):
        Preprocess.from_pretrained_cfg(cfg, image_channels=3, grey_as="single")
    x = torch.randint(0, 255, (1, 32, 32), dtype=torch.uint8)
    single = Preprocess.from_pretrained_cfg(cfg, image_channels=1, grey_as="single", size=32)
    replicate = Preprocess.from_pretrained_cfg(cfg, image_channels=1, grey_as="replicate", size=32)
    assert single(x).shape == (1, 32, 32) and single.mean == (pytest.approx(np.mean(cfg["mean"])),)
    r = replicate(x)
    assert r.shape == (3, 32, 32)
    # the same grey value in each channel, normalised by that channel's statistics
    assert torch.allclose(r[0] * cfg["std"][0] + cfg["mean"][0], r[2] * cfg["std"][2] + cfg["mean"][2], atol=1e-5)


def test_augmentation_changes_pixels_not_shape():
    images, labels = make_synthetic(4, 32, seed=0, colour=True)
    aug = Augmentation(rotation_degrees=30, zoom=(0.8, 1.2), blur_p=1.0).build()
    x = torch.from_numpy(images[0]).permute(2, 0, 1)
    torch.manual_seed(0)
    y = aug(x)
    assert y.shape == x.shape and y.dtype == torch.uint8 and not torch.equal(x, y)


def test_oversampled_copies_are_augmented_even_without_augmentation(cfg):
    images, labels = make_synthetic(3, 24, seed=0, colour=False)
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    plan = class_balance(labels, "over", random_state=0)
    pre = Preprocess.from_pretrained_cfg(cfg, image_channels=1, grey_as="replicate", size=24)
    ds = ImageDataset(images[:9], labels, pre, indices=plan.indices, extra=plan.extra, augment=None)
    assert len(ds) == 18
    torch.manual_seed(0)
    originals = {int(plan.indices[i]): ds[i][0] for i in range(9)}
    changed = [not torch.equal(ds[i][0], originals[int(plan.indices[i])]) for i in range(9, 18)]
    assert sum(changed) >= 7  # copies differ from their originals (a rare draw can be identity)
    assert torch.equal(ds[0][0], originals[0])  # originals are not augmented
