"""The records a run and a study are made of: fine-tuning, SimCLR pretraining and trainer settings.

Each is a frozen dataclass that holds settings and nothing else, validates them when made, and
derives what follows from them (a fine-tuning config's data settings, input channels and weight
source). Nothing here imports Lightning or the training code: reading a run directory, planning a
study and building the command line need only these records.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .data.pipeline import INTENSITY_HELP, NEAR_DUPLICATE_HELP, DataConfig
from .data.registry import MEDMNIST_SIZES
from .data.splits import DEFAULT_NEAR_DUPLICATE_DISTANCE
from .data.transforms import Augmentation
from .errors import MedimgError
from .models.backbones import ARCHITECTURES, WEIGHT_KEYWORDS, check_architecture
from .record_options import setting

METHODS = ("tl", "ssl", "tl+ssl", "scratch")
# What a config.json written before a field existed meant: splits grouped exact duplicates only, and
# >8-bit images were stretched per image (no staged dataset has such images, so no committed run used it).
LEGACY_DEFAULTS = dict(near_duplicate_distance=None, intensity="per-image")
RECIPES = ("auto", "paper", "linear", "partial", "full")


# --- fine-tuning -------------------------------------------------------------------------------

@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a fine-tuning run's result (saved as ``config.json``)."""

    dataset: str = setting(help="a registered name (medimg datasets) or the path of an image folder")
    method: str = setting(help="tl: ImageNet weights; ssl: a SimCLR checkpoint (random init); tl+ssl: SimCLR from "
                               "ImageNet; scratch: random initialisation", choices=METHODS)
    arch: str = setting("mobilenetv2_100", "the timm backbone", choices=ARCHITECTURES)
    weights: str | None = setting(None, "tl: auto (default), timm, tflite or a .pth/.safetensors file; ssl and "
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
    recipe: str = setting("auto", "auto (full for scratch, else paper); paper: head first, then everything; linear: "
                                  "the head only; partial; full", choices=RECIPES)
    head_epochs: int = setting(2, "paper recipe: epochs that train the new head alone")
    unfreeze_stages: int = setting(2, "partial recipe: backbone stages that train")
    epochs: int = setting(12, "training epochs (the target's)")
    intermediate_epochs: int = setting(6, "double fine-tuning: epochs on the intermediate dataset")
    intermediate_max_train_images: int | None = setting(None, "the same cap for the --intermediate dataset (default: "
                                                              "its whole training split)")
    batch_size: int = setting(32, "images per batch")
    optimizer: str = setting("adamw", "the optimiser", choices=("adamw", "sgd"))
    lr: float = setting(1e-3, "learning rate of the head")
    backbone_lr_scale: float | None = setting(None, "backbone lr = lr x this (default 1 for scratch, else 0.1)")
    weight_decay: float = setting(1e-4, "weight decay")
    schedule: str = setting("cosine", "learning-rate schedule over the epochs", choices=("cosine", "constant"))
    patience: int = setting(4, "early stopping: epochs without a lower validation loss")
    seed: int = setting(0, "seed of initialisation, order and augmentation")

    def __post_init__(self):
        check_architecture(self.arch)
        if self.recipe == "auto":  # a random backbone has nothing worth freezing
            object.__setattr__(self, "recipe", "full" if self.method == "scratch" else "paper")
        if self.backbone_lr_scale is None:
            object.__setattr__(self, "backbone_lr_scale", 1.0 if self.method == "scratch" else 0.1)
        for name, value, allowed in (("method", self.method, METHODS), ("recipe", self.recipe, RECIPES),
                                     ("balance", self.balance, ("none", "down", "over")),
                                     ("grey_as", self.grey_as, ("single", "replicate")),
                                     ("optimizer", self.optimizer, ("adamw", "sgd")),
                                     ("schedule", self.schedule, ("cosine", "constant"))):
            if value not in allowed:
                raise MedimgError(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")
        if self.method in ("ssl", "tl+ssl") and not self.weights:
            raise MedimgError(f"--method {self.method} needs --weights CKPT, a SimCLR checkpoint from "
                              f"'medimg pretrain-ssl{' --init imagenet' if self.method == 'tl+ssl' else ''}'")
        if self.method == "scratch" and self.weights not in (None, "random"):
            raise MedimgError("--method scratch starts from random weights: drop --weights")
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
            if self.recipe == "paper" and self.head_epochs >= epochs:
                raise MedimgError(f"--head-epochs {self.head_epochs} leaves none of {option} {epochs} to train the "
                                  f"backbone with --recipe paper: lower --head-epochs or raise {option} (or use "
                                  f"--recipe linear to train the head alone)")

    @property
    def weight_spec(self) -> str:
        if self.method == "scratch":
            return "random"
        return self.weights or "auto"

    @property
    def weight_file(self) -> Path | None:
        """The weights as a file path, or None for a keyword source (auto, timm, tflite, random)."""
        return None if self.weight_spec in WEIGHT_KEYWORDS else Path(self.weight_spec)

    def in_chans(self, image_channels: int) -> int:
        """The model's input channels for images of ``image_channels`` (1 grey, 3 colour): grey images feed a
        1-channel model only with ``grey_as="single"``."""
        return 1 if image_channels == 1 and self.grey_as == "single" else 3

    def data_config(self, dataset: str | None = None) -> DataConfig:
        """The data settings of the target (or of ``dataset``, e.g. the intermediate one)."""
        return DataConfig(dataset or self.dataset, size=self.size, split_seed=self.split_seed,
                          medmnist_size=self.medmnist_size, intensity=self.intensity,
                          near_duplicate_distance=self.near_duplicate_distance)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["intermediate_max_train_images"] is None:  # added later: runs named before it keep their names
            del d["intermediate_max_train_images"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        # a config saved before a field existed ran with that field's old behaviour, not today's default
        d = dict(LEGACY_DEFAULTS, **d)
        d["augmentation"] = Augmentation(**{k: tuple(v) if isinstance(v, list) else v
                                            for k, v in d.get("augmentation", {}).items()})
        return cls(**d)


# --- SimCLR pretraining ------------------------------------------------------------------------

INITS = {"random": "random", "imagenet": "auto"}  # --init -> create_backbone's weights


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
    epochs: int = setting(10, "pretraining epochs")
    batch_size: int = setting(128, "images per batch (SimCLR contrasts the images of a batch)")
    lr: float = setting(1e-3, "peak learning rate (AdamW, warm-up then cosine)")
    weight_decay: float = setting(1e-4, "weight decay")
    temperature: float = setting(0.1, "NT-Xent temperature")
    projection_dim: int = setting(128, "output size of the projection head")
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
        for name, value, allowed in (("init", self.init, tuple(INITS)),
                                     ("grey_as", self.grey_as, (None, "single", "replicate"))):
            if value not in allowed:
                raise MedimgError(f"unknown {name} {value!r}: choose one of {', '.join(map(str, allowed))}")
        if min(self.epochs, self.projection_dim) < 1 or self.batch_size < 2 or self.size < 8:
            raise MedimgError("epochs and projection dim must be positive, batch size at least 2 (SimCLR contrasts "
                              "images within a batch) and size at least 8 pixels")
        if self.lr <= 0 or self.temperature <= 0 or self.weight_decay < 0:
            raise MedimgError("lr and temperature must be positive and weight decay not negative")
        if self.max_images is not None and self.max_images < 2:
            raise MedimgError(f"max_images {self.max_images} is too small: use at least 2, or None for every image")

    def to_dict(self) -> dict:
        return asdict(self)


# --- hardware ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainerSettings:
    """How and where Lightning trains: one CPU, one GPU, or many GPUs and nodes with DDP — settings only."""

    accelerator: str = setting("auto", "cpu, gpu or auto")
    devices: int | str = setting(1, "devices per node (a number, or auto)")
    num_nodes: int = setting(1, "machines (DDP)")
    strategy: str = setting("auto", "e.g. ddp for several GPUs or nodes")
    precision: str = setting("auto", "32-true, bf16-mixed, 16-mixed, or auto: bf16 where the hardware runs it fast")
    deterministic: bool = setting(True, "deterministic kernels (--no-deterministic is faster on GPU)")
    channels_last: bool = setting(True, "channels-last memory layout")
    num_workers: int = setting(0, "data-loader worker processes (data are in memory; workers only pay off with "
                                  "heavy augmentation)")
    progress: bool = setting(True, "progress bars")

    def resolved_precision(self) -> str:
        if self.precision != "auto":
            return self.precision
        if self._on_gpu():
            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"

    def _on_gpu(self) -> bool:
        return self.accelerator in ("gpu", "cuda") or (self.accelerator == "auto" and torch.cuda.is_available())

    def build(self, *, max_epochs: int, callbacks=(), logger=False, default_root_dir=None, **kwargs):
        import pytorch_lightning as pl

        if self.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        return pl.Trainer(
            accelerator=self.accelerator, devices=self.devices, num_nodes=self.num_nodes, strategy=self.strategy,
            precision=self.resolved_precision(), deterministic=self.deterministic, max_epochs=max_epochs,
            callbacks=list(callbacks), logger=logger, default_root_dir=default_root_dir,
            enable_progress_bar=self.progress, enable_model_summary=False, num_sanity_val_steps=0, **kwargs)

    def to_dict(self) -> dict:
        return dict(asdict(self), resolved_precision=self.resolved_precision())


def cpu_has_fast_bf16() -> bool:
    """bf16 matmuls run natively (AVX512-BF16 or AMX) rather than emulated, where autocast pays off."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))
