"""Frozen features and the probes on them: cached by what decides them, tuned on validation only, and right."""
import json

import numpy as np
import pytest

from conftest import SHARED_DATA
from medimg.finetune.config import FinetuneConfig
from medimg.errors import MedimgError
from medimg.probe.features import FrozenFeatures, extract_features
from medimg.probe.linear_knn import KNNProbe, LinearProbe
from medimg.probe.protocols import probes, protocol_of


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIMG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "features"


def config(**kw):
    return FinetuneConfig(**dict(dict(dataset="synthetic_grey", method="tl", weights="tflite", size=32), **kw))


def test_features_are_extracted_once_and_keyed_by_what_decides_them(cache):
    first = extract_features(config().network)
    assert first.x["train"].shape == (len(first.y["train"]), 1280) and first.x["train"].dtype == np.float32
    assert sum(len(first.y[s]) for s in ("train", "val", "test")) == 300 and first.seconds > 0
    again = extract_features(config(seed=5).network)  # TL features do not depend on the fine-tuning seed
    assert again.seconds == 0 and len(list(cache.glob("*.npz"))) == 1
    assert all(np.array_equal(first.x[s], again.x[s]) and np.array_equal(first.y[s], again.y[s]) for s in first.x)
    # a random init is its seed's; another size is other features
    scratch0, scratch1 = (extract_features(config(method="scratch", weights=None, seed=s).network) for s in (0, 1))
    assert not np.allclose(scratch0.x["train"], scratch1.x["train"])
    assert extract_features(config(size=48).network).seconds > 0 and len(list(cache.glob("*.npz"))) == 4


def toy_features(rng, n=(60, 30, 30), d=8, shift=2.0):
    """Two Gaussian classes apart along the first axis: separable up to noise."""
    x, y = {}, {}
    for split, m in zip(("train", "val", "test"), n):
        y[split] = np.arange(m) % 2
        x[split] = rng.normal(size=(m, d)).astype(np.float32)
        x[split][:, 0] += shift * y[split]
    return FrozenFeatures(x=x, y=y, classes=("a", "b"))


def test_the_linear_probe_is_scikit_learns_logistic_regression_with_c_chosen_on_validation():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f = toy_features(np.random.default_rng(0))
    probe = LinearProbe(Cs=(1e-6, 0.01, 1.0)).fit(f)
    # a C of 1e-6 shrinks every weight to ~0: probabilities near 0.5 and the worst validation log loss
    assert probe.val_log_loss_[1e-6] > max(probe.val_log_loss_[0.01], probe.val_log_loss_[1.0])
    assert probe.C_ == min(probe.val_log_loss_, key=probe.val_log_loss_.get)
    direct = make_pipeline(StandardScaler(), LogisticRegression(C=probe.C_, max_iter=3000)).fit(f.x["train"], f.y["train"])
    assert np.allclose(probe.predict_proba(f.x["test"]), direct.predict_proba(f.x["test"]))
    assert probe.val_log_loss_[probe.C_] == pytest.approx(log_loss(f.y["val"], direct.predict_proba(f.x["val"])))
    assert np.mean(probe.predict_proba(f.x["test"]).argmax(1) == f.y["test"]) > 0.75


def test_knn_picks_k_by_validation_accuracy_and_never_a_k_beyond_the_training_set():
    f = toy_features(np.random.default_rng(1), n=(20, 40, 40))
    probe = KNNProbe(ks=(1, 5, 15, 51)).fit(f)
    assert set(probe.val_accuracy_) == {1, 5, 15}  # 51 neighbours of 20 training images do not exist
    assert probe.val_accuracy_[probe.k_] == max(probe.val_accuracy_.values())
    probs = probe.predict_proba(f.x["test"])
    assert probs.shape == (40, 2) and np.allclose(probs.sum(1), 1)


