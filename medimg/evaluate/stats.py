"""Statistics the paper lacks: bootstrap intervals, summaries over seeds, paired tests (paired t over seeds, exact
McNemar on one test set), Holm's adjustment. Which test a comparison uses, and over which family Holm adjusts, is
:func:`medimg.compare.comparison.compare_runs`.

Functions take arrays and return plain numbers, so each is tested without any model.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import special, stats

from medimg.evaluate.metrics import metric_range

LEVEL = 0.95
N_BOOT = 2000
BOUND_EPS = 1e-3  # how far inside its bounds a value is clipped before a logit (units of the metric's range)
LOG_FLOOR = 1e-6  # the least value - low taken before a log (a metric in [low, inf), e.g. loss in nats)


def bootstrap_ci(y_true: np.ndarray, probs: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], dict],
                 *, n_boot: int = N_BOOT, level: float = LEVEL, random_state: int = 0,
                 reasons: dict[str, str] | None = None) -> dict[str, dict]:
    """Percentile bootstrap over test images (Efron & Tibshirani 1993) for every metric ``metric(y, probs)`` returns.

    Returns ``{name: {"estimate", "low", "high", "undefined", "reason"}}``. ``undefined`` counts
    resamples where the metric had no value (NaN, e.g. ROC AUC when a class was not drawn), left
    out of the interval. An estimate that is itself undefined on the full test set gets no interval
    (``low`` and ``high`` NaN) and ``reason`` says why: ``reasons[name]`` when given (e.g.
    :func:`medimg.evaluate.metrics.undefined_reasons`), else a generic one. ``reason`` is None
    for a defined estimate with an interval.
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
        reason = None
        if not np.isfinite(v):
            reason = (reasons or {}).get(k, "undefined on the test images")
        elif not len(finite):
            reason = "undefined on every bootstrap resample"
        low, high = np.quantile(finite, [alpha, 1 - alpha]) if reason is None else (np.nan, np.nan)
        out[k] = dict(estimate=float(v), low=float(low), high=float(high), undefined=int(n_boot - len(finite)),
                      reason=reason)
    return out


def _scale(metric: str | None, eps: float) -> tuple[Callable, Callable]:
    """The transform to the scale a t interval of ``metric`` is computed on, and its inverse.

    [low, high] bounded: rescaled to [0, 1], clipped to [eps, 1 - eps] (the logit of 0 or 1 is
    infinite), logit; [low, inf): log of ``value - low`` clipped to at least ``LOG_FLOOR``; ``None``: none.
    """
    if metric is None:
        return (lambda v: v), (lambda z: z)
    lo, hi = metric_range(metric)
    if np.isinf(hi):
        return (lambda v: np.log(np.maximum(v - lo, LOG_FLOOR))), (lambda z: lo + np.exp(z))
    return ((lambda v: special.logit(np.clip((v - lo) / (hi - lo), eps, 1 - eps))),
            (lambda z: lo + (hi - lo) * special.expit(z)))


