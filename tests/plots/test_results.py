"""medimg.plots.results draws the values it is given: bar sizes, intervals, matrix cells, points, labels, titles."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from medimg.plots.results import (  # noqa: E402
    MODALITY_COLOURS, arm_palette, confusion_matrices, grey_vs_colour, metric_bars, reliability_diagrams,
    ssl_check_bars, study_time_bars,
)


def _bars(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def _legend_labels(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


# --- metric_bars ----------------------------------------------------------------------------------------------------

def _summary(datasets, arms, *, majority=True) -> pd.DataFrame:
    rows = []
    for d, dataset in enumerate(datasets):
        for a, arm in enumerate(arms):
            value = 0.5 + 0.1 * a + 0.01 * d
            rows.append(dict(dataset=dataset, arm=arm, accuracy=value, accuracy_low=value - 0.05 - 0.01 * a,
                             accuracy_high=value + 0.03, loss=1.0 + a + d, loss_low=0.9 + a + d,
                             loss_high=1.2 + a + d, **({"majority_accuracy": 0.4 + 0.1 * d} if majority else {})))
    return pd.DataFrame(rows)


def test_metric_bars_heights_are_the_metric_of_each_arm_in_its_dataset_panel():
    arms, datasets = ["scratch", "TL", "SSL"], ["breastmnist", "dermamnist"]
    summary = _summary(datasets, arms)
    fig = metric_bars(summary.iloc[::-1], arms=arms)  # rows in another order than the arms': bars follow ``arms``
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == datasets[::-1]  # datasets in the order the table first gives them
    for ax in panels:
        want = summary[summary.dataset == ax.get_title()].set_index("arm").loc[arms, "accuracy"].to_numpy()
        bars = _bars(ax)
        assert [b.get_height() for b in bars] == pytest.approx(want)
        assert [t.get_text() for t in ax.get_xticklabels()] == arms
        assert [to_rgba(b.get_facecolor()) for b in bars] == [to_rgba(arm_palette(arms)[a]) for a in arms]
        assert ax.get_ylim() == (0, 1)


def test_metric_bars_error_bars_span_the_interval():
    arms = ["TL", "SSL"]
    summary = _summary(["d"], arms)
    ax = metric_bars(summary, arms=arms).axes[0]
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    segments = bars.errorbar.lines[2][0].get_segments()
    spans = np.array([(seg[:, 1].min(), seg[:, 1].max()) for seg in segments])
    assert spans == pytest.approx(summary[["accuracy_low", "accuracy_high"]].to_numpy())


def test_metric_bars_marks_the_majority_class_and_names_arms_in_the_legend():
    arms = ["TL", "SSL"]
    fig = metric_bars(_summary(["a", "b"], arms), arms=arms)
    for ax, majority in zip(fig.axes, (0.4, 0.5)):
        dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert len(dashed) == 1 and dashed[0].get_ydata()[0] == pytest.approx(majority)
    assert _legend_labels(fig.legends[0]) == [*arms, "majority class"]
    assert fig.get_suptitle() == "Test accuracy with 95% intervals"


def test_metric_bars_other_metric_no_majority_line_and_its_name_on_the_axis():
    arms = ["TL", "SSL"]
    summary = _summary(["a"], arms)
    fig = metric_bars(summary, "loss", arms=arms, title="Loss here")
    ax = fig.axes[0]
    assert [b.get_height() for b in _bars(ax)] == pytest.approx(summary.loss.tolist())
    assert not [line for line in ax.lines if line.get_linestyle() == "--"]
    assert ax.get_ylabel() == "loss" and fig.get_suptitle() == "Loss here"
    assert _legend_labels(fig.legends[0]) == arms


@pytest.mark.parametrize("n, per_row, rows", [(1, 4, 1), (4, 4, 1), (5, 4, 2), (7, 3, 3)])
def test_metric_bars_one_visible_panel_per_dataset_per_row_to_a_row(n, per_row, rows):
    datasets = [f"set{i}" for i in range(n)]
    fig = metric_bars(_summary(datasets, ["TL"]), per_row=per_row)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == datasets
    assert len(fig.axes) == rows * min(per_row, n)
    assert [round(b.get_height(), 6) for ax in visible for b in _bars(ax)] == \
        [round(0.5 + 0.01 * d, 6) for d in range(n)]


# --- grey_vs_colour -------------------------------------------------------------------------------------------------

def _tests() -> pd.DataFrame:
    rows = [("pathmnist", "colour", 0.02, -0.01, 0.05, False), ("breastmnist", "grey", 0.10, 0.04, 0.16, True),
            ("dermamnist", "colour", -0.03, -0.06, -0.01, True), ("chestmnist", "grey", -0.02, -0.05, 0.01, False)]
    table = pd.DataFrame(rows, columns=["dataset", "modality", "mean_difference", "low", "high", "significant"])
    other = table.assign(arm_a="TL", arm_b="scratch", mean_difference=9.0)  # another pair: not drawn
    return pd.concat([table.assign(arm_a="TL", arm_b="SSL"), other], ignore_index=True)


def test_grey_vs_colour_rows_grey_then_colour_each_point_its_difference_and_interval():
    fig = grey_vs_colour(_tests(), pair=("TL", "SSL"))
    ax = fig.axes[0]
    order = ["breastmnist", "chestmnist", "dermamnist", "pathmnist"]  # grey, then colour, by name within each
    ticks = {t.get_position()[1]: t.get_text() for t in ax.get_yticklabels()}
    top_down = [ticks[y] for y in sorted(ticks, reverse=True)]
    assert top_down == ["breastmnist (grey)", "chestmnist (grey)", "dermamnist (colour)", "pathmnist (colour)"]
    table = _tests().query("arm_b == 'SSL'").set_index("dataset")
    y_of = {name: y for y, name in zip(sorted(ticks, reverse=True), order)}
    points = {tuple(c.get_offsets()[0]): c for c in ax.collections}
    intervals = [line for line in ax.lines if len(line.get_xdata()) == 2 and line.get_ydata()[0] == line.get_ydata()[1]]
    assert len(points) == 4 and len(intervals) == 4
    for name in order:
        row = table.loc[name]
        dot = next(c for (x, y), c in points.items()
                   if np.isclose(x, row.mean_difference) and np.isclose(y, y_of[name]))
        colour = to_rgba(MODALITY_COLOURS[row.modality])
        assert tuple(dot.get_edgecolor()[0]) == pytest.approx(colour)
        assert tuple(dot.get_facecolor()[0]) == pytest.approx(colour if row.significant else to_rgba("white"))
        line = next(li for li in intervals if np.isclose(li.get_ydata()[0], y_of[name]))
        assert list(line.get_xdata()) == pytest.approx([row.low, row.high])
    assert ax.get_title().startswith("TL vs SSL") and "TL minus SSL" in ax.get_xlabel()
    assert [line.get_xdata()[0] for line in ax.lines if line not in intervals] == [0]  # the zero line


# --- confusion_matrices ---------------------------------------------------------------------------------------------

def _quadmesh(ax) -> np.ndarray:
    mesh = ax.collections[0]
    return np.asarray(mesh.get_array()).reshape(-1)


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_cells_are_the_counts_normalised_per_true_class(normalize):
    counts = {"TL (3 seeds)": (np.array([[8, 2, 0], [1, 5, 4], [0, 0, 0]]), ["a", "b", "c"]),
              "SSL": (np.array([[3, 1], [2, 6]]), ["neg", "pos"])}
    fig = confusion_matrices(counts, normalize=normalize)
    assert [ax.get_title() for ax in fig.axes] == list(counts)
    for ax, (cm, classes) in zip(fig.axes, counts.values()):
        cm = cm.astype(float)
        want = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
        assert _quadmesh(ax) == pytest.approx(want.ravel())
        assert [t.get_text() for t in ax.texts] == [str(int(v)) for v in cm.ravel()]  # annotated with counts
        assert [t.get_text() for t in ax.get_xticklabels()] == classes
        assert [t.get_text() for t in ax.get_yticklabels()] == classes
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")


@pytest.mark.parametrize("n, ncols, shown", [(1, 4, 1), (3, 2, 4), (5, 4, 8)])
def test_confusion_matrices_one_panel_per_matrix(n, ncols, shown):
    matrices = {f"arm{i}": (np.eye(2, dtype=int) * (i + 1), ["x", "y"]) for i in range(n)}
    fig = confusion_matrices(matrices, ncols=ncols)
    assert len(fig.axes) == shown
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == list(matrices)


# --- reliability_diagrams -------------------------------------------------------------------------------------------

def test_reliability_lines_are_the_non_empty_bins_and_legend_gives_the_ece():
    curves = {"TL": dict(count=np.array([0, 3, 5, 2]), confidence=np.array([0.0, 0.4, 0.6, 0.9]),
                         accuracy=np.array([0.0, 0.3, 0.7, 1.0]), ece=0.0421),
              "SSL": dict(count=np.array([1, 0, 4, 4]), confidence=np.array([0.2, 0.0, 0.65, 0.95]),
                          accuracy=np.array([0.1, 0.0, 0.5, 0.8]))}
    fig = reliability_diagrams(curves, title="breast: reliability")
    ax = fig.axes[0]
    diagonal, *arms = ax.lines
    assert diagonal.get_xydata().tolist() == [[0, 0], [1, 1]]
    assert len(arms) == 2
    for line, r in zip(arms, curves.values()):
        used = r["count"] > 0
        assert line.get_xydata() == pytest.approx(np.column_stack([r["confidence"][used], r["accuracy"][used]]))
    assert _legend_labels(ax.get_legend()) == ["perfectly calibrated", "TL (ECE 0.042)", "SSL"]
    assert ax.get_title() == "breast: reliability"


# --- ssl_check_bars -------------------------------------------------------------------------------------------------

def test_ssl_check_bars_widths_are_the_checkpoint_and_each_random_seed():
    check = SimpleNamespace(target="breastmnist", val_accuracy=0.81, seeds=(0, 1, 2),
                            random_val_accuracy=(0.7, 0.72, 0.69))
    ax = ssl_check_bars(check).axes[0]
    bars = _bars(ax)
    assert [b.get_width() for b in bars] == pytest.approx([0.81, 0.7, 0.72, 0.69])
    labels = {round(t.get_position()[1]): t.get_text() for t in ax.get_yticklabels()}
    assert [labels[round(b.get_y() + b.get_height() / 2)] for b in bars] == \
        ["SimCLR checkpoint", "random init, seed 0", "random init, seed 1", "random init, seed 2"]
    assert [t.get_text() for t in ax.texts] == [" 0.810", " 0.700", " 0.720", " 0.690"]
    assert "breastmnist" in ax.get_xlabel()


# --- study_time_bars ------------------------------------------------------------------------------------------------

def test_study_time_bars_segments_are_the_minutes_of_each_part_end_to_end():
    timing = dict(compute_seconds={"fine-tuning": 600.0, "ssl pretraining": 300.0, "features": 90.0},
                  chapter_overhead_seconds=120.0, idle_seconds=30.0, jobs=2)
    ax = study_time_bars(timing).axes[0]
    bars = _bars(ax)
    minutes = [10.0, 5.0, 1.5, 2.0, 0.5]
    assert [b.get_width() for b in bars] == pytest.approx(minutes)
    assert [b.get_x() for b in bars] == pytest.approx(list(np.cumsum([0.0, *minutes[:-1]])))
    assert _legend_labels(ax.get_legend()) == [
        "fine-tuning (10.0 min)", "ssl pretraining (5.0 min)", "features (1.5 min)",
        "inside chapters, not work (2.0 min)", "idle slots (0.5 min)"]
    assert "2 job(s)" in ax.get_xlabel()
