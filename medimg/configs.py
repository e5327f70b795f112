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
SSL_METHODS = ("ssl", "tl+ssl")  # the arms that start from a SimCLR checkpoint
# What a config.json written before a field existed meant: splits grouped exact duplicates only, and
# >8-bit images were stretched per image (no staged dataset has such images, so no committed run used it).
LEGACY_DEFAULTS = dict(near_duplicate_distance=None, intensity="per-image")
RECIPES = ("auto", "paper", "linear", "partial", "full", "lp-ft")


# --- fine-tuning -------------------------------------------------------------------------------

@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a fine-tuning run's result (saved as ``config.json``)."""

    dataset: str = setting(help="a registered name (medimg datasets) or the path of an image folder")
    method: str = setting(help="tl: ImageNet weights; ssl: a SimCLR checkpoint (random init); tl+ssl: SimCLR from "
                               "ImageNet; scratch: random initialisation", choices=METHODS)
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
    recipe: str = setting("auto", "auto (full for scratch, else paper); paper: head first, then everything; linear: "
                                  "the head only; partial; full; lp-ft: the head starts as the linear probe of the "
                                  "frozen features, then everything trains on a fixed schedule and the last weights "
                                  "are kept (Kumar et al. 2022)", choices=RECIPES)
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
        if self.method in SSL_METHODS and not self.weights:
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
        """The weights as a file path, or None for a keyword source (auto, timm, tflite, efficientnet-lite0, random)."""
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
PRETRAINING_METHODS = ("simclr", "vicreg")  # self-supervised methods; medimg.ssl.methods.METHODS holds what each one is
# SSLConfig fields added after checkpoints were named: at these values they stay out of the name, so the names
# (and the committed checks beside them) of checkpoints made before still match
SSL_LATER_DEFAULTS = dict(method="simclr", steps=None, min_scale=0.4, intensity_jitter=0.4)


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
        if self.steps is not None and self.steps < 1:
            raise MedimgError(f"--steps {self.steps} is out of range: use 1 or more (or none for --epochs)")
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

    @classmethod
    def from_dict(cls, d: dict) -> "SSLConfig":
        return cls(**{k: tuple(v) if k == "datasets" else v for k, v in d.items() if k in cls.__dataclass_fields__})


# --- hardware ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainerSettings:
    """How and where Lightning trains: one CPU, one GPU, or many GPUs and nodes with DDP — settings only."""

    accelerator: str = setting("auto", "cpu, gpu or auto")
    devices: int | str = setting(1, "devices per node (a number, or auto)")
    num_nodes: int = setting(1, "machines (DDP)")
    strategy: str = setting("auto", "e.g. ddp for several GPUs or nodes")
    precision: str = setting("auto", "32-true, bf16-mixed, 16-mixed, or auto: bf16 (or 16) autocast on a GPU, 32-true "
                                     "on a CPU")
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
        # on a CPU, never: some report avx512_bf16 yet ran bf16 slower, with other results (issue #12)
        return "32-true"

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
            enable_progress_bar=self.progress, enable_model_summary=False, num_sanity_val_steps=0,
            # medimg's EpochSampler shards the training images itself; validation is whole on every process
            use_distributed_sampler=False, **kwargs)

    def to_dict(self) -> dict:
        return dict(asdict(self), resolved_precision=self.resolved_precision())


def method_slug(method: str) -> str:
    """A method as a file or folder name: ``tl+ssl`` -> ``tl_ssl``."""
    return method.replace("+", "_")


# --- the study ---------------------------------------------------------------------------------

ARM_SETTINGS = ("seeds", "tl_weights", "results_dir")  # overrides that are the arm's own, not fine-tuning settings
PER_RUN = ("dataset", "method", "weights", "seed")  # FinetuneConfig fields an arm sets for each run itself