def test_a_linear_probe_on_imagenet_features_reaches_the_yardstick_on_breastmnist(cache):
    """Frozen ImageNet MobileNetV2 at 64 px: a linear probe near the published ResNet-18 figure (0.863), kNN
    above the majority class (0.731). Measured: 0.833 and 0.763."""
    if not list(SHARED_DATA.glob("breastmnist*/breastmnist.npz")) + list(SHARED_DATA.glob("breastmnist.npz")):
        pytest.skip("breastmnist.npz is not in the shared data folder")
    f = extract_features(config(dataset="breastmnist", size=64).network)
    majority = np.bincount(f.y["test"]).max() / len(f.y["test"])
    accuracy = {p.display: np.mean(p.build().fit(f).predict_proba(f.x["test"]).argmax(1) == f.y["test"])
                for p in probes()}
    assert majority == pytest.approx(0.731, abs=1e-3)
    assert accuracy["linear probe"] >= 0.80 and accuracy["kNN"] > majority, accuracy


def test_a_probe_takes_the_same_training_subsample_as_fine_tuning_and_refuses_one_class():
    from medimg.data.balance import stratified_subsample

    f = toy_features(np.random.default_rng(2))
    capped = LinearProbe(Cs=(1.0,), max_train_images=20).fit(f)
    keep = stratified_subsample(f.y["train"], 20, random_state=0)
    assert capped.model_[-1].n_features_in_ == 8 and len(keep) == 20
    one_class = FrozenFeatures(x=f.x, y=dict(f.y, train=np.zeros_like(f.y["train"])), classes=f.classes)
    with pytest.raises(MedimgError, match="at least two classes"):
        LinearProbe().fit(one_class)
    with pytest.raises(MedimgError, match="unknown protocol 'svm'"):
        protocol_of("svm")


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_probe_as_a_linear_layer_gives_the_probes_own_probabilities(n_classes):
    """LP-FT's head: the standardisation folded into the weights, a binary logit split in two."""
    rng = np.random.default_rng(3)
    x = {s: rng.normal(size=(60, 5)) * [1, 2, 3, 4, 5] + 7 for s in ("train", "val", "test")}
    y = {s: np.arange(60) % n_classes for s in x}
    for s in x:
        x[s][:, 0] += 3 * y[s]
    probe = LinearProbe(Cs=(0.1, 1.0)).fit(FrozenFeatures(x=x, y=y, classes=tuple("abc"[:n_classes])))
    weight, bias = probe.head_weights()
    logits = x["test"] @ weight.T + bias
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    assert weight.shape == (n_classes, 5) and np.allclose(softmax, probe.predict_proba(x["test"]), atol=1e-5)


def test_lp_ft_starts_from_the_probe_and_trains_a_fixed_schedule(tmp_path):
    from medimg.training.trainer import TrainerSettings
    from medimg.finetune.train import finetune

    config = FinetuneConfig("synthetic_colour", "scratch", arch="resnet18", size=32, epochs=3, patience=1,
                            recipe="lp-ft", lr=1e-4)
    metrics = finetune(config, tmp_path / "run", settings=TrainerSettings(accelerator="cpu", progress=False))
    assert metrics["epochs_run"] == 3 and metrics["best_epoch"] == 2  # no early stopping; the last weights kept
    probe = metrics["linear_probe"]
    assert probe["C"] in LinearProbe().Cs and 0 <= probe["val_accuracy"] <= 1
    timing = metrics["timing"]["target"]  # LP-FT's probe stage is timed as work, apart from the epochs
    assert timing["probe_seconds"] > 0 and timing["train_seconds"] > 0
    history = json.loads((tmp_path / "run" / "config.json").read_text())["run"]
    assert history["recipe"] == "lp-ft"


def test_lp_ft_keeps_batch_norm_statistics_so_it_starts_where_the_probe_ends(tmp_path):
    """With a learning rate too small to move a weight, LP-FT's network predicts what its probe predicts:
    batch statistics of the training batches must not replace the running ones the probe was fitted on."""
    from medimg.training.trainer import TrainerSettings
    from medimg.finetune.train import finetune

    config = FinetuneConfig("synthetic_grey", "scratch", arch="resnet18", size=32, epochs=1, recipe="lp-ft",
                            lr=1e-12, weight_decay=0.0)
    metrics = finetune(config, tmp_path / "run", settings=TrainerSettings(accelerator="cpu", progress=False))
    probe = metrics["linear_probe"]
    assert metrics["val"]["accuracy"] == pytest.approx(probe["val_accuracy"])
    assert metrics["val"]["loss"] == pytest.approx(probe["val_loss"], rel=1e-3)


