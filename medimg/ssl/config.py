"""The self-supervised pretraining run's record: :class:`SSLConfig`, everything that decides a checkpoint.

A frozen, validated dataclass like the fine-tuning run's record; its :meth:`SSLConfig.identity`
names the checkpoint (:func:`medimg.identity.identity`). The methods themselves (SimCLR, VICReg) are the table
:data:`medimg.ssl.methods.METHODS`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from medimg.data.pipeline import INTENSITY_HELP, NEAR_DUPLICATE_HELP
from medimg.data.registry import MEDMNIST_SIZES
from medimg.data.splits import DEFAULT_NEAR_DUPLICATE_DISTANCE
from medimg.errors import MedimgError
from medimg.models.architectures import ARCHITECTURES, check_architecture
from medimg.record_options import setting
from medimg.ssl.methods import METHODS

INITS = {"random": "random", "imagenet": "auto"}  # --init -> create_backbone's weights
PRETRAINING_METHODS = tuple(METHODS)  # the self-supervised methods: the rows of medimg.ssl.methods.METHODS
# SSLConfig fields added after checkpoints were named: at these values they stay out of the name, so the names
# (and the committed checks beside them) of checkpoints made before still match
SSL_LATER_DEFAULTS = dict(method="simclr", steps=None, min_scale=0.4, intensity_jitter=0.4, views="pil",
                          head_warmup_steps=0, backbone_bn="train", backbone_lr_scale=1.0)
VIEWS = ("tensor", "pil")  # medimg.ssl.tensor_views (batched, on the step's device) or lightly's PIL SimCLRTransform
BACKBONE_BN = ("train", "frozen")


@dataclass(frozen=True)
class SSLConfig:
    """Everything that decides a SimCLR checkpoint (saved in it)."""

    datasets: tuple[str, ...] = setting(help="registered names or image folders, pooled; their training splits only")
    arch: str = setting("resnet18", "the timm backbone", choices=ARCHITECTURES)
    init: str = setting("random", "random: the SSL arm; imagenet: the TL+SSL arm", choices=tuple(INITS))
    target: str | None = setting(None, "the dataset to be fine-tuned later: pretraining data sharing images with it "
                                       "is refused")
    allow_overlap: bool = setting(False, "pretrain on overlapping data anyway (recorded)")
    size: int = setting(64, "image size in pixels")
    medmnist_size: int = setting(28, "which official MedMNIST file to read", choices=MEDMNIST_SIZES)
    grey_as: str | None = setting(None, "how grey images feed the model: single (in_chans=1) or replicate (3 "
                                        "channels); needed for grey pools", choices=(None, "single", "replicate"))
    method: str = setting("simclr", "the self-supervised method", choices=PRETRAINING_METHODS)
    epochs: int = setting(10, "pretraining epochs (unless --steps is given)")
    steps: int | None = setting(None, "optimiser steps in all (the epochs follow from the pool and batch size); "
                                      "overrides --epochs")
    batch_size: int = setting(128, "images per batch (SimCLR contrasts the images of a batch)")
    lr: float = setting(1e-3, "peak learning rate (AdamW, warm-up then cosine)")
    weight_decay: float = setting(1e-4, "weight decay")
    temperature: float = setting(0.1, "NT-Xent temperature")
    projection_dim: int = setting(128, "output size of the projection head")
    min_scale: float = setting(0.4, "views: the smallest share of the image a random crop keeps")
    intensity_jitter: float = setting(0.4, "views: brightness and contrast jitter strength (0: none)")
    views: str = setting("tensor", "how views are made: tensor (batched on the step's device, medimg.ssl.tensor_views) "
                                   "or pil (lightly's SimCLRTransform, one image at a time; checkpoints before issue #30)",
                         choices=VIEWS)
    head_warmup_steps: int = setting(0, "steps at the start that train the projection head alone on the frozen backbone "
                                        "(as LP-FT warms a classifier's head; for continuing pretrained weights)")
    backbone_bn: str = setting("train", "the backbone's batch-norm statistics: train (updated on the views) or frozen "
                                        "(kept as initialised; for continuing pretrained weights)", choices=BACKBONE_BN)
    backbone_lr_scale: float = setting(1.0, "the backbone's learning rate as a share of --lr (the head's)")
    seed: int = setting(0, "seed of initialisation, order and views")
    split_seed: int = setting(0, "seed of the generated splits")
    max_images: int | None = setting(None, "use a seeded subsample of at most this many pooled images")
    intensity: str = setting("auto", INTENSITY_HELP)
    near_duplicate_distance: int | None = setting(DEFAULT_NEAR_DUPLICATE_DISTANCE, NEAR_DUPLICATE_HELP)

    def __post_init__(self):
        datasets = (self.datasets,) if isinstance(self.datasets, str) else tuple(self.datasets)
        object.__setattr__(self, "datasets", datasets)
        if not datasets:
            raise MedimgError("SSL pretraining needs at least one dataset: pass --datasets NAME [NAME ...]")
        if len(set(datasets)) != len(datasets):
            raise MedimgError(f"datasets {', '.join(datasets)} name one dataset twice: pass each once")
        check_architecture(self.arch)
        for name, value, allowed in (("init", self.init, tuple(INITS)), ("method", self.method, PRETRAINING_METHODS),
                                     ("grey_as", self.grey_as, (None, "single", "replicate")), ("views", self.views, VIEWS),
                                     ("backbone_bn", self.backbone_bn, BACKBONE_BN)):
            if value not in allowed:
                raise MedimgError(f"unknown {name} {value!r}: choose one of {', '.join(map(str, allowed))}")
        if min(self.epochs, self.projection_dim) < 1 or self.batch_size < 2 or self.size < 8:
            raise MedimgError("epochs and projection dim must be positive, batch size at least 2 (SimCLR contrasts "
                              "images within a batch) and size at least 8 pixels")
        if self.lr <= 0 or self.temperature <= 0 or self.weight_decay < 0:
            raise MedimgError("lr and temperature must be positive and weight decay not negative")
        if self.max_images is not None and self.max_images < 2:
            raise MedimgError(f"max_images {self.max_images} is too small: use at least 2, or None for every image")
        if self.steps is not None and self.steps < 1:
            raise MedimgError(f"--steps {self.steps} is out of range: use 1 or more (or none for --epochs)")
        if self.head_warmup_steps < 0 or not 0 < self.backbone_lr_scale <= 1:
            raise MedimgError(f"--head-warmup-steps {self.head_warmup_steps} must not be negative and "
                              f"--backbone-lr-scale {self.backbone_lr_scale} must be in (0, 1]")
        if self.backbone_bn == "frozen" and self.init == "random":
            raise MedimgError("--backbone-bn frozen keeps a random network's initial statistics (zeros and ones): "
                              "use it with --init imagenet, or train them (--backbone-bn train)")
        if not 0 < self.min_scale <= 1 or not 0 <= self.intensity_jitter <= 1:
            raise MedimgError(f"--min-scale {self.min_scale} must be in (0, 1] and --intensity-jitter "
                              f"{self.intensity_jitter} in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """What names the checkpoint: every setting but ``target`` (targets with the same pool share it), and the
        fields added later only where they differ from the behaviour before them (:data:`SSL_LATER_DEFAULTS`)."""
        return {k: v for k, v in asdict(self).items()
                if k != "target" and not (k in SSL_LATER_DEFAULTS and v == SSL_LATER_DEFAULTS[k])}

    def checkpoint_name(self, pool: str | None = None) -> str:
        """The checkpoint's file name, ``METHOD-INIT[-POOL]-<12 hex digits of its identity>.safetensors``: every
        self-supervised checkpoint is named here (a pretraining stage's with its pool's name; an arm's own
        without), so one checkpoint is found under one name whoever asks."""
        from medimg.identity import identity

        return "-".join([self.method, self.init, *([pool] if pool else []), identity(self.identity())]) + ".safetensors"

    @classmethod
    def from_dict(cls, d: dict) -> "SSLConfig":
        return cls(**{k: tuple(v) if k == "datasets" else v for k, v in d.items() if k in cls.__dataclass_fields__})