@dataclass(frozen=True)
class Arm:
    """One arm of the study: a dataset and an initialisation, fine-tuned with one set of settings once per seed.

    ``finetune`` holds :class:`FinetuneConfig` fields other than dataset, method, weights and seed; ``ssl``
    the :class:`SSLConfig` fields of the SimCLR checkpoint an ``ssl`` or ``tl+ssl`` arm starts from (None
    otherwise), pretrained on ``ssl_candidates`` less those sharing images with the dataset, unless
    ``ssl_checkpoint`` names the profile's pretraining-stage checkpoint it starts from (relative to the study
    root; :func:`medimg.ssl.stage.arm_checkpoint`), which the study never pretrains; ``trainer`` the
    :class:`TrainerSettings`; ``results_dir`` is relative to the study root. ``to_dict`` gives the form the
    study's chapters recorded before they took flat parameters, and ``from_dict`` reads it back.
    """

    dataset: str
    method: str
    seeds: tuple[int, ...]
    finetune: dict = field(default_factory=dict)
    ssl: dict | None = None
    ssl_candidates: tuple[str, ...] = ()
    ssl_checkpoint: str | None = None
    tl_weights: str = "auto"
    results_dir: str = "results"
    trainer: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise MedimgError(f"unknown method {self.method!r}: choose one of {', '.join(METHODS)}")
        object.__setattr__(self, "seeds", parse_seeds(self.seeds))
        object.__setattr__(self, "ssl_candidates", tuple(self.ssl_candidates))
        unknown = sorted(set(self.finetune) - FINETUNE_SETTINGS)
        if unknown:
            raise MedimgError(f"unknown fine-tuning setting(s) {', '.join(unknown)} for {self.dataset} {self.method}: "
                              f"use FinetuneConfig's fields ({', '.join(sorted(FINETUNE_SETTINGS))})")
        if self.uses_ssl and not (self.ssl or self.ssl_checkpoint):
            raise MedimgError(f"the {self.method} arm needs SimCLR settings: give the profile an 'ssl' section (or a "
                              f"'pretraining' stage whose pools serve {self.dataset})")
        if self.ssl_checkpoint and not self.uses_ssl:
            raise MedimgError(f"the {self.method} arm starts from no self-supervised checkpoint: drop ssl_checkpoint")
        self.finetune_config(self.seeds[0], weights="checkpoint" if self.uses_ssl else None)  # refuse bad settings now
        TrainerSettings(**self.trainer)

    @classmethod
    def from_profile(cls, profile: "str | dict", dataset: str, method: str, **overrides) -> "Arm":
        """The arm of ``dataset`` x ``method`` as profile ``profile`` of study.yml (a name, or the loaded
        profile) defines it (its ``finetune`` settings, then ``arch_by_method``, ``size_by_method`` and
        ``finetune_by_dataset``), with ``overrides``: ``seeds`` (a list, one number or ``"0,1"``), ``tl_weights``,
        ``results_dir``, or any fine-tuning setting (``size=64``, ``epochs=3``, ``augment=True``). An override of
        None keeps the profile's value, so a template can pass its parameters through unchanged.
        """
        from .profiles import as_profile, study_root
        from .data.registry import get_spec
        from .ssl.stage import arm_checkpoint

        p = as_profile(profile)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        finetune = dict(p["finetune"])
        for key, by_method in (("arch", p.get("arch_by_method", {})), ("size", p.get("size_by_method", {}))):
            if method in by_method:
                finetune[key] = by_method[method]
        finetune.update(p.get("finetune_by_dataset", {}).get(dataset, {}))  # e.g. a cap for one large dataset
        own = {k: overrides.pop(k) for k in ARM_SETTINGS if k in overrides}
        finetune.update(overrides)
        ssl_arm = method in SSL_METHODS
        # the pretraining stage's checkpoint of the arm's network and initialisation, where one serves the dataset
        staged = arm_checkpoint(p, dataset, "imagenet" if method == "tl+ssl" else "random",
                                finetune.get("arch", FinetuneConfig.arch)) if ssl_arm else None
        # else a SimCLR checkpoint of its own, pretrained on the network the arm fine-tunes
        ssl = (dict(p["ssl"], arch=finetune.get("arch", p["ssl"].get("arch"))) if ssl_arm and p.get("ssl")
               and not staged else None)
        return cls(dataset=dataset, method=method, seeds=own.get("seeds", p["seeds"]), finetune=finetune, ssl=ssl,
                   ssl_candidates=tuple(p["ssl_candidates"][get_spec(dataset).modality]) if ssl and ssl_arm else (),
                   ssl_checkpoint=str(staged.path.relative_to(study_root())) if staged else None,
                   tl_weights=own.get("tl_weights", p.get("tl_weights", "auto")),
                   results_dir=own.get("results_dir", p["results_dir"]), trainer=dict(p["trainer"]))

    @classmethod
    def from_dict(cls, d: dict) -> "Arm":
        return cls(**d)

    def to_dict(self) -> dict:
        return dict(dataset=self.dataset, method=self.method, seeds=list(self.seeds), finetune=dict(self.finetune),
                    ssl=dict(self.ssl) if self.ssl else None, ssl_candidates=list(self.ssl_candidates),
                    **({"ssl_checkpoint": self.ssl_checkpoint} if self.ssl_checkpoint else {}), tl_weights=self.tl_weights, results_dir=self.results_dir, trainer=dict(self.trainer))

    @property
    def uses_ssl(self) -> bool:
        return self.method in SSL_METHODS

    @property
    def slug(self) -> str:
        return method_slug(self.method)

    def finetune_config(self, seed: int, weights: str | None = None) -> FinetuneConfig:
        """The run of one seed; ``weights`` is the SimCLR checkpoint of an SSL arm (TL arms take ``tl_weights``)."""
        if self.method == "tl":
            weights = self.tl_weights
        return FinetuneConfig(dataset=self.dataset, method=self.method, weights=weights, seed=seed, **self.finetune)

    def ssl_config(self, pool: list[str]) -> SSLConfig:
        """The SimCLR checkpoint's settings for pool ``pool``; ImageNet init for TL+SSL."""
        return SSLConfig(datasets=tuple(pool), target=self.dataset, init="imagenet" if self.method == "tl+ssl" else
                         "random", **self.ssl)

    def settings(self) -> TrainerSettings:
        return TrainerSettings(**self.trainer)


FINETUNE_SETTINGS = {f for f in FinetuneConfig.__dataclass_fields__ if f not in PER_RUN}


def parse_seeds(seeds) -> tuple[int, ...]:
    """Seeds as a person types them: ``[0, 1]``, ``3`` or ``"0,1"`` (papermill's ``-p seeds 0,1``)."""
    if isinstance(seeds, str):
        seeds = [s for s in seeds.replace(",", " ").split()]
    elif isinstance(seeds, int):
        seeds = [seeds]
    try:
        out = tuple(int(s) for s in seeds)
    except (TypeError, ValueError):
        raise MedimgError(f"seeds {seeds!r} are not whole numbers: give a list such as [0, 1] or 0,1") from None
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise MedimgError(f"seeds {seeds!r}: give one or more different non-negative numbers, e.g. 0,1")
    return out
