"""Result figures: metric bars with intervals, the grey-vs-colour summary, confusion matrices, reliability.

Figures are built with :class:`matplotlib.figure.Figure` directly, not through pyplot, so a long
study never accumulates open figures; Jupyter still displays a returned Figure.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

MODALITY_COLOURS = {"grey": "#6c757d", "colour": "#d9480f"}


def arm_palette(arms) -> dict[str, tuple]:
    """One colour per arm, the same in every figure of a study."""
    return dict(zip(arms, sns.color_palette("colorblind", len(arms))))


def _pretty(metric: str) -> str:
    return metric.replace("_", " ")


def metric_bars(summary: pd.DataFrame, metric: str = "accuracy", *, arms=None, title: str | None = None,
                per_row: int = 4) -> Figure:
    """Bars of ``metric`` per dataset and arm with their intervals; a dashed line marks the majority class.

    ``summary`` has one row per (dataset, arm) with columns ``{metric}``, ``{metric}_low``,
    ``{metric}_high`` and optionally ``majority_accuracy`` (see :func:`medimg.compare.comparison.compare_runs`).
    One panel per dataset, ``per_row`` to a row, so the labels stay readable at a page's width
    however many datasets there are.
    """
    arms = list(arms or dict.fromkeys(summary["arm"]))
    datasets = list(dict.fromkeys(summary["dataset"]))
    palette = arm_palette(arms)
    ncols = min(per_row, len(datasets))
    nrows = -(-len(datasets) // ncols)
    fig = Figure(figsize=(max(4.5, 2.6 * ncols), 2.6 * nrows + 0.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    x = np.arange(len(arms))
    for ax, dataset in zip(axes, datasets):
        rows = summary[summary["dataset"] == dataset].set_index("arm").reindex(arms)
        value = rows[metric].to_numpy(float)
        err = np.vstack([value - rows[f"{metric}_low"].to_numpy(float), rows[f"{metric}_high"].to_numpy(float) - value])
        ax.bar(x, value, 0.7, color=[palette[a] for a in arms], yerr=np.nan_to_num(err), capsize=3,
               error_kw=dict(lw=1))
        if metric == "accuracy" and "majority_accuracy" in summary:
            ax.axhline(float(rows["majority_accuracy"].dropna().iloc[0]) if rows["majority_accuracy"].notna().any()
                       else np.nan, color="black", ls="--", lw=1.2, zorder=3)
        ax.set_xticks(x, arms, rotation=30 if max(map(len, arms)) > 6 else 0)
        ax.set_title(dataset, fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
        if metric not in ("loss", "brier"):
            ax.set_ylim(0, 1)
    for ax in axes[len(datasets):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel(_pretty(metric))
    handles = [Patch(color=palette[a], label=a) for a in arms]
    if metric == "accuracy" and "majority_accuracy" in summary:
        handles.append(Line2D([], [], color="black", ls="--", label="majority class"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    fig.suptitle(title or f"Test {_pretty(metric)} with 95% intervals")
    return fig


def grey_vs_colour(tests: pd.DataFrame, *, pair: tuple[str, str], metric: str = "accuracy") -> Figure:
    """The paper's central claim in one picture: ``pair[0] - pair[1]`` per dataset, grey above colour.

    ``tests`` has one row per (dataset, arm pair) with ``mean_difference``, ``low``, ``high``,
    ``modality`` and ``significant`` (see :func:`medimg.compare.comparison.compare_runs`). A filled
    marker is significant after Holm's correction, an open one is not.
    """
    a, b = pair
    rows = tests[(tests["arm_a"] == a) & (tests["arm_b"] == b)].copy()
    rows["order"] = rows["modality"].map({"grey": 0, "colour": 1})
    rows = rows.sort_values(["order", "dataset"]).reset_index(drop=True)
    fig = Figure(figsize=(6.5, 0.45 * len(rows) + 1.6), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    for yi, (_, row) in zip(y, rows.iterrows()):
        colour = MODALITY_COLOURS.get(row["modality"], "black")
        if np.isfinite(row["low"]):
            ax.plot([row["low"], row["high"]], [yi, yi], color=colour, lw=2)
        ax.scatter([row["mean_difference"]], [yi], s=60, color=colour if row["significant"] else "white",
                   edgecolors=colour, linewidths=2, zorder=3)
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(y, [f"{d} ({m})" for d, m in zip(rows["dataset"], rows["modality"])])
    ax.set_xlabel(f"{_pretty(metric)}: {a} minus {b}  (right: {a} better)")
    ax.set_title(f"{a} vs {b} on grey and colour images\nfilled: significant after Holm correction")
    ax.grid(axis="x", alpha=0.3)
    return fig


def confusion_matrices(matrices: dict[str, tuple[np.ndarray, list[str]]], *, normalize: bool = True,
                       ncols: int = 4) -> Figure:
    """A grid of confusion matrices, ``{title: (counts, classes)}``; rows normalised to recall by default."""
    n = len(matrices)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    k = max(len(c) for _, c in matrices.values())
    side = 1.2 + 0.45 * k
    fig = Figure(figsize=(side * ncols + 0.5, side * nrows + 0.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, (title, (cm, classes)) in zip(axes, matrices.items()):
        cm = np.asarray(cm, float)
        shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
        sns.heatmap(shown, ax=ax, annot=cm.astype(int) if k <= 8 else False, fmt="d", cmap="Blues", vmin=0,
                    vmax=1 if normalize else None, cbar=False, square=True, xticklabels=classes, yticklabels=classes)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.tick_params(labelsize="x-small")
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig


def reliability_diagrams(curves: dict[str, dict], *, title: str = "Reliability") -> Figure:
    """Accuracy against confidence per arm, ``{label: medimg.evaluate.metrics.reliability(...) plus "ece"}``."""
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="black", lw=1, ls="--", label="perfectly calibrated")
    palette = arm_palette(list(curves))
    for label, r in curves.items():
        count = np.asarray(r["count"])
        used = count > 0
        ece = f" (ECE {r['ece']:.3f})" if "ece" in r else ""
        ax.plot(np.asarray(r["confidence"])[used], np.asarray(r["accuracy"])[used], marker="o",
                color=palette[label], label=f"{label}{ece}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def ssl_check_bars(check) -> Figure:
    """The linear probe's validation accuracy on a SimCLR checkpoint's features beside random-init features, one
    bar per seed (:class:`medimg.ssl.check.SSLCheck`)."""
    labels = ["SimCLR checkpoint"] + [f"random init, seed {s}" for s in check.seeds]
    values = [check.val_accuracy, *check.random_val_accuracy]
    fig = Figure(figsize=(5.5, 0.45 * len(labels) + 1.2), layout="constrained")
    ax = fig.subplots()
    colours = ["tab:blue"] + ["tab:grey"] * len(check.seeds)
    ax.barh(range(len(labels)), values, color=colours)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.3f}", va="center")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(f"linear probe, validation accuracy ({check.target})")
    return fig


def study_time_bars(timing: dict) -> Figure:
    """Where the study's chapter time went (:func:`medimg.compare.reproducibility.study_time`): one stacked bar
    of minutes, fine-tuning, self-supervised pretraining and feature extraction, then the overhead inside chapters and idle slots."""
    parts = list(timing["compute_seconds"].items())
    parts += [("inside chapters, not work", timing["chapter_overhead_seconds"]), ("idle slots", timing["idle_seconds"])]
    fig = Figure(figsize=(7.5, 2.5), layout="constrained")
    ax = fig.subplots()
    left, colours = 0.0, sns.color_palette("deep", len(parts))
    for (label, seconds), colour in zip(parts, colours):
        ax.barh(0, seconds / 60, left=left, color=colour, label=f"{label} ({seconds / 60:.1f} min)")
        left += seconds / 60
    ax.set_yticks([])
    ax.set_xlabel(f"minutes of chapter slots ({timing['jobs']} job(s) x wall time)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=3, frameon=False, fontsize="small")
    return fig
