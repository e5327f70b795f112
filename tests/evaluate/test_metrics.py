"""Every metric agrees with scikit-learn to 1e-9 on generated predictions (binary, multiclass, ordinal),
undefined ones included: NaN with a reason, as scikit-learn's ``zero_division=np.nan``, never 0."""
import json
import re
from functools import partial

import numpy as np
import pytest
from sklearn import metrics as skm

from medimg.evaluate.metrics import (expected_calibration_error, metric_range, reliability, scalar_metrics,
                                     summary_metrics, undefined_reasons)
from medimg.compare.report import intervals_markdown
from medimg.evaluate.stats import bootstrap_ci

TOL = 1e-9


def predictions(n: int, k: int, seed: int, skill: float = 1.5):
    """Labels and softmax probabilities that carry some signal, with ties in the probabilities."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + skill * np.eye(k)[y]
    logits = np.round(logits, 1)  # ties, which ROC AUC must handle as scikit-learn does
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


def same(value, expected) -> bool:
    """Equal to 1e-9, or both undefined (NaN)."""
    return bool(np.isnan(value) and np.isnan(expected)) or value == pytest.approx(expected, abs=TOL)


def scikit_learn_metrics(y, probs, k) -> dict:
    """What scikit-learn says of every metric, undefined ratios NaN (``zero_division=np.nan``), per class too."""
    pred = probs.argmax(1)
    labels = list(range(k))
    nan = dict(labels=labels, zero_division=np.nan)
    defined_auc = [c for c in labels if 0 < (y == c).sum() < len(y)]
    if k == 2:
        auc = skm.roc_auc_score(y, probs[:, 1]) if len(defined_auc) == 2 else np.nan
    elif len(defined_auc) == k:
        auc = skm.roc_auc_score(y, probs, multi_class="ovr")
    else:  # macro one-vs-rest over the classes where it is defined
        auc = skm.roc_auc_score(np.eye(k)[y][:, defined_auc], probs[:, defined_auc]) if defined_auc else np.nan
    one_class_true, one_class_pred = len(set(y)) == 1, len(set(pred)) == 1
    out = dict(
        accuracy=skm.accuracy_score(y, pred),
        balanced_accuracy=skm.balanced_accuracy_score(y, pred),
        loss=skm.log_loss(y, probs, labels=labels),
        macro_f1=skm.f1_score(y, pred, average="macro", **nan),
        weighted_f1=skm.f1_score(y, pred, average="weighted", **nan),
        macro_sensitivity=skm.recall_score(y, pred, average="macro", **nan),
        macro_precision=skm.precision_score(y, pred, average="macro", **nan),
        roc_auc=auc,
        # scikit-learn scores an MCC with a zero denominator 0; it is undefined
        mcc=np.nan if one_class_true or one_class_pred else skm.matthews_corrcoef(y, pred),
        kappa=skm.cohen_kappa_score(y, pred, labels=labels, replace_undefined_by=np.nan),
        kappa_quadratic=skm.cohen_kappa_score(y, pred, labels=labels, weights="quadratic",
                                              replace_undefined_by=np.nan),
    )
    cm = skm.confusion_matrix(y, pred, labels=labels)
    for name, score in (("sensitivity", skm.recall_score), ("precision", skm.precision_score), ("f1", skm.f1_score)):
        for i, value in enumerate(score(y, pred, average=None, **nan)):
            out[f"{name}/c{i}"] = value
    for i in labels:
        tn = cm.sum() - cm[i].sum() - cm[:, i].sum() + cm[i, i]
        negatives = cm.sum() - cm[i].sum()
        out[f"specificity/c{i}"] = tn / negatives if negatives else np.nan
        out[f"roc_auc/c{i}"] = skm.roc_auc_score(y == i, probs[:, i]) if i in defined_auc else np.nan
    return out


def assert_agrees_with_scikit_learn(y, probs, k):
    m = scalar_metrics(y, probs, [f"c{i}" for i in range(k)], task="ordinal")
    expected = scikit_learn_metrics(y, probs, k)
    wrong = {name: (m[name], value) for name, value in expected.items() if not same(m[name], value)}
    assert not wrong
    assert set(expected) <= set(m)
    assert m["balanced_accuracy"] == m["macro_sensitivity"]  # the same quantity, by definition
    reasons = undefined_reasons(y, probs, [f"c{i}" for i in range(k)], task="ordinal")["undefined"]
    assert set(reasons) == {name for name, value in m.items() if np.isnan(value)}  # every NaN has its reason


@pytest.mark.parametrize("k, seed", [(2, 0), (2, 1), (3, 2), (5, 3), (7, 4)])
def test_metrics_match_scikit_learn(k, seed):
    y, probs = predictions(300, k, seed)
    assert_agrees_with_scikit_learn(y, probs, k)
    labels = list(range(k))
    cm = skm.confusion_matrix(y, probs.argmax(1), labels=labels)
    assert summary_metrics(y, probs, [f"c{i}" for i in labels])["confusion_matrix"] == cm.tolist()


def absent_and_unpredicted(k, seed):
    """Predictions where class k-1 has no test image and class k-2 is never predicted (but present)."""
    y, probs = predictions(200, k, seed)
    y = np.where(y == k - 1, 0, y)
    probs = probs.copy()
    probs[:, k - 2] = probs.min(1) / 2
    return y, probs / probs.sum(1, keepdims=True)


@pytest.mark.parametrize("k, seed", [(3, 10), (4, 11), (6, 12)])
def test_undefined_classes_match_scikit_learn_with_zero_division_nan(k, seed):
    y, probs = absent_and_unpredicted(k, seed)
    assert set(y) == set(range(k - 1)) and k - 2 not in set(probs.argmax(1)) and k - 1 in set(probs.argmax(1))
    assert_agrees_with_scikit_learn(y, probs, k)


def test_one_class_leaves_roc_auc_mcc_and_kappa_undefined():
    y = np.zeros(20, int)
    probs = np.tile([0.7, 0.2, 0.1], (20, 1))
    assert_agrees_with_scikit_learn(y, probs, 3)
    m = summary_metrics(y, probs, ["a", "b", "c"])
    assert m["roc_auc"] is m["mcc"] is m["kappa"] is m["per_class"]["a"]["specificity"] is None
    assert m["accuracy"] == 1.0 and m["balanced_accuracy"] == 1.0
    assert m["undefined"]["roc_auc"] == m["undefined"]["mcc"] == "every test image is of class a"
    assert "chance agreement is perfect" in m["undefined"]["kappa"]
    # the binary AUC is undefined without images of both classes; MCC when every image is predicted alike
    y2, probs2 = np.array([0, 1, 1, 0]), np.tile([0.6, 0.4], (4, 1))
    assert_agrees_with_scikit_learn(y2, probs2, 2)
    assert summary_metrics(y2, probs2, ["a", "b"])["undefined"] == {
        "precision/b": "no test image is predicted as b", "mcc": "every test image is predicted as a"}


def test_every_metric_has_a_range():
    y, probs = predictions(50, 3, 9)
    for name in scalar_metrics(y, probs, ["a", "b", "c"], task="ordinal"):
        low, high = metric_range(name)
        assert low < high
    assert metric_range("sensitivity/benign") == (0, 1) and metric_range("mcc") == (-1, 1)
    assert metric_range("brier") == (0, 2) and metric_range("loss") == (0, np.inf)
    with pytest.raises(KeyError, match="no known range"):
        metric_range("accurracy")


def test_binary_brier_is_twice_scikit_learns():
    y, probs = predictions(200, 2, 5)
    assert scalar_metrics(y, probs, ["a", "b"])["brier"] == pytest.approx(
        2 * skm.brier_score_loss(y, probs[:, 1]), abs=TOL)


def test_brier_multiclass_against_its_definition():
    y, probs = predictions(100, 4, 6)
    by_hand = np.mean([sum((probs[i, j] - (y[i] == j)) ** 2 for j in range(4)) for i in range(len(y))])
    assert scalar_metrics(y, probs, list("abcd"))["brier"] == pytest.approx(by_hand, abs=TOL)


def test_reliability_matches_scikit_learn_calibration_curve():
    # for two classes, confidence = max(p, 1 - p); check the bins against a direct computation
    y, probs = predictions(500, 3, 7, skill=2.5)
    r = reliability(y, probs, bins=10)
    conf, correct = probs.max(1), probs.argmax(1) == y
    for b in range(10):
        inside = (conf > b / 10) & (conf <= (b + 1) / 10)
        assert r["count"][b] == inside.sum()
        if inside.any():
            assert r["accuracy"][b] == pytest.approx(correct[inside].mean(), abs=TOL)
            assert r["confidence"][b] == pytest.approx(conf[inside].mean(), abs=TOL)
    # a classifier that is right exactly as often as it says is calibrated; an overconfident one is not
    rng = np.random.default_rng(0)
    p_top = rng.uniform(0.5, 1.0, 20000)
    right = rng.uniform(size=20000) < p_top
    y2 = np.where(right, 0, 1)
    calibrated = np.stack([p_top, 1 - p_top], 1)
    assert expected_calibration_error(y2, calibrated) < 0.02
    overconfident = np.stack([np.full(20000, 0.99), np.full(20000, 0.01)], 1)
    assert expected_calibration_error(y2, overconfident) == pytest.approx(0.99 - right.mean(), abs=1e-9)


def test_a_class_without_test_images_is_undefined_with_its_reason():
    classes = ["benign", "malignant", "rare"]
    y, probs = predictions(120, 3, 13)
    y = np.where(y == 2, 0, y)  # no test image of "rare" (some are still predicted as it)
    pred = probs.argmax(1)
    m = scalar_metrics(y, probs, classes)
    assert np.isnan(m["sensitivity/rare"]) and np.isnan(m["roc_auc/rare"])
    assert m["precision/rare"] == 0 and m["f1/rare"] == 0  # predicted, never right: defined and 0
    assert m["balanced_accuracy"] == m["macro_sensitivity"] == pytest.approx(
        skm.balanced_accuracy_score(y, pred), abs=TOL)
    assert m["macro_sensitivity"] == pytest.approx(np.mean([skm.recall_score(y == c, pred == c) for c in (0, 1)]),
                                                   abs=TOL)
    present = [0, 1]  # ROC AUC: the macro average over the classes with test images
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(np.eye(3)[y][:, present], probs[:, present]), abs=TOL)
    assert m["roc_auc"] == pytest.approx(np.mean([skm.roc_auc_score(y == c, probs[:, c]) for c in present]), abs=TOL)

    s = summary_metrics(y, probs, classes)
    assert s["per_class"]["rare"]["sensitivity"] is None and s["per_class"]["rare"]["roc_auc"] is None
    assert s["undefined"] == {"sensitivity/rare": "no test image of class rare",
                              "roc_auc/rare": "no test image of class rare"}
    left_out = "averaged over 2 of 3 classes; left out rare (no test image)"
    assert s["partial"] == {"balanced_accuracy": left_out, "macro_sensitivity": left_out, "roc_auc": left_out}
    assert s["roc_auc"] == pytest.approx(m["roc_auc"]) and s["balanced_accuracy"] == s["macro_sensitivity"]
    written = json.dumps(s, allow_nan=False)  # metrics.json: null, never a bare NaN
    assert json.loads(written)["per_class"]["rare"]["sensitivity"] is None

    # evaluate's table: "—" with the reason as a footnote, the partial average footnoted too
    metric = partial(scalar_metrics, classes=classes)
    intervals = bootstrap_ci(y, probs, metric, n_boot=50, reasons=undefined_reasons(y, probs, classes)["undefined"])
    rare = intervals["sensitivity/rare"]
    assert np.isnan([rare["estimate"], rare["low"], rare["high"]]).all()  # no interval around nothing
    assert rare["reason"] == "no test image of class rare" and intervals["accuracy"]["reason"] is None
    md = intervals_markdown(intervals, s["partial"])
    lines = md.splitlines()
    assert "| sensitivity/rare | —² | — | — |" in lines and "| roc_auc/rare | —² | — | — |" in lines
    assert f"- ¹ {left_out}" in lines and "- ² no test image of class rare" in lines
    assert any(line.startswith("| roc_auc | ") and line.split(" | ")[1].endswith("¹") for line in lines)
    assert not re.search(r"\bnan\b", md, re.IGNORECASE) and "0.000 [0.000, 0.000]" not in md
    assert "| accuracy | " in md
