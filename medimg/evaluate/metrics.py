"""Classification metrics of one run's predictions (arrays in, plain numbers out)."""
from __future__ import annotations

import numpy as np


def cross_entropy(y_true: np.ndarray, probs: np.ndarray) -> float:
    p = np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1.0)
    return float(-np.log(p).mean())


def summary_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """The headline numbers written to a run's metrics.json."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score

    y_true = np.asarray(y_true)
    y_pred = probs.argmax(1)
    labels = list(range(len(classes)))
    majority = np.bincount(y_true, minlength=len(classes)).max() / len(y_true)
    per_class = dict(
        sensitivity=recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0),
        precision=precision_score(y_true, y_pred, labels=labels, average=None, zero_division=0),
        f1=f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0),
    )
    return dict(
        n=int(len(y_true)),
        accuracy=float((y_pred == y_true).mean()),
        balanced_accuracy=float(balanced_accuracy_score(y_true, y_pred)),
        loss=cross_entropy(y_true, probs),
        macro_f1=float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        majority_accuracy=float(majority),
        per_class={c: {k: float(v[i]) for k, v in per_class.items()} for i, c in enumerate(classes)},
    )
