"""Learning curves from runs' ``history.csv``: mean over seeds, with the seeds' range shaded."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from medimg.plots.results import arm_palette


def learning_curves(histories: dict[str, list[pd.DataFrame]], *, title: str = "Learning curves") -> Figure:
    """Loss and accuracy by epoch, ``{arm: [history of each seed]}``; training dashed, validation solid.

    Double fine-tuning's two stages run one after the other on the epoch axis; a dotted line marks
    where the target stage starts.
    """
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    palette = arm_palette(list(histories))
    for arm, runs in histories.items():
        for column, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
            for part, style in (("train", "--"), ("val", "-")):
                curves = [h[f"{part}_{column}"].to_numpy(float) for h in runs]
                length = min(len(c) for c in curves)  # early stopping ends seeds at different epochs
                stacked = np.vstack([c[:length] for c in curves])
                x = np.arange(1, length + 1)
                ax.plot(x, stacked.mean(0), style, color=palette[arm], label=f"{arm} {part}")
                if len(runs) > 1:
                    ax.fill_between(x, stacked.min(0), stacked.max(0), color=palette[arm], alpha=0.15, lw=0)
        stages = runs[0]["stage"].tolist()
        if "intermediate" in stages:
            switch = stages.index("target") + 0.5
            for ax in (ax_loss, ax_acc):
                ax.axvline(switch, color=palette[arm], ls=":", lw=1)
    for ax, name in ((ax_loss, "cross-entropy loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize="x-small", ncols=2)
    fig.suptitle(title)
    return fig


def loss_curve(losses, *, title: str = "Training loss") -> Figure:
    """One loss value per epoch (e.g. SimCLR's NT-Xent)."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.arange(1, len(losses) + 1), losses, marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return fig


def pretraining_curves(pools: list[tuple[str, pd.DataFrame, float | None]], protocols, *,
                       bn: str | None = None) -> Figure:
    """Self-supervised pretraining's learning curves (:mod:`medimg.ssl.curve`), one row per checkpoint and one
    panel per target: validation accuracy of each of ``protocols`` (e.g. the linear probe solid, kNN dashed)
    against optimiser steps, with the reference lines of random initialisation (the seeds' range shaded, their best
    a thin line) and ImageNet weights (dotted). ``pools`` holds ``(row title, curve, hours_per_step)``; with
    ``hours_per_step`` (CPU core-hours per step) a top axis gives the steps in CPU core-hours. ``protocols`` are the
    rows of the probes to draw, each with its ``name`` (the curve's ``protocol``), ``display`` name, ``line_style``
    and ``colour`` (:func:`medimg.probe.protocols.probes`). ``bn`` keeps the rows read under that batch-norm rule
    (:data:`medimg.probe.batchnorm.RULE` for curves since issue #30), each point drawn with its interval."""
    if bn is not None:  # a curve read under several batch-norm rules (issue #30): the rows of one
        pools = [(t, c[c.bn == bn] if "bn" in c else c, h) for t, c, h in pools]
    names = [list(dict.fromkeys(curve[curve.kind == "checkpoint"].target)) for _, curve, _ in pools]
    width = max([1] + [len(n) for n in names])
    fig = Figure(figsize=(3.2 * width, 3.3 * max(1, len(pools)) + 0.6), layout="constrained")
    grid = np.atleast_2d(fig.subplots(max(1, len(pools)), width, squeeze=False))
    for row, ((title, curve, hours_per_step), targets) in enumerate(zip(pools, names)):
        points = curve[curve.kind == "checkpoint"].sort_values("step")
        for ax in grid[row, len(targets):]:
            ax.set_visible(False)
        for ax, target in zip(grid[row], targets):
            for protocol in protocols:
                colour, label = protocol.colour, protocol.display
                own = points[(points.target == target) & (points.protocol == protocol.name)]
                refs = curve[(curve.target == target) & (curve.protocol == protocol.name)]
                ax.plot(own.step, own.val_accuracy, protocol.line_style, marker=".", color=colour,
                        label=f"SSL, {label}")
                if "val_low" in own and own.val_low.notna().all() and len(own):
                    ax.fill_between(own.step, own.val_low, own.val_high, color=colour, alpha=0.08, lw=0)
                random = refs[refs.kind == "random"].val_accuracy
                if len(random):
                    ax.axhspan(random.min(), random.max(), color=colour, alpha=0.12, lw=0)
                    ax.axhline(random.max(), color=colour, lw=0.8, alpha=0.7, label=f"random init (best), {label}")
                imagenet = refs[refs.kind == "imagenet"].val_accuracy
                if len(imagenet):
                    ax.axhline(imagenet.iloc[0], color=colour, ls=":", lw=1.5, label=f"ImageNet, {label}")
            ax.set_title(target, fontsize="medium", pad=22 if hours_per_step else 6)  # above the top axis
            ax.set_xlabel("pretraining steps")
            ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
            ax.grid(alpha=0.3)
            if hours_per_step:
                top = ax.secondary_xaxis("top", functions=(lambda s, h=hours_per_step: s * h,
                                                           lambda c, h=hours_per_step: c / h))
                top.set_xlabel("CPU core-hours", fontsize="small")
        grid[row, 0].set_ylabel(f"{title}\nvalidation accuracy")
    handles, labels = grid[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize="small")
    return fig
