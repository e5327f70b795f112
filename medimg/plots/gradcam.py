"""Grad-CAM galleries: the same test images under several arms (e.g. TL and SSL) side by side."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from medimg.errors import MedimgError


def gradcam_grid(results: list, titles: list[str] | None = None, *, alpha: float = 0.45,
                 cell_inches: float = 1.9) -> Figure:
    """One row per image: the image, then its Grad-CAM overlay for each arm.

    ``results`` are :class:`medimg.explain.gradcam.Explanation` objects on the same ids (use
    :func:`medimg.explain.gradcam.common_gallery`); ``titles`` name the arms (default: method and arch).
    Each overlay is captioned with the true and predicted class.
    """
    if not results:
        raise MedimgError("no Grad-CAM results to plot: pass at least one explain_run result")
    ids = list(results[0].ids)
    if any(list(r.ids) != ids for r in results[1:]):
        raise MedimgError("the Grad-CAM results show different images: explain every run with the same "
                          "ids (medimg.explain.gradcam.common_gallery)")
    titles = list(titles) if titles is not None else [f"{r.method} {r.arch}" for r in results]
    if len(titles) != len(results):
        raise MedimgError(f"{len(titles)} titles for {len(results)} results: give one title per result")

    rows, cols = len(ids), 1 + len(results)
    fig = Figure(figsize=(cell_inches * cols, cell_inches * rows + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for i, id_ in enumerate(ids):
        image = results[0].images[i]
        axes[i, 0].imshow(image)
        axes[i, 0].set_title(f"{id_}\ntrue: {results[0].true[i]}", fontsize=7)
        for j, (result, title) in enumerate(zip(results, titles), start=1):
            ax = axes[i, j]
            ax.imshow(result.images[i])
            ax.imshow(result.maps[i], cmap="jet", alpha=alpha, vmin=0, vmax=1)  # each arm at its own input size
            mark = "" if result.predicted[i] == result.true[i] else "  (wrong)"
            ax.set_title(f"{title}\npred: {result.predicted[i]}{mark}" if i == 0 else
                         f"pred: {result.predicted[i]}{mark}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Grad-CAM (predicted class); layers: " +
                 ", ".join(f"{t} {r.layer} {r.layer_size[0]}x{r.layer_size[1]}" for t, r in zip(titles, results)),
                 fontsize=8)
    return fig
