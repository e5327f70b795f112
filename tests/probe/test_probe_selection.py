"""Issue #30's probe that can tell: settings chosen by cross-validation on the training split (the validation split
unseen), one batch-norm rule for every network read frozen, label-free collapse signals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medimg.errors import MedimgError
from medimg.probe.features import FrozenFeatures
from medimg.probe.linear_knn import KNNProbe, LinearProbe


def toy(rng, n=(80, 40), d=6, shift=1.5):
    x, y = {}, {}
    for split, m in zip(("train", "val"), n):
        y[split] = np.arange(m) % 2
        x[split] = rng.normal(size=(m, d)).astype(np.float32)
        x[split][:, 0] += shift * y[split]
    return FrozenFeatures(x=x, y=y, classes=("a", "b"))


@pytest.mark.parametrize("probe", [lambda: LinearProbe(Cs=(1e-4, 1e-2, 1.0), select="cv"),
                                   lambda: KNNProbe(ks=(1, 5, 15), select="cv")])
def test_cross_validated_settings_never_look_at_the_validation_labels(probe):
    f = toy(np.random.default_rng(0))
    chosen = probe().fit(f)
    flipped = FrozenFeatures(x=f.x, y=dict(f.y, val=1 - f.y["val"]), classes=f.classes)
    again = probe().fit(flipped)
    assert chosen.setting_ == again.setting_  # the choice is the same whatever validation says
    # while choosing on validation follows the validation labels
    assert (LinearProbe(Cs=(1e-4, 1e-2, 1.0)).fit(f).val_log_loss_
            != LinearProbe(Cs=(1e-4, 1e-2, 1.0)).fit(flipped).val_log_loss_)


def test_cross_validation_is_scikit_learns_stratified_folds_on_training_images():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f = toy(np.random.default_rng(1))
    probe = LinearProbe(Cs=(1e-3, 1e-1, 10.0), select="cv", folds=4, random_state=3).fit(f)
    x, y = f.x["train"], f.y["train"]
    for C in probe.Cs:
        losses = [log_loss(y[h], make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=3))
                           .fit(x[t], y[t]).predict_proba(x[h]), labels=[0, 1])
                  for t, h in StratifiedKFold(4, shuffle=True, random_state=3).split(x, y)]
        assert probe.cv_log_loss_[C] == pytest.approx(np.mean(losses), rel=1e-4)  # warm-started: the same optimum
    assert probe.C_ == min(probe.cv_log_loss_, key=probe.cv_log_loss_.get)
    # folds never exceed the rarest class's images
    rare = FrozenFeatures(x=f.x, y=dict(f.y, train=np.r_[np.zeros(77, int), np.ones(3, int)]), classes=f.classes)
    assert LinearProbe(Cs=(1.0,), select="cv").fit(rare).C_ == 1.0
    with pytest.raises(MedimgError, match="unknown probe selection"):
        LinearProbe(select="test")


def test_accuracy_interval_and_the_paired_test_against_random_references():
    from medimg.evaluate.stats import accuracy_interval, beats_references

    rng = np.random.default_rng(0)
    correct = rng.random(400) < 0.8
    ci = accuracy_interval(correct)
    assert ci["low"] < correct.mean() < ci["high"] and ci["high"] - ci["low"] == pytest.approx(
        2 * 1.96 * np.sqrt(0.8 * 0.2 / 400), rel=0.15)
    references = rng.random((5, 400)) < 0.6
    assert beats_references(correct, references)["beats"]
    # the same network as its references does not beat them; nor does a small lead on few images
    assert not beats_references(references[0], references)["beats"]
    few = rng.random((6, 60)) < 0.7
    lead = few[0].copy()
    lead[np.flatnonzero(~lead)[:2]] = True  # two more right of 60 than one reference
    result = beats_references(lead, few[1:])
    assert not result["beats"] and result["low"] < 0 < result["difference"] + 0.2
    with pytest.raises(ValueError, match="images"):
        beats_references(correct, references[:, :10])


def test_batch_norm_statistics_recomputed_on_clean_images_and_the_rule():
    import timm

    from medimg.probe.batchnorm import recompute, with_statistics

    torch.manual_seed(0)
    net = timm.create_model("resnet18", num_classes=0)
    images = torch.randn(64, 3, 32, 32) * 2 + 1
    read = with_statistics(net, images, batch_size=16)
    assert not read.training and net.bn1.running_mean.abs().max() == 0  # the original untouched
    # the first batch norm's statistics are the mean and (unbiased) variance of conv1's output over all images
    with torch.no_grad():
        out = net.conv1(images)
    assert torch.allclose(read.bn1.running_mean, out.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(read.bn1.running_var, out.var((0, 2, 3)), rtol=1e-3)
    assert read.bn1.momentum == net.bn1.momentum
    assert recompute("clean", "random") and recompute("clean", "checkpoint") and not recompute("clean", "imagenet")
    assert recompute("pool", "imagenet") and not recompute("carried", "checkpoint")
    assert not recompute("clean", "checkpoint-frozen")  # continued from ImageNet with its statistics frozen


def test_collapse_signals():
    from medimg.probe.collapse import normalised_std, rankme

    rng = np.random.default_rng(0)
    spread = rng.normal(size=(500, 32))
    collapsed = np.outer(rng.normal(size=500), rng.normal(size=32)) + 1e-6 * rng.normal(size=(500, 32))
    assert rankme(spread) > 25 and rankme(collapsed) < 1.1
    assert normalised_std(spread) == pytest.approx(1 / np.sqrt(32), rel=0.1) and normalised_std(np.ones((10, 4))) == 0
