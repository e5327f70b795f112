"""Every metric agrees with scikit-learn to 1e-9 on generated predictions (binary, multiclass, ordinal)."""
import numpy as np
import pytest
from sklearn import metrics as skm

from medimg.evaluate.metrics import (cross_entropy, expected_calibration_error, reliability, scalar_metrics,
                                     summary_metrics)

TOL = 1e-9


def predictions(n: int, k: int, seed: int, skill: float = 1.5):
    """Labels and softmax probabilities that carry some signal, with ties in the probabilities."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + skill * np.eye(k)[y]
    logits = np.round(logits, 1)  # ties, which ROC AUC must handle as scikit-learn does
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("k, seed", [(2, 0), (2, 1), (3, 2), (5, 3), (7, 4)])
def test_metrics_match_scikit_learn(k, seed):
    y, probs = predictions(300, k, seed)
    pred = probs.argmax(1)
    classes = [f"c{i}" for i in range(k)]
    labels = list(range(k))
    m = scalar_metrics(y, probs, classes, task="ordinal")
    expected = dict(
        accuracy=skm.accuracy_score(y, pred),
        balanced_accuracy=skm.balanced_accuracy_score(y, pred),
        loss=skm.log_loss(y, probs, labels=labels),
        macro_f1=skm.f1_score(y, pred, average="macro"),
        weighted_f1=skm.f1_score(y, pred, average="weighted"),
        macro_sensitivity=skm.recall_score(y, pred, average="macro"),
        macro_precision=skm.precision_score(y, pred, average="macro", zero_division=0),
        roc_auc=skm.roc_auc_score(y, probs[:, 1]) if k == 2 else skm.roc_auc_score(y, probs, multi_class="ovr"),
        mcc=skm.matthews_corrcoef(y, pred),
        kappa=skm.cohen_kappa_score(y, pred),
        kappa_quadratic=skm.cohen_kappa_score(y, pred, weights="quadratic"),
    )
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, abs=TOL), name
    cm = skm.confusion_matrix(y, pred, labels=labels)
    for i, c in enumerate(classes):
        assert m[f"sensitivity/{c}"] == pytest.approx(skm.recall_score(y, pred, labels=[i], average="macro"), abs=TOL)
        assert m[f"precision/{c}"] == pytest.approx(
            skm.precision_score(y, pred, labels=[i], average="macro", zero_division=0), abs=TOL)
        assert m[f"f1/{c}"] == pytest.approx(skm.f1_score(y, pred, labels=[i], average="macro"), abs=TOL)
        tn = cm.sum() - cm[i].sum() - cm[:, i].sum() + cm[i, i]
        assert m[f"specificity/{c}"] == pytest.approx(tn / (cm.sum() - cm[i].sum()), abs=TOL)
    assert summary_metrics(y, probs, classes)["confusion_matrix"] == cm.tolist()


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


def test_absent_class_gives_undefined_auc_and_zero_scores():
    y = np.array([0, 0, 1, 1, 0])
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1], [0.6, 0.3, 0.1]])
    m = scalar_metrics(y, probs, ["a", "b", "c"])
    assert np.isnan(m["roc_auc"])
    assert m["sensitivity/c"] == 0 and m["precision/c"] == 0
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, probs.argmax(1)), abs=TOL)
    assert m["loss"] == pytest.approx(cross_entropy(y, probs))
