"""Class balance for the training split: down-sampling to the minority class or over-sampling.

Only ever applied to training indices; validation and test keep their true class mix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from medimg.errors import MedimgError

BalanceMode = Literal["none", "down", "over"]


@dataclass(frozen=True)
class BalancePlan:
    """Which training images to use, and which of them are extra copies to augment."""

    indices: np.ndarray  # positions into the training arrays, possibly repeated
    extra: np.ndarray  # True where the position is an over-sampled copy
    mode: str
    counts_before: dict[int, int]
    counts_after: dict[int, int]

    def to_dict(self) -> dict:
        return dict(mode=self.mode, counts_before=self.counts_before, counts_after=self.counts_after)


def class_balance(labels: np.ndarray, mode: BalanceMode, *, random_state: int) -> BalancePlan:
    """Balance ``labels`` (the training split's) by ``mode``.

    ``down`` keeps, for every class, a random subset the size of the smallest class. ``over``
    keeps every image and draws extra copies (with replacement) of the smaller classes up to
    the largest; the training loader augments those copies, so they are not exact repeats.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    before = {int(k): int(n) for k, n in zip(classes, counts)}
    rng = np.random.default_rng(random_state)
    if mode == "none":
        idx, extra = np.arange(len(labels)), np.zeros(len(labels), bool)
    elif mode == "down":
        idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == k), counts.min(), replace=False)
                                      for k in classes]))
        extra = np.zeros(len(idx), bool)
    elif mode == "over":
        parts, flags = [np.arange(len(labels))], [np.zeros(len(labels), bool)]
        for k, n in zip(classes, counts):
            if n < counts.max():
                parts.append(rng.choice(np.flatnonzero(labels == k), counts.max() - n, replace=True))
                flags.append(np.ones(counts.max() - n, bool))
        idx, extra = np.concatenate(parts), np.concatenate(flags)
    else:
        raise MedimgError(f"unknown balance mode {mode!r}: use none, down or over")
    after_classes, after_counts = np.unique(labels[idx], return_counts=True)
    return BalancePlan(indices=idx, extra=extra, mode=mode, counts_before=before,
                       counts_after={int(k): int(n) for k, n in zip(after_classes, after_counts)})


def stratified_subsample(labels: np.ndarray, n: int, *, random_state: int) -> np.ndarray:
    """Sorted positions of at most ``n`` items keeping every class's share (each class keeps at least one).

    For quick profiles that cap the training set: the same ``random_state`` gives every arm and
    seed the same images, so the arms stay paired.
    """
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(random_state)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts * n / len(labels)).astype(int))
    # hand the remainder to the classes with the largest fractional parts
    remainder = n - quota.sum()
    if remainder > 0:
        order = np.argsort(-(counts * n / len(labels) - quota), kind="stable")
        quota[order[:remainder]] += 1
    keep = [rng.choice(np.flatnonzero(labels == c), min(q, k), replace=False)
            for c, q, k in zip(classes, quota, counts)]
    return np.sort(np.concatenate(keep))