def seed_summary(values, level: float = LEVEL, *, metric: str | None = None, eps: float = BOUND_EPS) -> dict:
    """Mean, standard deviation and a t interval for the mean of one metric over seeds.

    ``values`` holds one number per seed; NaN ones (the metric undefined on that seed) are left
    out and counted in ``undefined``. With ``metric`` (a name of
    :data:`medimg.evaluate.metrics.RANGES`; ``"sensitivity/benign"`` takes ``"sensitivity"``'s
    range) the interval is computed on a transformed scale and mapped back, so it stays inside the
    metric's range: logit for [0, 1] metrics, the logit after rescaling for [-1, 1] (MCC, kappa)
    and [0, 2] (Brier), log for [0, inf) (loss). Values within ``eps`` of a bound (in units of the
    range) are clipped to ``eps`` inside it first; ``eps`` sets how wide the interval of seeds at a
    bound is (0.001 is about half an image of accuracy on 500 test images). ``mean`` stays the
    arithmetic mean, and the interval is widened where needed to contain it (the back-transformed
    interval is centred on the mean of the transformed values, and clipping can push it off a
    bound). With two seeds (one degree of freedom, t = 12.7) an interval near a bound can span most
    of the range: the plain interval was as wide, but ran past the bound. Without ``metric`` (e.g. a
    difference between arms) the interval is the plain t interval.

    Returns ``dict(n, undefined, mean, sd, low, high, note)``: ``n`` counts the defined values;
    ``low``/``high`` are NaN with fewer than two, and ``note`` then says why (``"1 seed: no
    interval"``); it also notes seeds left out; otherwise it is None.
    """
    v = np.asarray(values, dtype=float)
    defined = v[np.isfinite(v)]
    n, total = len(defined), len(v)
    mean = float(defined.mean()) if n else float("nan")
    sd = float(defined.std(ddof=1)) if n > 1 else float("nan")
    low = high = float("nan")
    if n > 1:
        forward, back = _scale(metric, eps)
        z = forward(defined)
        half = stats.t.ppf(0.5 + level / 2, n - 1) * z.std(ddof=1) / np.sqrt(n)
        low, high = min(float(back(z.mean() - half)), mean), max(float(back(z.mean() + half)), mean)
    if n == total:
        note = {0: "no seed", 1: "1 seed: no interval"}.get(n)
    else:
        note = ("undefined on every seed" if n == 0 else
                f"defined on {n} of {total} seeds" + (": no interval" if n == 1 else ""))
    return dict(n=n, undefined=total - n, mean=mean, sd=sd, low=low, high=high, note=note)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's exact test for two classifiers on the same images.

    Only the discordant images count: ``b`` where A is right and B wrong, ``c`` the reverse. Under
    the null each is equally likely, so ``b ~ Binomial(b + c, 1/2)``; the two-sided p doubles the
    smaller tail (statsmodels' ``mcnemar(table, exact=True)``). ``odds_ratio`` (b / c) is the effect size.
    """
    a, bb = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != bb.shape:
        raise ValueError("McNemar's test needs both classifiers' results on the same images")
    from statsmodels.stats.contingency_tables import mcnemar

    b, c = int((a & ~bb).sum()), int((~a & bb).sum())
    # statsmodels' exact test reads only the discordant cells of the 2x2 table
    p = 1.0 if b + c == 0 else float(mcnemar([[0, b], [c, 0]], exact=True).pvalue)
    return dict(b=b, c=c, p=p, odds_ratio=float(b / c) if c else float("inf") if b else float("nan"))


def paired_test(a, b, level: float = LEVEL) -> dict:
    """A paired t test of ``a - b`` across seeds, with Cohen's d_z and the interval of the mean difference.

    The Wilcoxon signed-rank p is reported too; with 5 seeds its smallest possible two-sided
    value is 0.0625, so it can never reach 0.05 there, which is why the t test is the primary one.
    Differences stay on the plain scale (no transform). A seed where either value is undefined
    (NaN) is left out and ``n`` counts the pairs used; the p values and the interval need two pairs,
    ``mean_difference`` one (NaN otherwise), and ``note`` says so (see :func:`seed_summary`).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    summary = seed_summary(d, level)  # plain scale; leaves out the seeds with an undefined difference
    both = np.isfinite(d)
    a, b, d = a[both], b[both], d[both]
    n = len(d)
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
                p_wilcoxon=wilcoxon, cohens_dz=float(summary["mean"] / sd) if sd and sd > 0 else float("nan"),
                note=summary["note"])


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment: family-wise error control across, e.g., datasets. NaNs stay NaN.

    statsmodels' ``multipletests(method="holm")`` on the finite p values (Holm 1979).
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def accuracy_interval(correct, *, n_boot: int = N_BOOT, level: float = LEVEL, random_state: int = 0) -> dict:
    """Accuracy of a 0/1 vector of correct predictions with its percentile bootstrap interval over the images:
    ``{"estimate", "low", "high", "n"}``."""
    correct = np.asarray(correct, dtype=float)
    rng = np.random.default_rng(random_state)
    draws = correct[rng.integers(0, len(correct), (n_boot, len(correct)))].mean(1)
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return dict(estimate=float(correct.mean()), low=float(low), high=float(high), n=int(len(correct)))


def beats_references(correct, references, *, n_boot: int = N_BOOT, level: float = LEVEL,
                     random_state: int = 0) -> dict:
    """Does a network beat a family of reference networks (the random initialisations of several seeds) on the
    same images? ``correct`` is ``(N,)`` 0/1 for the network, ``references`` ``(S, N)`` for the S references.

    The statistic is the accuracy difference to the references' mean, ``acc - mean_s acc_s``. Its one-sided
    ``level`` lower bound comes from a two-level percentile bootstrap: each resample draws the images (the network
    and the references scored on the same draw: paired) and the S reference seeds (with replacement), so both the
    images' sampling noise and the seeds' spread (how well S random networks pin their mean down) enter. The
    network beats the references when that bound is above 0. With one reference this is the paired
    bootstrap over images alone. Returns ``{"difference", "low", "beats", "n", "references"}``."""
    correct = np.asarray(correct, dtype=float)
    references = np.atleast_2d(np.asarray(references, dtype=float))
    if references.shape[1] != len(correct):
        raise ValueError(f"references score {references.shape[1]} images, the network {len(correct)}")
    rng = np.random.default_rng(random_state)
    n, s = len(correct), len(references)
    idx = rng.integers(0, n, (n_boot, n))
    seeds = rng.integers(0, s, (n_boot, s)) if s > 1 else np.zeros((n_boot, 1), dtype=int)
    per_seed = references[:, idx].mean(2)  # (S, n_boot): each reference's accuracy on each image draw
    diff = correct[idx].mean(1) - np.take_along_axis(per_seed.T, seeds, axis=1).mean(1)
    low = float(np.quantile(diff, 1 - level))
    return dict(difference=float(correct.mean() - references.mean()), low=low, beats=bool(low > 0), n=int(n),
                references=int(s))
