"""Learning curves from runs' ``history.csv``: mean over seeds, with the seeds' range shaded."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .results import arm_palette


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
