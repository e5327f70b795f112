"""The statistics behave as they claim: interval coverage, exact tests, paired tests and Holm."""
import numpy as np
import pytest
from scipy import stats

from medimg.evaluate.stats import bootstrap_ci, holm, mcnemar_exact, paired_test, seed_summary


def accuracy_only(y, probs):
    return {"accuracy": float((probs.argmax(1) == y).mean())}


def test_bootstrap_interval_covers_a_known_accuracy_95_percent_of_the_time():
    true_accuracy, n, repetitions = 0.8, 200, 400
    rng = np.random.default_rng(12345)
    covered = 0
    for r in range(repetitions):
        y = rng.integers(0, 2, n)
        right = rng.uniform(size=n) < true_accuracy
        pred = np.where(right, y, 1 - y)
        probs = np.eye(2)[pred]
        ci = bootstrap_ci(y, probs, accuracy_only, n_boot=1000, random_state=r)["accuracy"]
        covered += ci["low"] <= true_accuracy <= ci["high"]
    coverage = covered / repetitions
    print(f"bootstrap coverage {coverage:.3f}")
    assert 0.93 <= coverage <= 0.97


def test_bootstrap_is_reproducible_and_flags_undefined_resamples():
    rng = np.random.default_rng(0)
    y = np.array([0] * 28 + [1] * 2)
    probs = rng.dirichlet([1, 1], 30)

    def auc(yy, pp):
        from medimg.evaluate.metrics import roc_auc
        return {"roc_auc": roc_auc(yy, pp)}

    a = bootstrap_ci(y, probs, auc, n_boot=300, random_state=3)
    assert a == bootstrap_ci(y, probs, auc, n_boot=300, random_state=3)
    assert a["roc_auc"]["undefined"] > 0  # some resamples draw no positive
    assert a["roc_auc"]["low"] <= a["roc_auc"]["high"]


@pytest.mark.parametrize("b, c", [(0, 0), (0, 5), (3, 12), (10, 10), (25, 9), (1, 40), (60, 45)])
def test_mcnemar_is_the_exact_binomial_test(b, c):
    # tables built from per-image correctness: b images only A gets right, c only B, plus agreements
    a_right = np.array([1] * b + [0] * c + [1] * 30 + [0] * 7, bool)
    b_right = np.array([0] * b + [1] * c + [1] * 30 + [0] * 7, bool)
    result = mcnemar_exact(a_right, b_right)
    assert (result["b"], result["c"]) == (b, c)
    expected = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5).pvalue
    assert result["p"] == pytest.approx(expected, rel=1e-12)


def test_paired_test_agrees_with_scipy_and_reports_effect_size():
    a = np.array([0.81, 0.84, 0.80, 0.86, 0.83])
    b = np.array([0.78, 0.80, 0.79, 0.81, 0.80])
    r = paired_test(a, b)
    assert r["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    d = a - b
    assert r["cohens_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert r["low"] < d.mean() < r["high"]
    assert r["p_wilcoxon"] == pytest.approx(0.0625)  # the smallest possible with 5 pairs


def test_seed_summary_t_interval():
    v = [0.7, 0.75, 0.72, 0.8, 0.78]
    s = seed_summary(v)
    low, high = stats.t.interval(0.95, 4, loc=np.mean(v), scale=stats.sem(v))
    assert (s["low"], s["high"]) == pytest.approx((low, high))
    assert s["sd"] == pytest.approx(np.std(v, ddof=1))


def test_holm_on_a_worked_example():
    adjusted = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[4])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
