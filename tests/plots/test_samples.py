"""medimg.plots.samples draws each class's own images, one row per class, and stacks each split's class counts."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from medimg.plots.samples import class_counts, sample_grid  # noqa: E402


def _data(per_class_counts: dict[str, int], *, channels: int = 1, size: int = 8):
    """A stand-in for PreparedData: image i is filled with the value i, so a drawn image says which one it is."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class_counts.values())]).astype(int)
    order = np.random.default_rng(1).permutation(len(labels))  # classes interleaved, as in a real split
    labels = labels[order]
    images = np.stack([np.full((size, size, channels), i, np.uint8) for i in range(len(labels))])
    asked = []

    def part(split):
        asked.append(split)
        return images, labels, np.arange(len(labels))

    return SimpleNamespace(part=part, classes=tuple(per_class_counts), source=SimpleNamespace(name="toyset"),
                           decoded=SimpleNamespace(size=size), labels=labels, asked=asked)


@pytest.mark.parametrize("channels", [1, 3])
def test_sample_grid_rows_hold_distinct_images_of_their_own_class(channels):
    counts = {"benign": 9, "malignant": 4, "normal": 0}
    data = _data(counts, channels=channels)
    fig = sample_grid(data, per_class=6, split="val", seed=3)
    assert data.asked == ["val"]
    assert len(fig.axes) == len(counts) * 6
    rows = np.array(fig.axes).reshape(len(counts), 6)
    for c, (name, row) in enumerate(zip(counts, rows)):
        assert row[0].get_ylabel() == name
        drawn = [ax for ax in row if ax.images]
        assert len(drawn) == min(6, counts[name])
        assert all(not ax.axison for ax in row[len(drawn):])  # the empty cells are blank
        shown = []
        for ax in drawn:
            pixels = np.asarray(ax.images[0].get_array())
            assert pixels.shape == (8, 8) if channels == 1 else pixels.shape == (8, 8, 3)
            assert ax.images[0].get_clim() == (0, 255)
            shown.append(int(pixels.flat[0]))
        assert len(set(shown)) == len(shown)  # drawn without replacement
        assert all(data.labels[i] == c for i in shown)
    assert fig.get_suptitle() == "toyset: val images at 8 px"


def test_sample_grid_is_the_same_for_a_seed_and_differs_across_seeds():
    def chosen(seed):
        fig = sample_grid(_data({"a": 20, "b": 20}), per_class=4, seed=seed)
        return [int(np.asarray(ax.images[0].get_array()).flat[0]) for ax in fig.axes]

    assert chosen(0) == chosen(0) and chosen(0) != chosen(1)


def test_class_counts_stack_each_splits_counts_per_class():
    description = dict(name="toyset", classes=["a", "b", "c"], splits={
        "train": dict(per_class={"a": 50, "b": 30, "c": 5}), "val": dict(per_class={"a": 7, "b": 4, "c": 1}),
        "test": dict(per_class={"a": 10, "b": 6, "c": 2})})
    ax = class_counts(description).axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 9
    heights = np.array([b.get_height() for b in bars]).reshape(3, 3)
    bottoms = np.array([b.get_y() for b in bars]).reshape(3, 3)
    assert heights.tolist() == [[50, 30, 5], [7, 4, 1], [10, 6, 2]]
    assert bottoms.tolist() == [[0, 0, 0], [50, 30, 5], [57, 34, 6]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "val", "test"]
    assert ax.get_title() == "toyset: class balance by split"
