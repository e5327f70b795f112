"""The statistics behave as they claim: interval coverage, exact tests, paired tests and Holm."""
import numpy as np
import pytest
from scipy import special, stats

from medimg.evaluate.stats import BOUND_EPS, bootstrap_ci, holm, mcnemar_exact, paired_test, seed_summary


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


def t_interval_on(z, back):
    """The 95% t interval of the mean of transformed values ``z``, mapped back with ``back``."""
    low, high = stats.t.interval(0.95, len(z) - 1, loc=np.mean(z), scale=stats.sem(z))
    return back(low), back(high)


@pytest.mark.parametrize("values", [[0.99, 1.0], [0.9689, 0.9752], [0.95, 0.97, 0.99, 1.0, 1.0], [0.02, 0.0]])
def test_seed_interval_of_a_proportion_stays_inside_zero_one(values):
    s = seed_summary(values, metric="accuracy")
    assert s["mean"] == pytest.approx(np.mean(values), abs=1e-12)  # still the arithmetic mean
    assert 0 <= s["low"] <= s["mean"] <= s["high"] <= 1
    clipped = np.clip(values, BOUND_EPS, 1 - BOUND_EPS)
    low, high = t_interval_on(special.logit(clipped), special.expit)
    assert (s["low"], s["high"]) == pytest.approx((min(low, s["mean"]), max(high, s["mean"])), abs=1e-12)
    plain = seed_summary(values)  # what compare used to print: outside [0, 1]
    assert plain["low"] < 0 or plain["high"] > 1


def test_seed_interval_of_the_issue_example():
    # two seeds of a grey folder: 0.972 [0.932, 1.012] on the plain scale
    s = seed_summary([0.9689, 0.9752], metric="accuracy")
    assert round(s["mean"], 3) == 0.972 and s["high"] < 1 and s["low"] == pytest.approx(0.889, abs=1e-3)
    assert seed_summary([0.9689, 0.9752], metric="sensitivity/benign") == s  # per-class names take the base range


def test_seed_interval_of_mcc_brier_and_loss_stays_in_range():
    mcc = [0.96, 0.99, 1.0, 0.98]
    s = seed_summary(mcc, metric="mcc")
    assert -1 <= s["low"] <= s["mean"] <= s["high"] <= 1
    low, high = t_interval_on(special.logit((np.clip(mcc, -1, 1 - 2 * BOUND_EPS) + 1) / 2),
                              lambda z: 2 * special.expit(z) - 1)
    assert (s["low"], s["high"]) == pytest.approx((low, high), abs=1e-12)
    assert seed_summary(mcc)["high"] > 1
    negative = seed_summary([-0.97, -0.99], metric="kappa")
    assert -1 <= negative["low"] <= negative["mean"] <= negative["high"] <= 1
    brier = seed_summary([1.97, 1.99, 2.0], metric="brier")
    assert 0 <= brier["low"] <= brier["mean"] <= brier["high"] <= 2
    loss = [0.01, 0.2, 0.003]
    s = seed_summary(loss, metric="loss")
    assert 0 < s["low"] <= s["mean"] <= s["high"]
    assert (s["low"], s["high"]) == pytest.approx(t_interval_on(np.log(loss), np.exp), rel=1e-12)
    assert seed_summary(loss)["low"] < 0


def test_seeds_at_a_bound_and_too_few_seeds():
    perfect = seed_summary([1.0, 1.0, 1.0], metric="roc_auc")
    assert perfect["mean"] == perfect["high"] == 1.0 and perfect["low"] == pytest.approx(1 - BOUND_EPS)
    one = seed_summary([0.8], metric="accuracy")
    assert one["mean"] == 0.8 and np.isnan(one["low"]) and np.isnan(one["high"]) and np.isnan(one["sd"])
    assert one["note"] == "1 seed: no interval" and one["n"] == 1
    assert seed_summary([0.7, 0.75, 0.72], metric="accuracy")["note"] is None
    some = seed_summary([0.8, np.nan, 0.9], metric="mcc")  # MCC undefined on one seed: left out, counted
    assert (some["n"], some["undefined"], some["note"]) == (2, 1, "defined on 2 of 3 seeds")
    assert some["mean"] == pytest.approx(0.85)
    none = seed_summary([np.nan, np.nan], metric="mcc")
    assert np.isnan(none["mean"]) and none["note"] == "undefined on every seed"
    with pytest.raises(KeyError):
        seed_summary([0.5, 0.6], metric="accurracy")


def test_bootstrap_gives_an_undefined_estimate_no_interval_and_its_reason():
    y = np.arange(20)
    probs = np.ones((20, 1))

    def duplicates(yy, pp):  # undefined on the full set (no image twice), defined on nearly every resample
        return {"x": float(len(yy) - len(np.unique(yy))) if len(np.unique(yy)) < len(yy) else np.nan}

    ci = bootstrap_ci(y, probs, duplicates, n_boot=100, reasons={"x": "no image appears twice"})["x"]
    assert np.isnan([ci["estimate"], ci["low"], ci["high"]]).all() and ci["reason"] == "no image appears twice"
    generic = bootstrap_ci(y, probs, duplicates, n_boot=100)["x"]
    assert np.isnan(generic["low"]) and generic["reason"] == "undefined on the test images"


def test_paired_test_leaves_out_seeds_with_an_undefined_value():
    r = paired_test([0.8, np.nan, 0.9, 0.7], [0.7, 0.75, 0.85, 0.7])
    assert r["n"] == 3 and r["mean_difference"] == pytest.approx(0.05)
    assert r["p"] == pytest.approx(stats.ttest_rel([0.8, 0.9, 0.7], [0.7, 0.85, 0.7]).pvalue)
    assert r["note"] == "defined on 3 of 4 seeds"
    one = paired_test([0.8], [0.7])
    assert np.isnan(one["low"]) and one["note"] == "1 seed: no interval"


def test_holm_on_a_worked_example():
    adjusted = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[4])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
