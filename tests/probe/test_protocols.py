"""The table of protocols: every row builds a probe that fits and predicts with the right shapes, the book's names
are today's, and a protocol added to the table is built, written, read, counted and drawn by its consumers with no
other edit."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medimg.errors import MedimgError
from medimg.finetune.config import FinetuneConfig
from medimg.probe.features import FrozenFeatures
from medimg.probe.protocols import PROTOCOLS, Protocol, fine_tuning, lead_probe, probes, protocol_of


def generated_features(n_classes=3, d=6, seed=0) -> FrozenFeatures:
    """Gaussian classes, each shifted along its own axis, 40/20/20 images per class and split."""
    rng = np.random.default_rng(seed)
    x, y = {}, {}
    for split, n in (("train", 40), ("val", 20), ("test", 20)):
        y[split] = np.repeat(np.arange(n_classes), n)
        x[split] = rng.normal(size=(len(y[split]), d)).astype(np.float32)
        x[split][np.arange(len(y[split])), y[split]] += 3.0
    return FrozenFeatures(x=x, y=y, classes=tuple("abcdef"[:n_classes]))


def test_the_book_names_each_protocol_as_it_always_has():
    assert {name: p.display for name, p in PROTOCOLS.items()} == {
        "fine-tuning": "fine-tuning", "linear": "linear probe", "knn": "kNN"}
    assert [p.name for p in probes()] == ["linear", "knn"]  # the order of tables, sentences and legends
    assert fine_tuning().name == "fine-tuning" and not fine_tuning().frozen
    assert lead_probe().name == "linear" and lead_probe().log_loss and lead_probe().seeded
    assert [(p.line_style, p.colour) for p in probes()] == [("-", "tab:blue"), ("--", "tab:orange")]
    with pytest.raises(MedimgError, match="unknown protocol 'svm': choose one of fine-tuning, linear, knn") as err:
        protocol_of("svm")
    assert "\n" not in str(err.value)
    with pytest.raises(MedimgError, match="fits no probe"):
        fine_tuning().build()


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("name", ["linear", "knn"])
def test_every_probe_of_the_table_fits_generated_features_and_predicts_every_class(name, n_classes):
    protocol = protocol_of(name)
    features = generated_features(n_classes)
    probe = protocol.build(seed=7, max_train_images=30, split_seed=1, select="cv").fit(features)
    assert isinstance(probe, protocol.probe)
    assert probe.random_state == (7 if protocol.seeded else 0)  # the run's seed only where the row says so
    probs = probe.predict_proba(features.x["test"])
    assert probs.shape == (len(features.y["test"]), n_classes) and np.allclose(probs.sum(1), 1)
    assert np.mean(probs.argmax(1) == features.y["test"]) > 0.8  # the classes are far apart
    (setting,) = probe.setting_.values()  # one chosen setting (C or k), recorded by runs and curves
    assert np.isfinite(setting)
    if protocol.log_loss:
        assert np.isfinite(probe.val_log_loss_[setting])


class CentroidProbe:
    """A nearest-centroid probe with the probes' interface: a protocol the table does not have."""

    def __init__(self, *, max_train_images=None, split_seed=0, select="val", folds=5, random_state=0):
        self.random_state = random_state

    def fit(self, features):
        x, y = features.x["train"], features.y["train"]
        self.centroids_ = np.stack([x[y == c].mean(0) for c in range(len(features.classes))])
        return self

    def predict_proba(self, x):
        logits = -((x[:, None, :] - self.centroids_[None]) ** 2).sum(-1)
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    @property
    def setting_(self):
        return dict(centroids=len(self.centroids_))


CENTROID = Protocol("centroid", "nearest centroid", CentroidProbe, True, False, False, ":", "tab:green",
                    "the nearest class mean of frozen features")


@pytest.fixture()
def centroid(monkeypatch, tmp_path):
    monkeypatch.setitem(PROTOCOLS, CENTROID.name, CENTROID)
    monkeypatch.setenv("MEDIMG_CACHE_DIR", str(tmp_path / "cache"))
    return CENTROID


