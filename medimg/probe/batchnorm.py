"""Which batch-norm statistics a frozen network is read with: one rule for every network (issue #30).

A network read frozen (a probe, kNN, the learning curve) normalises each layer with the running statistics it
carries, and those differ by how the network was made: ImageNet weights carry statistics of clean ImageNet images; a
self-supervised checkpoint, of the *augmented views* it trained on; a random network, the initial zeros and ones,
of no images at all. Read as they are, the three are not on an equal footing.

**The rule** (:data:`RULE`, ``"clean"``): every network is read with the statistics of clean (un-augmented) images
of the data it learnt from, label-free and target-free: ImageNet weights as they are (ImageNet's own); a
self-supervised checkpoint whose statistics followed its views, with statistics recomputed on clean images of its
pool at the end of pretraining (what the stage stores in the checkpoint); one continued from ImageNet with its
statistics frozen (``backbone_bn: frozen``, init ``checkpoint-frozen``), as it is, since they are still ImageNet's
clean ones; a random network, which learnt from nothing, with statistics of the same clean pool images as the
checkpoints it is the reference for. The alternatives (``"carried"``: as stored, the views'
statistics for a checkpoint and zeros and ones for a random network; ``"pool"``: recomputed on the pool for every
network, ImageNet's included) are measured once, in the pretraining budget chapter.

:func:`with_statistics` gives a copy of a backbone with its statistics recomputed on a batch of images (a
cumulative average over every image, as ``momentum=None`` makes it), the original untouched.
"""
from __future__ import annotations

import copy

import numpy as np

RULE = "clean"
RULES = ("clean", "carried", "pool")
POOL_IMAGES = 2048  # clean pool images the statistics are recomputed on (a seeded subsample of the pool)


KEEPS_CLEAN = ("imagenet", "checkpoint-frozen")  # networks whose statistics are already of clean images


def recompute(rule: str, init: str) -> bool:
    """Whether ``rule`` reads a network of initialisation ``init`` (``random``, ``imagenet``, ``checkpoint``, or
    ``checkpoint-frozen`` for one continued from ImageNet with frozen statistics) with statistics recomputed on clean
    pool images (True) or with those it carries (False)."""
    if rule not in RULES:
        raise ValueError(f"unknown batch-norm rule {rule!r}: choose one of {', '.join(RULES)}")
    return rule == "pool" or (rule == "clean" and init not in KEEPS_CLEAN)


def checkpoint_init(config) -> str:
    """How the rule sees a checkpoint being pretrained with ``config`` (:class:`~medimg.ssl.config.SSLConfig`)."""
    return "checkpoint-frozen" if config.backbone_bn == "frozen" else "checkpoint"


def clean_pool_batch(images: np.ndarray, preprocess, *, seed: int = 0, limit: int = POOL_IMAGES):
    """A seeded subsample of at most ``limit`` pooled uint8 images ``(N, H, W, C)`` through the evaluation
    preprocessing (no augmentation): ``(n, C, size, size)`` float32."""
    import torch

    from medimg.data import ImageDataset

    keep = np.sort(np.random.default_rng(seed).permutation(len(images))[:limit])
    data = ImageDataset(images[keep], np.zeros(len(keep), dtype=np.int64), preprocess)
    return torch.stack([data[i][0] for i in range(len(data))])


def with_statistics(backbone, images, *, batch_size: int = 256):
    """A copy of ``backbone`` whose batch-norm layers hold the mean and variance of ``images`` (``(n, C, H, W)``
    preprocessed), in eval mode; a network without batch norm is copied as it is."""
    import torch
    from torch import nn

    model = copy.deepcopy(backbone)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
    model.train()
    with torch.no_grad():
        for batch in images.split(batch_size):
            model(batch)
    for m, original in zip(norms, (m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))):
        m.momentum = original.momentum
    return model.eval()
