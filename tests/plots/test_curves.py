"""medimg.plots.curves draws the histories and curves it is given (lines, shading, legends), no titles overlapping."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from medimg.plots.curves import learning_curves, loss_curve, pretraining_curves  # noqa: E402


def _legend_labels(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


# --- learning_curves ------------------------------------------------------------------------------------------------

def _history(epochs: int, offset: float, stages=None) -> pd.DataFrame:
    e = np.arange(epochs, dtype=float)
    return pd.DataFrame(dict(epoch=e, stage=stages or ["target"] * epochs, train_loss=2.0 - 0.1 * e + offset,
                             val_loss=2.2 - 0.1 * e + offset, train_accuracy=0.4 + 0.05 * e + offset,
                             val_accuracy=0.35 + 0.05 * e + offset))


def test_learning_curves_lines_are_the_seeds_mean_up_to_the_shortest_run():
    histories = {"TL": [_history(5, 0.0), _history(4, 0.1)], "scratch": [_history(3, 0.2)]}
    fig = learning_curves(histories, title="breast: learning curves")
    ax_loss, ax_acc = fig.axes
    for ax, column in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["TL train", "TL val", "scratch train", "scratch val"]
        assert [line.get_linestyle() for line in lines] == ["--", "-", "--", "-"]
        for line, (arm, part) in zip(lines, [(a, p) for a in histories for p in ("train", "val")]):
            runs = histories[arm]
            length = min(len(h) for h in runs)
            mean = np.mean([h[f"{part}_{column}"].to_numpy()[:length] for h in runs], axis=0)
            assert line.get_xydata() == pytest.approx(np.column_stack([np.arange(1, length + 1), mean]))
    assert (ax_loss.get_ylabel(), ax_acc.get_ylabel()) == ("cross-entropy loss", "accuracy")
    assert _legend_labels(ax_acc.get_legend()) == ["TL train", "TL val", "scratch train", "scratch val"]
    assert fig.get_suptitle() == "breast: learning curves"


def test_learning_curves_shade_the_seeds_range_only_where_there_are_several():
    histories = {"TL": [_history(4, 0.0), _history(4, 0.3)], "scratch": [_history(4, 0.0)]}
    ax_loss = learning_curves(histories).axes[0]
    shades = ax_loss.collections
    assert len(shades) == 2  # TL's train and val; the single scratch seed has no range
    outlines = [s.get_paths()[0].vertices[:, 1] for s in shades]
    for vertices, part in zip(outlines, ("train", "val")):
        low, high = histories["TL"][0][f"{part}_loss"], histories["TL"][1][f"{part}_loss"]
        assert vertices.min() == pytest.approx(low.min()) and vertices.max() == pytest.approx(high.max())


def test_learning_curves_mark_where_double_fine_tunings_target_stage_starts():
    stages = ["intermediate"] * 3 + ["target"] * 2
    fig = learning_curves({"double": [_history(5, 0.0, stages)], "TL": [_history(5, 0.0)]})
    for ax in fig.axes:
        dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
        assert len(dotted) == 1 and list(dotted[0].get_xdata()) == [3.5, 3.5]


# --- loss_curve -----------------------------------------------------------------------------------------------------

def test_loss_curve_one_point_per_epoch():
    losses = [5.2, 4.1, 3.7, 3.65]
    ax = loss_curve(losses, title="NT-Xent").axes[0]
    (line,) = ax.get_lines()
    assert line.get_xydata().tolist() == [[1, 5.2], [2, 4.1], [3, 3.7], [4, 3.65]]
    assert ax.get_title() == "NT-Xent" and ax.get_xlabel() == "epoch"


# --- pretraining_curves ---------------------------------------------------------------------------------------------

PROTOCOLS = (SimpleNamespace(name="linear", display="linear probe", line_style="-", colour="tab:blue"),
             SimpleNamespace(name="knn", display="kNN", line_style="--", colour="tab:orange"))
STEPS = (0, 100, 200, 400)


def _accuracy(target: str, protocol: str, step: int) -> float:
    return round(0.3 + 0.001 * step + 0.05 * (protocol == "knn") + 0.01 * len(target), 4)


def _curve(targets, *, bn: tuple[str, ...] = ()) -> pd.DataFrame:
    """A learning curve as medimg.ssl.curve writes it: checkpoints' points, random seeds and ImageNet per protocol."""
    rows = []
    for target in targets:
        for p in PROTOCOLS:
            rows += [dict(kind="random", target=target, protocol=p.name, val_accuracy=a, step=None, seed=s)
                     for s, a in ((0, 0.5), (1, 0.56), (2, 0.53))]
            rows.append(dict(kind="imagenet", target=target, protocol=p.name, val_accuracy=0.61, step=None, seed=None))
            for step in STEPS[::-1]:  # the figure sorts by step
                for rule in bn or (None,):
                    a = _accuracy(target, p.name, step) + (0.2 if rule == "other" else 0.0)
                    interval = {"bn": rule, "val_low": a - 0.02, "val_high": a + 0.03} if bn else {}
                    rows.append(dict(kind="checkpoint", target=target, protocol=p.name, val_accuracy=a, step=step,
                                     seed=None, **interval))
    return pd.DataFrame(rows)


