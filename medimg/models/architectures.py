"""The architectures and weight keywords medimg knows, without importing torch or timm: what the command line and
the configs check names against (:mod:`medimg.models.backbones` builds the networks)."""
from __future__ import annotations

from medimg.errors import MedimgError

ARCHITECTURES = ("legacy_xception", "resnet50", "resnet18", "mobilenetv2_100", "tf_efficientnet_lite0")
WEIGHT_KEYWORDS = ("auto", "timm", "tflite", "efficientnet-lite0", "random")  # weight sources that are not a file


def check_architecture(arch: str) -> None:
    """Refuse an architecture medimg does not build, naming those it does."""
    if arch not in ARCHITECTURES:
        raise MedimgError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
