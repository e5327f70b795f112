"""Frozen features: one forward pass of an initialised backbone over a dataset's splits, cached.

The probes of :mod:`medimg.probe.linear_knn` (linear probe, k-nearest neighbours) read these. They compare
initialisations without fine-tuning, as MedMNIST+ does (Doerrich et al., "Rethinking model prototyping
through the MedMNIST+ dataset collection", Scientific Reports 2025): what a network's weights already
separate before any training on the target.

Features are the backbone's pooled output (timm ``num_classes=0``: ``(N, D)`` float32, D = 1280 for
MobileNetV2, 512 for ResNet-18), computed on the evaluation transform (no augmentation) from the
model's ``pretrained_cfg`` normalisation. They depend on the architecture, the weights (a keyword, or
a file by its SHA-256), the seed where the weights are random, the image size, how grey images feed
the model, and the data settings; the cache key holds all of them, and an entry is reused on any
later call (``$MEDIMG_CACHE_DIR/features``; deleting it is always safe).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medimg.atomic import atomic_path, write_text
from medimg.data.pipeline import DataConfig
from medimg.data.records import SPLITS
from medimg.identity import identity
from medimg.models.architectures import WEIGHT_KEYWORDS
from medimg.paths import cache_dir

FEATURES_VERSION = 1


@dataclass(frozen=True)
class Network:
    """The network a probe reads, with what decides its features and its probes: the architecture, the ``weights``
    (a keyword such as ``tflite``, ``random`` for a random initialisation, or a file), the ``seed`` (of a random
    initialisation; the linear probe's too), how grey images feed it (``grey_as``), the dataset's data settings
    (``data``: the dataset, image size and split seed) and the probes' training cap (``max_train_images``). A
    fine-tuning config gives the network its run starts from (its ``network``)."""

    arch: str
    weights: str
    seed: int
    grey_as: str
    data: DataConfig
    max_train_images: int | None = None

    @property
    def dataset(self) -> str:
        return self.data.dataset

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def split_seed(self) -> int:
        return self.data.split_seed

    @property
    def weight_file(self) -> Path | None:
        """The weights as a file path, or None for a keyword source (auto, timm, tflite, efficientnet-lite0, random)."""
        return None if self.weights in WEIGHT_KEYWORDS else Path(self.weights)

    def in_chans(self, image_channels: int) -> int:
        """The model's input channels for images of ``image_channels`` (1 grey, 3 colour): grey images feed a
        1-channel model only with ``grey_as="single"``."""
        return 1 if image_channels == 1 and self.grey_as == "single" else 3


@dataclass(frozen=True)
class FrozenFeatures:
    """Features and labels of each split: ``x[split]`` is ``(N, D)`` float32, ``y[split]`` ``(N,)`` int64."""

    x: dict
    y: dict
    classes: tuple[str, ...]
    key: dict = field(default_factory=dict)  # what decided them (see feature_key)
    seconds: float = 0.0  # extraction time (0 when read from the cache)

    @property
    def dim(self) -> int:
        return int(self.x["train"].shape[1])


def weights_identity(network: Network) -> dict:
    """The weights as part of the features' identity: a keyword, or a file by content; a random init by its seed."""
    from medimg.data.fingerprint import file_sha256

    if network.weights == "random":
        return dict(weights="random", init_seed=network.seed)
    if network.weight_file is not None:
        return dict(weights="file", sha256=file_sha256(network.weight_file))
    return dict(weights=network.weights)


def feature_key(network: Network, fingerprint: str) -> dict:
    """Everything that decides the features of ``network`` on its dataset."""
    return dict(version=FEATURES_VERSION, arch=network.arch, size=network.size, grey_as=network.grey_as,
                data=network.data.to_dict(), fingerprint=fingerprint, **weights_identity(network))


def feature_cache_path(network: Network, key: dict) -> Path:
    """Where the features of ``network`` with :func:`feature_key` ``key`` are cached:
    ``CACHE/features/DATASET-<16 hex digits of the key's identity>.npz``."""
    return cache_dir() / "features" / f"{network.dataset}-{identity(key, digits=16)}.npz"


def extract_features(network: Network, *, data=None, batch_size: int = 256, use_cache: bool = True,
                     progress: bool = False) -> FrozenFeatures:
    """The frozen features of ``network`` (its arch, weights and, if random, seed) on every split of its dataset at
    its size; read from the cache when they were extracted before.

    ``data`` is the prepared dataset, if the caller has it. Raises :class:`~medimg.errors.MedimgError` for
    weights that cannot be had (see :func:`medimg.models.backbones.create_backbone`).
    """
    from medimg.data import prepare

    data = data or prepare(network.data, progress=progress)
    key = feature_key(network, data.source.fingerprint)
    entry = feature_cache_path(network, key)
    if use_cache and entry.is_file():
        with np.load(entry) as stored:
            return FrozenFeatures(x={s: stored[f"x_{s}"] for s in SPLITS}, y={s: stored[f"y_{s}"] for s in SPLITS},
                                  classes=tuple(data.classes), key=key)
    start = time.perf_counter()
    x, y = _forward(network, data, batch_size)
    seconds = time.perf_counter() - start
    if use_cache:
        from medimg.paths import writing_cache

        with writing_cache("write the feature cache", needed_bytes=sum(a.nbytes for a in x.values())):
            with atomic_path(entry) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **{f"x_{s}": x[s] for s in SPLITS}, **{f"y_{s}": y[s] for s in SPLITS})
            write_text(entry.with_suffix(".json"), json.dumps(dict(key, seconds=seconds), indent=1, sort_keys=True))
    return FrozenFeatures(x=x, y=y, classes=tuple(data.classes), key=key, seconds=seconds)


def _forward(network: Network, data, batch_size: int) -> tuple[dict, dict]:
    import torch

    from medimg.models.backbones import create_backbone, model_preprocess

    torch.manual_seed(network.seed)  # a random init is the seed's (the scratch arm's network)
    model, _ = create_backbone(network.arch, num_classes=0, in_chans=network.in_chans(data.decoded.channels),
                               weights=network.weights)
    preprocess = model_preprocess(model, data.decoded.channels, size=network.size, grey_as=network.grey_as)
    return model_features(model, data, preprocess, batch_size=batch_size)


def model_features(model, data, preprocess, *, splits=SPLITS, batch_size: int = 256, keep=None) -> tuple[dict, dict]:
    """``(x, y)``: the pooled features (``model.forward_features`` then ``forward_head(pre_logits=True)``, the
    classifier's input) and labels of each of ``splits`` of prepared ``data``, in eval mode. ``keep`` maps a split
    to the positions within it to read (the rest are not computed). The model's train/eval mode is restored
    afterwards."""
    import torch
    from torch.utils.data import DataLoader

    from medimg.data import ImageDataset

    was_training = model.training
    model.eval()
    x, y = {}, {}
    try:
        with torch.inference_mode():
            for split in splits:
                images, labels, _ = data.part(split)
                if keep and split in keep:
                    images, labels = images[keep[split]], labels[keep[split]]
                loader = DataLoader(ImageDataset(images, labels, preprocess), batch_size=batch_size, shuffle=False)
                x[split] = np.concatenate([model.forward_head(model.forward_features(batch), pre_logits=True)
                                           .float().numpy() for batch, _ in loader]).astype(np.float32)
                y[split] = labels.astype(np.int64)
    finally:
        model.train(was_training)
    return x, y