def _renderer(fig):
    FigureCanvasAgg(fig)  # a Figure built without pyplot has no drawing canvas of its own
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _panels(fig):
    """The visible panels (not the secondary top axes, which are children of the panels)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_subplotspec() is not None]


def test_pretraining_curves_one_panel_per_target_per_row_and_lines_are_the_checkpoints_points():
    pools = [("SimCLR, grey pool", _curve(["breastmnist", "chestmnist"]), None),
             ("SimCLR, colour pool", _curve(["dermamnist"]), None)]
    fig = pretraining_curves(pools, PROTOCOLS)
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == ["breastmnist", "chestmnist", "dermamnist"]
    assert sum(1 for ax in fig.axes if not ax.get_visible()) == 1  # the second row's empty cell
    assert [ax.get_ylabel() for ax in panels] == ["SimCLR, grey pool\nvalidation accuracy", "",
                                                  "SimCLR, colour pool\nvalidation accuracy"]
    for ax in panels:
        lines = {line.get_label(): line for line in ax.get_lines()}
        for p in PROTOCOLS:
            own = lines[f"SSL, {p.display}"]
            want = [[s, _accuracy(ax.get_title(), p.name, s)] for s in STEPS]
            assert own.get_xydata() == pytest.approx(np.array(want))
            assert own.get_linestyle() == p.line_style and own.get_color() == p.colour
            assert lines[f"random init (best), {p.display}"].get_ydata()[0] == pytest.approx(0.56)
            assert lines[f"ImageNet, {p.display}"].get_ydata()[0] == pytest.approx(0.61)
        spans = [(patch.get_y(), patch.get_y() + patch.get_height()) for patch in ax.patches]
        assert np.array(spans) == pytest.approx(np.array([(0.5, 0.56)] * 2))  # the random seeds' range per protocol
    assert _legend_labels(fig.legends[0]) == [f"{kind}, {p.display}" for p in PROTOCOLS
                                              for kind in ("SSL", "random init (best)", "ImageNet")]


def test_pretraining_curves_keep_the_rows_of_one_batch_norm_rule_with_their_interval():
    curve = _curve(["breastmnist"], bn=("train-mode", "other"))
    ax = _panels(pretraining_curves([("VICReg", curve, None)], PROTOCOLS, bn="train-mode"))[0]
    own = {line.get_label(): line for line in ax.get_lines()}["SSL, linear probe"]
    assert own.get_ydata().tolist() == pytest.approx([_accuracy("breastmnist", "linear", s) for s in STEPS])
    bands = [c.get_paths()[0].vertices[:, 1] for c in ax.collections]
    assert len(bands) == 2  # one interval per protocol
    low = [_accuracy("breastmnist", "linear", s) - 0.02 for s in STEPS]
    high = [_accuracy("breastmnist", "linear", s) + 0.03 for s in STEPS]
    assert bands[0].min() == pytest.approx(min(low)) and bands[0].max() == pytest.approx(max(high))


def test_pretraining_curves_top_axis_gives_the_steps_in_core_hours():
    fig = pretraining_curves([("SimCLR", _curve(["breastmnist"]), 0.01)], PROTOCOLS)
    _renderer(fig)
    (panel,) = _panels(fig)
    (top,) = panel.child_axes
    assert top.get_xlabel() == "CPU core-hours"
    assert top.get_xlim() == pytest.approx(tuple(0.01 * x for x in panel.get_xlim()))


@pytest.mark.parametrize("hours_per_step", [None, 0.01])
@pytest.mark.parametrize("rows", [1, 2, 3, 5])
def test_pretraining_curves_no_two_panel_titles_overlap(rows, hours_per_step):
    targets = ["breastmnist_224", "pneumoniamnist_224", "organamnist_plus_224"]
    pools = [(f"pool {i}", _curve(targets[: 1 + i % 3]), hours_per_step) for i in range(rows)]
    fig = pretraining_curves(pools, PROTOCOLS)
    renderer = _renderer(fig)
    panels = _panels(fig)
    assert len(panels) == sum(1 + i % 3 for i in range(rows))
    boxes = [(f"{ax.get_title()} #{i}", ax.title.get_window_extent(renderer)) for i, ax in enumerate(panels)]
    overlapping = [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b)]
    assert overlapping == []
    # nor does a title run into its own panel or its top axis (the core-hours label sits between them)
    for ax in panels:
        title = ax.title.get_window_extent(renderer)
        assert title.y0 >= ax.get_window_extent(renderer).y1
        for top in ax.child_axes:
            assert not title.overlaps(top.xaxis.label.get_window_extent(renderer))
