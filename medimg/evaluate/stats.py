"""Statistics the paper lacks: bootstrap intervals, summaries over seeds, paired tests, Holm.

Functions take arrays and return plain numbers, so each is tested without any model.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats

LEVEL = 0.95
N_BOOT = 2000


def bootstrap_ci(y_true: np.ndarray, probs: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], dict],
                 *, n_boot: int = N_BOOT, level: float = LEVEL, random_state: int = 0) -> dict[str, dict]:
    """Percentile bootstrap over test images for every metric ``metric(y, probs)`` returns.

    Returns ``{name: {"estimate", "low", "high", "undefined"}}``; ``undefined`` counts resamples
    where the metric had no value (e.g. ROC AUC when a class was not drawn), left out of the interval.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    estimate = metric(y_true, probs)
    rng = np.random.default_rng(random_state)
    n = len(y_true)
    draws = {k: np.empty(n_boot) for k in estimate}
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        for k, v in metric(y_true[idx], probs[idx]).items():
            draws[k][b] = v
    alpha = (1 - level) / 2
    out = {}
    for k, v in estimate.items():
        finite = draws[k][np.isfinite(draws[k])]
        low, high = np.quantile(finite, [alpha, 1 - alpha]) if len(finite) else (np.nan, np.nan)
        out[k] = dict(estimate=float(v), low=float(low), high=float(high), undefined=int(n_boot - len(finite)))
    return out


def seed_summary(values, level: float = LEVEL) -> dict:
    """Mean, standard deviation and a t interval for the mean of one metric over seeds."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n)) if n > 1 else float("nan")
    return dict(n=n, mean=mean, sd=sd, low=mean - half, high=mean + half)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's exact test for two classifiers on the same images.

    Only the discordant images count: ``b`` where A is right and B wrong, ``c`` the reverse. Under
    the null each is equally likely, so ``b ~ Binomial(b + c, 1/2)``; the two-sided p doubles the
    smaller tail. ``odds_ratio`` (b / c) is the effect size.
    """
    a, bb = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != bb.shape:
        raise ValueError("McNemar's test needs both classifiers' results on the same images")
    b, c = int((a & ~bb).sum()), int((~a & bb).sum())
    p = 1.0 if b + c == 0 else float(min(1.0, 2 * stats.binom.cdf(min(b, c), b + c, 0.5)))
    return dict(b=b, c=c, p=p, odds_ratio=float(b / c) if c else float("inf") if b else float("nan"))


def paired_test(a, b, level: float = LEVEL) -> dict:
    """A paired t test of ``a - b`` across seeds, with Cohen's d_z and the interval of the mean difference.

    The Wilcoxon signed-rank p is reported too; with 5 seeds its smallest possible two-sided
    value is 0.0625, so it can never reach 0.05 there, which is why the t test is the primary one.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    n = len(d)
    summary = seed_summary(d, level)
    sd = summary["sd"]
    if n < 2:
        p = float("nan")
    elif sd == 0:
        p = 1.0 if summary["mean"] == 0 else 0.0  # every seed moved by the same amount
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    nonzero = d[d != 0]
    wilcoxon = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) >= 1 and n >= 2 else float("nan")
    return dict(n=n, mean_difference=summary["mean"], low=summary["low"], high=summary["high"], p=p,
                p_wilcoxon=wilcoxon, cohens_dz=float(summary["mean"] / sd) if sd and sd > 0 else float("nan"))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment: family-wise error control across, e.g., datasets. NaNs stay NaN."""
    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
