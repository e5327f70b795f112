"""The converted TFLite MobileNet V2 names real photos and agrees with the TFLite interpreter.

Both models get the very same pixels: each photo crop is resized once with PIL to a 224x224 uint8
RGB array; the interpreter takes it as is, timm takes it as x / 255 normalised by the cfg's
mean/std (0.5, i.e. [-1, 1]). The TFLite model is uint8 all the way through, so the float model
cannot match it bit for bit; it must agree on the predicted class.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from skimage import data as skimage_data

from medimg.errors import MedimgError
from medimg.models.tflite_import import (
    create_tflite_mobilenet,
    import_mobilenet_v2_tflite,
    tflite_mobilenet_pretrained_cfg,
)

DATA_DIR = Path(os.environ.get("MEDIMG_DATA_DIR") or Path(__file__).resolve().parents[2].parent / "shared" / "data")
TFLITE_DIR = DATA_DIR / "imagenet_mobilenet_tflite"
TFLITE = TFLITE_DIR / "mobilenet_v2_1.0_224_quant.tflite"
PHOTOS = ("chelsea", "coffee", "rocket")
CROPS_PER_PHOTO = 12


@pytest.fixture(scope="module")
def tflite_path() -> Path:
    if not TFLITE.is_file():
        pytest.skip(f"{TFLITE} is absent (set MEDIMG_DATA_DIR to the folder holding imagenet_mobilenet_tflite/)")
    return TFLITE


@pytest.fixture(scope="module")
def labels(tflite_path) -> list[str]:
    return (tflite_path.parent / "imagenet_labels.txt").read_text().splitlines()


@pytest.fixture(scope="module")
def weights(tflite_path, tmp_path_factory) -> Path:
    return import_mobilenet_v2_tflite(tflite_path, tmp_path_factory.mktemp("weights") / "mobilenet.safetensors")


@pytest.fixture(scope="module")
def model(weights) -> torch.nn.Module:
    return create_tflite_mobilenet(weights).eval()


def _resized(image: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """A square crop resized to 224x224 uint8, the one array both models are given."""
    crop = Image.fromarray(image[top:top + side, left:left + side])
    return np.array(crop.resize((224, 224), Image.BILINEAR))  # a writable copy, as torch.from_numpy wants


def _centre(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    return _resized(image, (height - side) // 2, (width - side) // 2, side)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """36 random square crops (half to all of the short side) of the three photos, fixed seed."""
    rng = np.random.default_rng(0)
    out = []
    for name in PHOTOS:
        image = getattr(skimage_data, name)()
        height, width = image.shape[:2]
        for _ in range(CROPS_PER_PHOTO):
            side = int(rng.uniform(0.5, 1.0) * min(height, width))
            out.append(_resized(image, rng.integers(0, height - side + 1), rng.integers(0, width - side + 1), side))
    return np.stack(out)


@pytest.fixture(scope="module")
def tflite_probs(tflite_path, crops) -> np.ndarray:
    """The interpreter's uint8 softmax output, as probabilities (its output scale is 1/256)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path), num_threads=2)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    probs = []
    for crop in crops:
        interpreter.set_tensor(inp["index"], crop[None])
        interpreter.invoke()
        scale, zero_point = out["quantization"]
        probs.append((interpreter.get_tensor(out["index"])[0].astype(np.float32) - zero_point) * scale)
    return np.stack(probs)


