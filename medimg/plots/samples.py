"""Dataset-card figures: sample images per class and the class counts of each split."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def sample_grid(data, *, per_class: int = 6, split: str = "train", seed: int = 0) -> Figure:
    """``per_class`` random images of each class from one split of a :class:`~medimg.data.PreparedData`."""
    images, labels, _ = data.part(split)
    classes = list(data.classes)
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(1.3 * per_class + 1.6, 1.3 * len(classes) + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(classes), per_class))
    for row, name in enumerate(classes):
        members = np.flatnonzero(labels == row)
        chosen = rng.choice(members, min(per_class, len(members)), replace=False) if len(members) else []
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(chosen):
                image = images[chosen[col]]
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
            else:
                ax.set_axis_off()
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize="small")
    fig.suptitle(f"{data.source.name}: {split} images at {data.decoded.size} px")
    return fig


def class_counts(description: dict) -> Figure:
    """Images per class in each split, from :func:`medimg.data.describe`."""
    classes = description["classes"]
    splits = list(description["splits"])
    fig = Figure(figsize=(max(5.0, 0.8 * len(classes) + 2), 3.4), layout="constrained")
    ax = fig.subplots()
    bottom = np.zeros(len(classes))
    for s, colour in zip(splits, ("#1c7ed6", "#f59f00", "#37b24d")):
        counts = np.array([description["splits"][s]["per_class"][c] for c in classes])
        ax.bar(classes, counts, bottom=bottom, label=s, color=colour)
        bottom += counts
    ax.set_ylabel("images")
    ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize="small")
    ax.set_title(f"{description['name']}: class balance by split")
    return fig
