"""The fine-tuning run's record: :class:`FinetuneConfig`, everything that decides a fine-tuning run's result.

A frozen dataclass that holds settings and nothing else, validates them when made, and derives what follows
from them (the data settings, input channels and weight source). The arm's defaults come from
:data:`medimg.finetune.arms.ARMS`, the recipes from :data:`medimg.finetune.recipes.RECIPES`. Nothing here imports
Lightning or the training code: reading a run directory, planning a study and building the command line need
only this record.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from medimg.data.pipeline import INTENSITY_HELP, NEAR_DUPLICATE_HELP, DataConfig
from medimg.data.registry import MEDMNIST_SIZES
from medimg.data.splits import DEFAULT_NEAR_DUPLICATE_DISTANCE
from medimg.data.augmentation import Augmentation
from medimg.errors import MedimgError
from medimg.finetune.arms import ARMS, METHODS, arm_kind
from medimg.finetune.recipes import RECIPE_CHOICES, RECIPES, recipe_of
from medimg.models.architectures import ARCHITECTURES, WEIGHT_KEYWORDS, check_architecture
from medimg.probe.features import Network
from medimg.record_options import setting

# What a config.json written before a field existed meant: splits grouped exact duplicates only, and
# >8-bit images were stretched per image (no staged dataset has such images, so no committed run used it).
LEGACY_DEFAULTS = dict(near_duplicate_distance=None, intensity="per-image")


# --- fine-tuning -------------------------------------------------------------------------------

@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a fine-tuning run's result (saved as ``config.json``)."""

    dataset: str = setting(help="a registered name (medimg datasets) or the path of an image folder")
    method: str = setting(help="; ".join(f"{a.name}: {a.help}" for a in ARMS.values()), choices=METHODS)
    arch: str = setting("mobilenetv2_100", "the timm backbone", choices=ARCHITECTURES)
    weights: str | None = setting(None, "tl: auto (default), timm, tflite, efficientnet-lite0 or a .pth/.safetensors file; ssl and "
                                        "tl+ssl: a checkpoint from 'medimg pretrain-ssl'")
    intermediate: str | None = setting(None, "double fine-tuning: first fine-tune on this dataset")
    allow_overlap: bool = setting(False, "allow an intermediate dataset that shares images with the target (recorded)")
    size: int = setting(64, "image size in pixels")
    medmnist_size: int = setting(28, "which official MedMNIST file to read", choices=MEDMNIST_SIZES)
    split_seed: int = setting(0, "seed of the generated split")
    intensity: str = setting("auto", INTENSITY_HELP)
    near_duplicate_distance: int | None = setting(DEFAULT_NEAR_DUPLICATE_DISTANCE, NEAR_DUPLICATE_HELP)
    grey_as: str = setting("replicate", "grey images feed a 1-channel model (single) or are copied to 3 channels "
                                        "(replicate)", choices=("single", "replicate"))
    augment: bool = setting(False, "rotation, flips, zoom and blur on the training images")
    augmentation: Augmentation = field(default_factory=Augmentation)
    balance: str = setting("none", "class balance of the training images", choices=("none", "down", "over"))
    max_train_images: int | None = setting(None, "train on a stratified subsample of this many training images (the "
                                                 "same for every seed)")
    recipe: str = setting("auto", "auto: the arm's own (" + ", ".join(f"{a.recipe} for {a.name}" for a in ARMS.values())
                          + "); " + "; ".join(f"{r.name}: {r.help}" for r in RECIPES.values()), choices=RECIPE_CHOICES)
    head_epochs: int = setting(2, "paper recipe: epochs that train the new head alone")
    unfreeze_stages: int = setting(2, "partial recipe: backbone stages that train")
    epochs: int = setting(12, "training epochs (the target's)")
    intermediate_epochs: int = setting(6, "double fine-tuning: epochs on the intermediate dataset")
    intermediate_max_train_images: int | None = setting(None, "the same cap for the --intermediate dataset (default: "
                                                              "its whole training split)")
    batch_size: int = setting(32, "images per batch")
    allow_size_mismatch: bool = setting(False, "fine-tune a self-supervised checkpoint at another --size than it was "
                                               "pretrained at (refused otherwise; recorded in the run's name)")
    optimizer: str = setting("adamw", "the optimiser", choices=("adamw", "sgd"))
    lr: float = setting(1e-3, "learning rate of the head")
    backbone_lr_scale: float | None = setting(None, "backbone lr = lr x this (default 1 for scratch, else 0.1)")
    weight_decay: float = setting(1e-4, "weight decay")
    schedule: str = setting("cosine", "learning-rate schedule over the epochs", choices=("cosine", "constant"))
    patience: int = setting(4, "early stopping: epochs without a lower validation loss")
    seed: int = setting(0, "seed of initialisation, order and augmentation")

    def __post_init__(self):
        check_architecture(self.arch)
        arm = arm_kind(self.method)
        if self.recipe == "auto":
            object.__setattr__(self, "recipe", arm.recipe)
        if self.backbone_lr_scale is None:
            object.__setattr__(self, "backbone_lr_scale", arm.backbone_lr_scale)
        recipe_of(self.recipe)  # a one-line error for an unknown one
        for name, value, allowed in (("balance", self.balance, ("none", "down", "over")),
                                     ("grey_as", self.grey_as, ("single", "replicate")),
                                     ("optimizer", self.optimizer, ("adamw", "sgd")),
                                     ("schedule", self.schedule, ("cosine", "constant"))):
            if value not in allowed:
                raise MedimgError(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")
        if arm.needs_checkpoint and not self.weights:
            raise MedimgError(f"--method {self.method} needs --weights CKPT, a self-supervised checkpoint from "
                              f"'medimg pretrain-ssl --init {arm.checkpoint_init}'")
        if arm.random and self.weights not in (None, "random"):
            raise MedimgError(f"--method {self.method} starts from random weights: drop --weights")
        for name in ("max_train_images", "intermediate_max_train_images"):
            if getattr(self, name) is not None and getattr(self, name) < 2:
                raise MedimgError(f"{name} must be at least 2 (or unset for the whole training split)")
        for name, value, low in (("epochs", self.epochs, 1), ("batch-size", self.batch_size, 1), ("size", self.size, 1),
                                 ("patience", self.patience, 1), ("head-epochs", self.head_epochs, 0),
                                 ("intermediate-epochs", self.intermediate_epochs, 1)):
            if value < low:
                raise MedimgError(f"--{name} {value} is out of range: use {low} or more")
        for name, value in (("lr", self.lr), ("weight-decay", self.weight_decay),
                            ("backbone-lr-scale", self.backbone_lr_scale)):
            if not value >= 0 or (name == "lr" and value == 0):
                raise MedimgError(f"--{name} {value} is out of range: use a {'positive' if name == 'lr' else 'non-negative'} "
                                  f"number")
        # paper: the head alone for head_epochs, then everything; with no epoch left the backbone never trains
        stages = (("--epochs", self.epochs),) + ((("--intermediate-epochs", self.intermediate_epochs),)
                                                 if self.intermediate else ())
        for option, epochs in stages:
            if recipe_of(self.recipe).trains == "head_then_all" and self.head_epochs >= epochs:
                raise MedimgError(f"--head-epochs {self.head_epochs} leaves none of {option} {epochs} to train the "
                                  f"backbone with --recipe paper: lower --head-epochs or raise {option} (or use "
                                  f"--recipe linear to train the head alone)")

    @property
    def weight_spec(self) -> str:
        if arm_kind(self.method).random:
            return "random"
        return self.weights or "auto"

    @property
    def weight_file(self) -> Path | None:
        """The weights as a file path, or None for a keyword source (auto, timm, tflite, efficientnet-lite0, random)."""
        return None if self.weight_spec in WEIGHT_KEYWORDS else Path(self.weight_spec)

    def in_chans(self, image_channels: int) -> int:
        """The model's input channels for images of ``image_channels`` (1 grey, 3 colour): grey images feed a
        1-channel model only with ``grey_as="single"`` (:meth:`medimg.probe.features.Network.in_chans`)."""
        return self.network.in_chans(image_channels)

    @property
    def network(self) -> Network:
        """The network this run starts from, as a probe reads it (:class:`medimg.probe.features.Network`): its
        arch, weights and seed on the target's data at its size, with the run's training cap."""
        return Network(arch=self.arch, weights=self.weight_spec, seed=self.seed, grey_as=self.grey_as,
                       data=self.data_config(), max_train_images=self.max_train_images)

    def data_config(self, dataset: str | None = None) -> DataConfig:
        """The data settings of the target (or of ``dataset``, e.g. the intermediate one)."""
        return DataConfig(dataset or self.dataset, size=self.size, split_seed=self.split_seed,
                          medmnist_size=self.medmnist_size, intensity=self.intensity,
                          near_duplicate_distance=self.near_duplicate_distance)

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in ("intermediate_max_train_images", "allow_size_mismatch"):  # added later: at their defaults,
            if d[name] in (None, False):                                       # runs named before keep their names
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        # a config saved before a field existed ran with that field's old behaviour, not today's default
        d = dict(LEGACY_DEFAULTS, **d)
        d["augmentation"] = Augmentation(**{k: tuple(v) if isinstance(v, list) else v
                                            for k, v in d.get("augmentation", {}).items()})
        return cls(**d)