def _logits(model: torch.nn.Module, images: np.ndarray) -> torch.Tensor:
    config = timm.data.resolve_data_config({}, model=model)  # mean/std come from the pretrained cfg
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(config["mean"]).view(1, 3, 1, 1)) / torch.tensor(config["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x)


@pytest.fixture(scope="module")
def crop_logits(model, crops) -> torch.Tensor:
    return _logits(model, crops)


def test_state_dict_loads_strictly_into_plain_timm_model(weights, tflite_path):
    plain = timm.create_model("mobilenetv2_100", num_classes=1001, pad_type="same")
    plain.load_state_dict(load_file(weights), strict=True)
    with safe_open(weights, "pt") as f:
        assert f.metadata()["source"] == tflite_path.name
    # In eval mode every BatchNorm is still the identity plus the folded conv bias (the calibrated
    # statistics cancel out: gamma = sqrt(var + eps), beta = folded bias + mean) ...
    bn = plain.eval().blocks[1][0].bn3  # one without activation
    x = torch.randn(2, bn.num_features, 5, 5)
    folded_bias = (bn.bias - bn.running_mean).view(1, -1, 1, 1)
    assert torch.allclose(bn(x), x + folded_bias, atol=1e-4)
    # ... but it carries real statistics, so train mode normalises natural inputs gently
    assert (bn.running_var > 0).all() and not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    natural = bn.running_mean.view(1, -1, 1, 1) + bn.running_var.sqrt().view(1, -1, 1, 1) * torch.randn(64, bn.num_features, 4, 4)
    with torch.no_grad():
        gap = (bn.train()(natural) - bn.eval()(natural)).abs().mean()
    assert gap < 0.1 * natural.std()  # an uncalibrated (identity) BN would shift by the whole mean


def test_pretrained_cfg_reaches_timm(model, weights):
    assert model.pretrained_cfg["file"] == str(weights)
    config = timm.data.resolve_data_config({}, model=model)
    assert config["mean"] == config["std"] == (0.5, 0.5, 0.5)
    assert (config["input_size"], config["interpolation"], config["crop_pct"]) == ((3, 224, 224), "bilinear", 0.875)
    assert model.pretrained_cfg["num_classes"] == tflite_mobilenet_pretrained_cfg()["num_classes"] == 1001
    # The weights came from our file, not from timm's own mobilenetv2_100 checkpoint.
    assert all(torch.equal(model.state_dict()[k], v) for k, v in load_file(weights).items())


@pytest.mark.parametrize(
    ("photo", "accepted"),
    [
        ("chelsea", {"tabby", "tiger cat", "Egyptian cat"}),
        ("coffee", {"espresso", "cup", "coffee mug"}),
        ("rocket", {"missile", "projectile", "space shuttle"}),
    ],
)
def test_names_photos_top1(model, labels, photo, accepted):
    """Top-1 (not just top-5) of the centre square crop is one of the accepted ImageNet names."""
    logits = _logits(model, _centre(getattr(skimage_data, photo)())[None])[0]
    assert logits.shape == (1001,)
    assert labels[int(logits.argmax())].split(",")[0] in accepted


def test_agrees_with_tflite_interpreter(crop_logits, tflite_probs):
    """>= 95% top-1 agreement; each interpreter top-1 in our top-5; probabilities within 0.1.

    The uint8 softmax can tie at the top, so the interpreter's top-1 is the set of tied maxima.
    """
    top5 = crop_logits.topk(5, dim=1).indices.numpy()
    tflite_top1 = [set(np.flatnonzero(p == p.max())) for p in tflite_probs]
    agreement = np.mean([int(ours[0]) in theirs for ours, theirs in zip(top5, tflite_top1)])
    assert len(tflite_top1) == len(PHOTOS) * CROPS_PER_PHOTO
    assert agreement >= 0.95
    assert all(theirs <= set(ours) for ours, theirs in zip(top5, tflite_top1))
    assert np.abs(torch.softmax(crop_logits, dim=1).numpy() - tflite_probs).max() < 0.1


def test_symmetric_padding_would_disagree(weights, crops, tflite_probs):
    """The agreement test has teeth: PyTorch's symmetric padding shifts stride-2 layers."""
    symmetric = timm.create_model(  # create_tflite_mobilenet without pad_type="same"
        "mobilenetv2_100",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(weights), **tflite_mobilenet_pretrained_cfg()),
        num_classes=1001,
    )
    top1 = _logits(symmetric.eval(), crops).argmax(dim=1).numpy()
    assert np.mean(top1 == tflite_probs.argmax(axis=1)) < 0.9


def test_other_num_classes_keeps_backbone_and_resets_classifier(model, weights):
    five = create_tflite_mobilenet(weights, num_classes=5)
    assert five.classifier.weight.shape == (5, 1280)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in five.state_dict().items() if not k.startswith("classifier."))


def test_refuses_to_overwrite_unless_forced(tflite_path, tmp_path):
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"keep")
    with pytest.raises(MedimgError, match="already exists.*force=True"):
        import_mobilenet_v2_tflite(tflite_path, out)
    assert out.read_bytes() == b"keep"
    assert import_mobilenet_v2_tflite(tflite_path, out, force=True) == out
    assert set(load_file(out)) == set(timm.create_model("mobilenetv2_100").state_dict())
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary file left behind


def test_bad_inputs_raise_one_line_errors(tflite_path, tmp_path):
    out = tmp_path / "w.safetensors"
    missing = tmp_path / "absent.tflite"
    with pytest.raises(MedimgError, match=re.escape(f"{missing} does not exist")):
        import_mobilenet_v2_tflite(missing, out)
    junk, truncated = tmp_path / "junk.tflite", tmp_path / "truncated.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    truncated.write_bytes(tflite_path.read_bytes()[:100_000])
    for bad in (junk, truncated):
        with pytest.raises(MedimgError, match=re.escape(f"{bad} is not mobilenet_v2_1.0_224_quant.tflite")):
            import_mobilenet_v2_tflite(bad, out)
    with pytest.raises(MedimgError, match=r"must end in \.safetensors"):
        import_mobilenet_v2_tflite(tflite_path, tmp_path / "w.pth")
    with pytest.raises(MedimgError, match="weights file .* does not exist"):
        create_tflite_mobilenet(out)
    assert not out.exists()


def test_refuses_mobilenet_v1(tmp_path):
    v1 = TFLITE_DIR / "mobilenet_v1_0.25_128_quant.tflite"
    if not v1.is_file():
        pytest.skip(f"{v1} is absent")
    with pytest.raises(MedimgError, match="is not mobilenet_v2_1.0_224_quant.tflite") as err:
        import_mobilenet_v2_tflite(v1, tmp_path / "w.safetensors")
    assert "\n" not in str(err.value)