def test_probe_runs_are_read_and_compared_like_fine_tuning_runs(tmp_path, cache):
    """A probe of each arm's initial network, kept as a run: its predictions are the probe's own, a second call
    finds it, and compare_runs ranks the arms under the protocol (TL's features are one network for every seed,
    scratch's differ by seed)."""
    from medimg.compare.comparison import compare_runs
    from medimg.study.probe_runs import probe_name, probe_run
    from medimg.finetune.runs import read_run

    runs = []
    for method, seed in (("tl", 0), ("tl", 1), ("scratch", 0), ("scratch", 1)):
        cfg = config(method=method, weights="tflite" if method == "tl" else None, seed=seed)
        run_dir = tmp_path / method / probe_name(cfg, "linear")
        metrics = probe_run(cfg, "linear", run_dir)
        features = extract_features(cfg.network)
        probe = LinearProbe(random_state=seed).fit(features)
        run = read_run(run_dir)
        assert np.allclose(run.probs, probe.predict_proba(features.x["test"]), atol=1e-5)
        assert metrics["test"]["accuracy"] == pytest.approx(np.mean(run.probs.argmax(1) == run.y_true))
        assert metrics["setting"] == dict(C=probe.C_) and run.numerics == dict(precision="32-true", deterministic=True)
        runs.append(run_dir)
    with pytest.raises(MedimgError, match="finished probe"):
        probe_run(config(), "linear", runs[0])
    assert probe_name(config(), "linear") != probe_name(config(), "knn") != probe_name(config(size=48), "knn")
    comparison = compare_runs(runs)
    assert comparison.arms == ["tl", "scratch"]
    tl = comparison.per_run[comparison.per_run.arm == "tl"]["accuracy"]
    assert tl.iloc[0] == tl.iloc[1]  # one network, one probe: the same for every seed
    # so its seeds are no replicates: TL against scratch is tested on the test images (McNemar), not across seeds
    test = comparison.tests.iloc[0]
    assert test["test"] == "McNemar" and test["p"] == test["p_mcnemar"]


def test_the_book_says_whether_fine_tuning_kept_what_the_probe_shows():
    import pandas as pd
    from medimg.compare.protocols import probe_gaps, protocols_markdown

    def row(arm, protocol, accuracy, low, high):
        return dict(dataset="d", arm=arm, protocol=protocol, seeds=5, accuracy=accuracy, accuracy_low=low,
                    accuracy_high=high, balanced_accuracy=0.5, majority_accuracy=0.6)

    table = pd.DataFrame([row("tl", "fine-tuning", 0.86, 0.85, 0.88), row("tl", "linear probe", 0.83, 0.83, 0.83),
                          row("ssl", "fine-tuning", 0.710, 0.69, 0.73), row("ssl", "linear probe", 0.712, 0.712, 0.712),
                          row("scratch", "fine-tuning", 0.70, 0.68, 0.72), row("scratch", "linear probe", 0.75, 0.74, 0.76)])
    gaps = probe_gaps(table).set_index("arm")
    assert gaps.loc["tl", "gap"] == pytest.approx(0.03) and gaps.loc["ssl", "gap"] == pytest.approx(-0.002)
    assert (gaps.loc["scratch", "low"], gaps.loc["scratch", "high"]) == (0.68, 0.72)  # fine-tuning's interval
    lines = protocols_markdown(table).splitlines()
    assert lines[0] == "- **tl** on d: fine-tuned 0.860, at least its linear probe (0.830)."
    assert "0.002 below its linear probe (0.712), which lies inside" in lines[1] and "noise" in lines[1]
    assert "**0.050 below** its linear probe (0.750), outside" in lines[2] and "recipe lost" in lines[2]
