"""Classification metrics of one run's predictions (arrays in, plain numbers out).

Everything is computed from the confusion matrix and the class probabilities with numpy, so a
bootstrap can call :func:`scalar_metrics` thousands of times; ``tests/evaluate/test_metrics.py`` checks
each number against scikit-learn to 1e-9 (with ``zero_division=np.nan`` where a ratio can be 0/0).

A metric with no value on the given images is *undefined*: NaN here, ``null`` in metrics.json,
"—" with a footnote in tables, never 0. :func:`undefined_reasons` says why. Per class:

* sensitivity (recall): no image of the class;
* specificity: every image is of the class;
* precision: no image predicted as the class;
* F1: the class is neither present nor predicted;
* one-vs-rest ROC AUC: no image of the class, or every image is of it.

Macro averages (``macro_sensitivity`` = ``balanced_accuracy``, ``macro_precision``, ``macro_f1``,
multiclass ``roc_auc``) average over the classes where the per-class value is defined, as
scikit-learn does with ``zero_division=np.nan``; MCC and Cohen's kappa are undefined where their
denominator is 0 (every image of, or predicted as, one class).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

ECE_BINS = 15

# The values each metric can take, for intervals that must stay inside them (see
# medimg.evaluate.stats.seed_summary). Per-class metrics ("sensitivity/benign") take their base
# name's range.
RANGES: dict[str, tuple[float, float]] = {
    **dict.fromkeys(("accuracy", "balanced_accuracy", "majority_accuracy", "macro_f1", "weighted_f1",
                     "macro_sensitivity", "macro_precision", "roc_auc", "ece", "sensitivity", "specificity",
                     "precision", "f1"), (0.0, 1.0)),
    **dict.fromkeys(("mcc", "kappa", "kappa_quadratic"), (-1.0, 1.0)),
    "brier": (0.0, 2.0),
    "loss": (0.0, math.inf),  # cross-entropy in nats
}

PER_CLASS = ("sensitivity", "specificity", "precision", "f1", "roc_auc")


def metric_range(name: str) -> tuple[float, float]:
    """``(low, high)`` bounds of metric ``name`` (``"sensitivity/benign"`` has ``"sensitivity"``'s).

    Raises ``KeyError`` for a name that is not one of :data:`RANGES`.
    """
    base = name.split("/", 1)[0]
    if base not in RANGES:
        raise KeyError(f"no known range for metric {name!r}: choose one of {', '.join(RANGES)}")
    return RANGES[base]


def cross_entropy(y_true: np.ndarray, probs: np.ndarray) -> float:
    p = np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1.0)
    return float(-np.log(p).mean())


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted ones (scikit-learn's convention)."""
    return np.bincount(n_classes * np.asarray(y_true) + np.asarray(y_pred),
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = np.nan) -> np.ndarray:
    # an empty denominator leaves the ratio undefined (NaN), as scikit-learn's zero_division=np.nan does
    return np.divide(num, den, out=np.full(np.shape(num), empty, dtype=float), where=den > 0)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Sensitivity (recall), specificity, precision and F1 of every class, one-vs-rest; NaN where undefined."""
    tp = np.diag(cm).astype(float)
    fn = cm.sum(1) - tp
    fp = cm.sum(0) - tp
    tn = cm.sum() - tp - fn - fp
    return dict(sensitivity=_ratio(tp, tp + fn), specificity=_ratio(tn, tn + fp), precision=_ratio(tp, tp + fp),
                f1=_ratio(2 * tp, 2 * tp + fp + fn))


def _mean_defined(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The (weighted) mean of the defined values; NaN when none is defined."""
    ok = np.isfinite(values)
    if not ok.any():
        return float("nan")
    return float(np.average(values[ok], weights=None if weights is None else weights[ok]))


def roc_auc_ovr(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC per class (Mann-Whitney with mid-ranks); NaN where a class is absent or is every image."""
    n, k = probs.shape
    out = np.full(k, np.nan)
    for c in range(k):
        pos = y_true == c
        n_pos = int(pos.sum())
        if 0 < n_pos < n:
            ranks = rankdata(probs[:, c])
            out[c] = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos))
    return out


def _roc_auc(per: np.ndarray) -> float:
    return float(per[1]) if len(per) == 2 else _mean_defined(per)


def roc_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Binary: the AUC of the second class's probability; otherwise the macro one-vs-rest AUC over the
    classes where it is defined. NaN when undefined (a single class in ``y_true``)."""
    return _roc_auc(roc_auc_ovr(y_true, probs))


def matthews(cm: np.ndarray) -> float:
    """Matthews' correlation (Gorodkin's multiclass form); NaN when every image is of, or predicted as, one class."""
    t, p = cm.sum(1).astype(float), cm.sum(0).astype(float)
    c, s = float(np.trace(cm)), float(cm.sum())
    den = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((c * s - t @ p) / den) if den > 0 else float("nan")


def cohen_kappa(cm: np.ndarray, weights: str | None = None) -> float:
    """Cohen's kappa; ``weights="quadratic"`` penalises a miss by its squared distance (ordinal grades).

    NaN when chance agreement is perfect (every image of and predicted as one class), as scikit-learn's
    ``cohen_kappa_score`` (``replace_undefined_by=np.nan``).
    """
    k = cm.shape[0]
    expected = np.outer(cm.sum(1), cm.sum(0)) / cm.sum()
    i, j = np.indices((k, k))
    w = (1 - np.eye(k)) if weights is None else (i - j) ** 2 if weights == "quadratic" else np.abs(i - j)
    den = (w * expected).sum()
    return float(1 - (w * cm).sum() / den) if den > 0 else float("nan")


def brier(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Multi-class Brier score: mean squared distance of the probabilities from the one-hot truth.

    For two classes this is twice scikit-learn's binary ``brier_score_loss``.
    """
    onehot = np.eye(probs.shape[1])[y_true]
    return float(((probs - onehot) ** 2).sum(1).mean())


def reliability(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Confidence (top probability) against accuracy in equal-width bins: the reliability diagram's data.

    An empty bin has ``count`` 0 and reads 0 in ``confidence`` and ``accuracy``: mask by ``count``.
    """
    conf = probs.max(1)
    correct = (probs.argmax(1) == y_true).astype(float)
    # bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 cannot occur
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    return dict(edges=np.linspace(0, 1, bins + 1), count=count,
                confidence=_ratio(np.bincount(which, conf, bins), count, empty=0.0),
                accuracy=_ratio(np.bincount(which, correct, bins), count, empty=0.0))


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    r = reliability(y_true, probs, bins)
    return float((r["count"] * np.abs(r["accuracy"] - r["confidence"])).sum() / len(y_true))


def scalar_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str], task: str = "multiclass") -> dict:
    """Every metric of a run as a flat ``{name: float}``; per-class ones are named ``metric/class``.

    ``y_true`` holds class indices (n,), ``probs`` class probabilities (n, len(classes)). Undefined
    metrics are NaN (see the module docstring; :func:`undefined_reasons` says why).
    ``task="ordinal"`` (graded labels, e.g. RetinaMNIST) adds the quadratic-weighted kappa.
    """
    y_true = np.asarray(y_true)
    cm = confusion(y_true, probs.argmax(1), len(classes))
    pc = dict(per_class(cm), roc_auc=roc_auc_ovr(y_true, probs))
    support = cm.sum(1)
    macro_sensitivity = _mean_defined(pc["sensitivity"])  # balanced accuracy by definition
    out = dict(
        accuracy=float(np.trace(cm) / cm.sum()),
        balanced_accuracy=macro_sensitivity,
        loss=cross_entropy(y_true, probs),
        macro_f1=_mean_defined(pc["f1"]),
        weighted_f1=_mean_defined(pc["f1"], support),
        macro_sensitivity=macro_sensitivity,
        macro_precision=_mean_defined(pc["precision"]),
        roc_auc=_roc_auc(pc["roc_auc"]),
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


def _left_out(classes: list[str], out: np.ndarray, why: str) -> str | None:
    """The note on an average taken over the classes not in ``out`` (None when none is left out)."""
    if not out.any() or out.all():
        return None
    names = ", ".join(c for c, o in zip(classes, out) if o)
    return f"averaged over {int((~out).sum())} of {len(classes)} classes; left out {names} ({why})"


def undefined_reasons(y_true: np.ndarray, probs: np.ndarray, classes: list[str],
                      task: str = "multiclass", split: str = "test") -> dict[str, dict[str, str]]:
    """Why metrics of :func:`scalar_metrics` are undefined, and which averages leave classes out.

    Returns ``{"undefined": {name: reason}, "partial": {name: note}}`` keyed by the names
    :func:`scalar_metrics` uses: ``undefined`` names exactly the metrics that are NaN there, e.g.
    ``{"sensitivity/rare": "no test image of class rare"}``; ``partial`` names the defined macro
    averages taken over fewer than all classes, e.g. ``{"roc_auc": "averaged over 2 of 3 classes;
    left out rare (no test image)"}``. ``split`` names the images in the reasons ("test", "validation").
    """
    y_true = np.asarray(y_true)
    cm = confusion(y_true, probs.argmax(1), len(classes))
    t, p, n = cm.sum(1), cm.sum(0), int(cm.sum())
    absent, everything, unpredicted = t == 0, t == n, p == 0
    undefined: dict[str, str] = {}
    for c, a, e, u in zip(classes, absent, everything, unpredicted):
        if a:
            undefined[f"sensitivity/{c}"] = undefined[f"roc_auc/{c}"] = f"no {split} image of class {c}"
        if e:
            undefined[f"specificity/{c}"] = undefined[f"roc_auc/{c}"] = f"every {split} image is of class {c}"
        if u:
            undefined[f"precision/{c}"] = f"no {split} image is predicted as {c}"
        if a and u:
            undefined[f"f1/{c}"] = f"class {c} has no {split} image and is never predicted"
    only = np.flatnonzero(everything)  # the class of every image, if there is one
    if len(only):
        undefined["roc_auc"] = undefined["mcc"] = f"every {split} image is of class {classes[only[0]]}"
    elif (p == n).any():
        undefined["mcc"] = f"every {split} image is predicted as {classes[int(np.argmax(p))]}"
    if len(only) and p[only[0]] == n:
        undefined["kappa"] = (f"every {split} image is of, and predicted as, class {classes[only[0]]}: "
                              f"chance agreement is perfect")
        if task == "ordinal":
            undefined["kappa_quadratic"] = undefined["kappa"]
    partial = dict(balanced_accuracy=_left_out(classes, absent, f"no {split} image"),
                   macro_sensitivity=_left_out(classes, absent, f"no {split} image"),
                   macro_precision=_left_out(classes, unpredicted, "never predicted"),
                   macro_f1=_left_out(classes, absent & unpredicted, f"no {split} image, never predicted"),
                   roc_auc=None if len(classes) == 2 or len(only) else _left_out(classes, absent, f"no {split} image"))
    return dict(undefined=undefined, partial={k: v for k, v in partial.items() if v})


def json_number(value: float) -> float | None:
    """``value`` as JSON can hold it: None (``null``) where it is undefined (NaN or infinite).

    ``json.dumps`` would otherwise write a bare ``NaN``, which is not JSON.
    """
    return float(value) if value is not None and math.isfinite(value) else None


def summary_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str], task: str = "multiclass",
                    split: str = "test") -> dict:
    """The headline numbers written to a run's metrics.json.

    Keys: ``n``, ``majority_accuracy``, every non-per-class metric of :func:`scalar_metrics`,
    ``per_class`` (``{class: {metric: value}}`` for the metrics in :data:`PER_CLASS`),
    ``confusion_matrix`` (rows true, columns predicted), and the two dicts of
    :func:`undefined_reasons`: ``undefined`` (``{name: reason}``, names as in scalar_metrics, e.g.
    ``"sensitivity/rare"``) and ``partial`` (``{name: note}``). An undefined value is None (JSON
    ``null``), and every None has its reason in ``undefined``.
    """
    y_true = np.asarray(y_true)
    flat = {k: json_number(v) for k, v in scalar_metrics(y_true, probs, classes, task).items()}
    majority = np.bincount(y_true, minlength=len(classes)).max() / len(y_true)
    return dict(
        n=int(len(y_true)), majority_accuracy=float(majority),
        **{k: v for k, v in flat.items() if "/" not in k},
        per_class={c: {m: flat[f"{m}/{c}"] for m in PER_CLASS} for c in classes},
        confusion_matrix=confusion(y_true, probs.argmax(1), len(classes)).tolist(),
        **undefined_reasons(y_true, probs, classes, task, split),
    )
