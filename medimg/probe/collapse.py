"""Label-free signals of a representation's collapse, read beside each point of a learning curve.

* :func:`rankme`: RankMe (Garrido et al., "RankMe: Assessing the downstream performance of pretrained
  self-supervised representations by their rank", ICML 2023): ``exp`` of the entropy of the normalised singular
  values of an ``(N, D)`` feature matrix, between 1 (every image maps to one direction) and ``min(N, D)``.
* :func:`normalised_std`: the mean per-dimension standard deviation of the L2-normalised features (the collapse
  monitor of lightly's ``std_of_l2_normalized`` and of SimSiam, Chen & He 2021): about ``1 / sqrt(D)`` for spread
  features, 0 for collapsed ones.
"""
from __future__ import annotations

import numpy as np


def rankme(features: np.ndarray, eps: float = 1e-7) -> float:
    """RankMe of ``(N, D)`` features (no centring, as the paper)."""
    s = np.linalg.svd(np.asarray(features, dtype=np.float64), compute_uv=False)
    p = s / (s.sum() + eps) + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def normalised_std(features: np.ndarray) -> float:
    """Mean over dimensions of the standard deviation of the L2-normalised ``(N, D)`` features."""
    x = np.asarray(features, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return float(x.std(0).mean())