def test_a_protocol_added_to_the_table_is_probed_written_and_read_as_a_run(centroid, tmp_path):
    from medimg.finetune.runs import read_run
    from medimg.study.probe_runs import probe_name, probe_run

    config = FinetuneConfig("synthetic_grey", "scratch", arch="resnet18", size=32, seed=3)
    run_dir = tmp_path / probe_name(config, centroid.name)
    metrics = probe_run(config, centroid.name, run_dir)
    run = read_run(run_dir)
    classes = metrics["setting"]["centroids"]  # one centroid per class of the dataset
    assert run_dir.name.startswith("centroid-") and classes >= 2
    assert run.protocol == "centroid" and run.probs.shape == (len(run.y_true), classes)
    assert run.seed_replicates  # a random network's seeds are replicates under any probe


def test_a_protocol_added_to_the_table_is_on_the_curve_in_its_sentences_and_in_its_figure(centroid):
    import timm

    from medimg.plots.curves import pretraining_curves
    from medimg.ssl.config import SSLConfig
    from medimg.ssl.curve import CurveTarget, Prober, budget_answer, crossing_sentence, crossings

    prober = Prober(SSLConfig(("synthetic_colour",), arch="resnet18", size=32), [CurveTarget("synthetic_colour")],
                    in_chans=3)
    backbone = timm.create_model("resnet18", pretrained=False, num_classes=0)
    rows = prober.rows(backbone, kind="checkpoint", step=0)
    assert [r["protocol"] for r in rows] == ["linear", "knn", "centroid"]
    mine = rows[-1]
    assert mine["setting"] == len(prober.data["synthetic_colour"].classes) and mine["val_log_loss"] is None
    assert 0 <= mine["val_accuracy"] <= 1
    assert rows[0]["val_log_loss"] is not None  # the linear probe's, as before

    def point(kind, protocol, accuracy, step=None, seed=None):
        return dict(kind=kind, target="t", protocol=protocol, val_accuracy=accuracy, step=step, seed=seed)

    curve = pd.DataFrame([point(k, p.name, a, step=s, seed=seed) for p in probes()
                          for k, a, s, seed in (("random", 0.6, None, 0), ("imagenet", 0.7, None, None),
                                                ("checkpoint", 0.5, 0, None), ("checkpoint", 0.8, 100, None))])
    found = crossings(curve)
    assert list(found.protocol) == ["linear", "knn", "centroid"]
    assert crossing_sentence(found.iloc[2]).startswith("**t**, nearest centroid: beats the best random")
    answer = budget_answer(found.assign(method="simclr", init="random", pool="grey", hours_per_step=0.01))
    assert "under the linear probe on **1 of 1** targets (t) and under the kNN on **1 of 1** targets (t) and " \
           "under the nearest centroid on **1 of 1** targets (t)" in answer
    fig = pretraining_curves([("SimCLR", curve, None)], probes())
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert lines["SSL, nearest centroid"].get_linestyle() == ":" and lines["SSL, kNN"].get_linestyle() == "--"
    assert lines["SSL, nearest centroid"].get_color() == "tab:green"


def test_a_protocol_added_to_the_table_is_compared_and_answered_by_the_book(centroid, monkeypatch):
    """The comparisons of an arm under every protocol, keyed by the book's names, and the gap of fine-tuning to a
    probe: the new row is one more comparison and can be asked for by its name."""
    from medimg.compare.protocols import probe_gaps
    from medimg.study import arm_runs

    asked = []
    monkeypatch.setattr(arm_runs, "ensure_probes", lambda arm, protocol: asked.append(protocol) or [])
    monkeypatch.setattr("medimg.compare.comparison.compare_runs", lambda dirs, by: f"by {by}")
    out = arm_runs.protocol_comparisons(["arm"], "method", "tuned")
    assert out == {"fine-tuning": "tuned", "linear probe": "by method", "kNN": "by method",
                   "nearest centroid": "by method"}
    assert asked == ["linear", "knn", "centroid"]

    def row(protocol, accuracy):
        return dict(dataset="d", arm="tl", protocol=protocol, accuracy=accuracy, accuracy_low=0.8, accuracy_high=0.9)

    table = pd.DataFrame([row("fine-tuning", 0.85), row("linear probe", 0.8), row("nearest centroid", 0.7)])
    gaps = probe_gaps(table, probe="nearest centroid")
    assert gaps["gap"].round(3).tolist() == [0.15] and list(gaps.columns)[5] == "nearest centroid"
