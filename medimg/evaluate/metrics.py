"""Classification metrics of one run's predictions (arrays in, plain numbers out).

Everything is computed from the confusion matrix and the class probabilities with numpy, so a
bootstrap can call :func:`scalar_metrics` thousands of times; ``tests/test_metrics.py`` checks
each number against scikit-learn to 1e-9.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

ECE_BINS = 15


def cross_entropy(y_true: np.ndarray, probs: np.ndarray) -> float:
    p = np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1.0)
    return float(-np.log(p).mean())


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted ones (scikit-learn's convention)."""
    return np.bincount(n_classes * np.asarray(y_true) + np.asarray(y_pred),
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # an empty denominator scores 0, as scikit-learn's zero_division=0 does
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Sensitivity (recall), specificity, precision and F1 of every class, one-vs-rest."""
    tp = np.diag(cm).astype(float)
    fn = cm.sum(1) - tp
    fp = cm.sum(0) - tp
    tn = cm.sum() - tp - fn - fp
    sensitivity = _ratio(tp, tp + fn)
    precision = _ratio(tp, tp + fp)
    return dict(sensitivity=sensitivity, specificity=_ratio(tn, tn + fp), precision=precision,
                f1=_ratio(2 * tp, 2 * tp + fp + fn))


def roc_auc_ovr(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC per class (Mann-Whitney with mid-ranks; NaN where a class is absent)."""
    n, k = probs.shape
    out = np.full(k, np.nan)
    for c in range(k):
        pos = y_true == c
        n_pos = int(pos.sum())
        if 0 < n_pos < n:
            ranks = rankdata(probs[:, c])
            out[c] = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos))
    return out


def roc_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Binary: the AUC of the second class's probability; otherwise the macro one-vs-rest AUC."""
    per = roc_auc_ovr(y_true, probs)
    return float(per[1]) if probs.shape[1] == 2 else float(np.mean(per))


def matthews(cm: np.ndarray) -> float:
    t, p = cm.sum(1).astype(float), cm.sum(0).astype(float)
    c, s = float(np.trace(cm)), float(cm.sum())
    den = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((c * s - t @ p) / den) if den > 0 else 0.0


def cohen_kappa(cm: np.ndarray, weights: str | None = None) -> float:
    """Cohen's kappa; ``weights="quadratic"`` penalises a miss by its squared distance (ordinal grades)."""
    k = cm.shape[0]
    expected = np.outer(cm.sum(1), cm.sum(0)) / cm.sum()
    i, j = np.indices((k, k))
    w = (1 - np.eye(k)) if weights is None else (i - j) ** 2 if weights == "quadratic" else np.abs(i - j)
    den = (w * expected).sum()
    return float(1 - (w * cm).sum() / den) if den > 0 else 0.0


def brier(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Multi-class Brier score: mean squared distance of the probabilities from the one-hot truth.

    For two classes this is twice scikit-learn's binary ``brier_score_loss``.
    """
    onehot = np.eye(probs.shape[1])[y_true]
    return float(((probs - onehot) ** 2).sum(1).mean())


def reliability(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Confidence (top probability) against accuracy in equal-width bins: the reliability diagram's data."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == y_true).astype(float)
    # bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 cannot occur
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    return dict(edges=np.linspace(0, 1, bins + 1), count=count,
                confidence=_ratio(np.bincount(which, conf, bins), count),
                accuracy=_ratio(np.bincount(which, correct, bins), count))


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    r = reliability(y_true, probs, bins)
    return float((r["count"] * np.abs(r["accuracy"] - r["confidence"])).sum() / len(y_true))


def scalar_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str], task: str = "multiclass") -> dict:
    """Every metric of a run as a flat ``{name: float}``; per-class ones are named ``metric/class``.

    ``task="ordinal"`` (graded labels, e.g. RetinaMNIST) adds the quadratic-weighted kappa.
    """
    y_true = np.asarray(y_true)
    k = len(classes)
    cm = confusion(y_true, probs.argmax(1), k)
    pc = per_class(cm)
    support = cm.sum(1)
    present = support > 0  # balanced accuracy averages over the classes that occur, as scikit-learn does
    out = dict(
        accuracy=float(np.trace(cm) / cm.sum()),
        balanced_accuracy=float(pc["sensitivity"][present].mean()),
        loss=cross_entropy(y_true, probs),
        macro_f1=float(pc["f1"].mean()),
        weighted_f1=float((pc["f1"] * support).sum() / support.sum()),
        macro_sensitivity=float(pc["sensitivity"].mean()),
        macro_precision=float(pc["precision"].mean()),
        roc_auc=roc_auc(y_true, probs),
        mcc=matthews(cm),
        kappa=cohen_kappa(cm),
        ece=expected_calibration_error(y_true, probs),
        brier=brier(y_true, probs),
    )
    if task == "ordinal":
        out["kappa_quadratic"] = cohen_kappa(cm, "quadratic")
    for name, values in pc.items():
        for c, v in zip(classes, values):
            out[f"{name}/{c}"] = float(v)
    return out


def summary_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str], task: str = "multiclass") -> dict:
    """The headline numbers written to a run's metrics.json."""
    y_true = np.asarray(y_true)
    flat = scalar_metrics(y_true, probs, classes, task)
    majority = np.bincount(y_true, minlength=len(classes)).max() / len(y_true)
    return dict(
        n=int(len(y_true)), majority_accuracy=float(majority),
        **{k: v for k, v in flat.items() if "/" not in k},
        per_class={c: {m: flat[f"{m}/{c}"] for m in ("sensitivity", "specificity", "precision", "f1")}
                   for c in classes},
        confusion_matrix=confusion(y_true, probs.argmax(1), len(classes)).tolist(),
    )
