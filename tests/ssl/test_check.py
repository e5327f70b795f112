"""The check of a checkpoint against random features (medimg.ssl.check), on validation only."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import REPO
from medimg.errors import MedimgError
from medimg.ssl.run import pretrain_ssl
from tiny_runs import CPU, tiny

def test_a_checkpoint_is_checked_against_random_features_on_validation_only(tmp_path, monkeypatch):
    """The SimCLR chapter's check: the probe of the checkpoint's features beside one random init per seed of the
    arm, each the same numbers a probe fitted by hand gives."""
    from medimg.finetune.config import FinetuneConfig
    from medimg.probe.features import extract_features
    from medimg.probe.linear_knn import LinearProbe
    from medimg.ssl.check import SSLCheck, check_ssl_checkpoint

    monkeypatch.setenv("MEDIMG_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint = pretrain_ssl(tiny(("synthetic_grey",), grey_as="replicate"), tmp_path / "c.safetensors", trainer=CPU)
    run = dict(dataset="synthetic_colour", arch="resnet18", size=32)
    check = check_ssl_checkpoint(FinetuneConfig(**run, method="ssl", weights=str(checkpoint), seed=0).network,
                                 [FinetuneConfig(**run, method="scratch", seed=s).network for s in (0, 1)])

    def by_hand(**kw):
        features = extract_features(FinetuneConfig("synthetic_colour", arch="resnet18", size=32, **kw).network)
        probe = LinearProbe(random_state=kw["seed"]).fit(features)
        return float(np.mean(probe.predict_proba(features.x["val"]).argmax(1) == features.y["val"]))

    assert check.val_accuracy == by_hand(method="ssl", weights=str(checkpoint), seed=0)
    assert check.random_val_accuracy == (by_hand(method="scratch", seed=0), by_hand(method="scratch", seed=1))
    assert check.seeds == (0, 1) and check.checkpoint == "c.safetensors"
    assert check.beats_random == (check.val_accuracy > max(check.random_val_accuracy))
    # kept beside the checkpoint as JSON, read back equal (a committed study has the check, not the checkpoint)
    import json

    from medimg.ssl.check import check_path, read_check
    check_path(checkpoint, "synthetic_colour").write_text(json.dumps(check.to_dict()))
    assert check_path(checkpoint, "synthetic_colour").name == "c.check-synthetic_colour.json"
    assert read_check(checkpoint, "synthetic_colour") == check and read_check(checkpoint, "other") is None
    losing = SSLCheck("t", "c", 1.0, 0.6, 0.7, (0, 1), (0.62, 0.58), (0.6, 0.7))
    assert not losing.beats_random and "do **not** beat" in losing.verdict()
    assert SSLCheck("t", "c", 1.0, 0.7, 0.6, (0, 1), (0.62, 0.58), (0.6, 0.7)).beats_random
    from medimg.ssl.check import checks_markdown

    table = checks_markdown({"t": losing})  # the summary's table: checkpoint beside the random mean
    assert "| target | pretrained with | checkpoint | random init (mean) | above the best random |" in table
    assert "| t | c | 0.600 | 0.600 | no |" in table
    named = SSLCheck("t", "vicreg-random-grey-b5bd269fe050.safetensors", 1.0, 0.6, 0.7, (0, 1), (0.62, 0.58), (0.6, 0.7))
    assert "| t | VICReg | 0.600 | 0.600 | no |" in checks_markdown({"t": named})
    with pytest.raises(MedimgError, match="reads a self-supervised checkpoint file, not the auto weights"):
        check_ssl_checkpoint(FinetuneConfig(**run, method="tl", seed=0).network, [])
    # which arms start from a checkpoint is the study's to know: it refuses to check one that does not
    from medimg.study.arm import profile_arm
    from medimg.study.arm_runs import ensure_ssl_check
    from medimg.study.profiles import load_profile

    with pytest.raises(MedimgError, match="the tl arm starts from no self-supervised checkpoint: check an arm that "
                                          "does \\(ssl, tl\\+ssl\\)"):
        ensure_ssl_check(profile_arm(load_profile("quick", REPO / "study.yml"), "breastmnist", "tl"))


def test_a_checkpoint_with_a_paired_curve_is_checked_by_its_last_point_under_the_curves_rule():
    """Since issue #30 the check and the curve say one thing: the check is the curve's last point of the linear
    probe under the batch-norm rule, decided by the same paired test as the crossing table."""
    from medimg.ssl.check import PAIRED, SSLCheck, check_from_curve, checks_markdown
    from medimg.ssl.curve import crossings, read_curve

    checkpoint = REPO / "results" / "quick" / "ssl" / "simclr-imagenet-grey-e4f82babd8b3.safetensors"
    curve = read_curve(checkpoint)
    found = crossings(curve).set_index(["target", "protocol"])
    for target in ("breastmnist", "pneumoniamnist", "busi_256", "iq_othnccd_lung_ct"):
        check = check_from_curve(curve, target, checkpoint.name, (0, 1, 2, 3, 4))
        row = found.loc[(target, "linear")]
        last = curve[(curve.target == target) & (curve.protocol == "linear") & (curve.bn == "clean")
                     & (curve.kind == "checkpoint") & (curve.step == 2000)].iloc[0]
        assert check.rule == PAIRED and check.step == 2000 and check.seeds == (0, 1, 2, 3, 4)
        assert check.val_accuracy == row["last"] == last.val_accuracy and check.C == last.setting
        assert check.random_accuracy_mean == pytest.approx(row["random_mean"])
        assert check.interval == (last.val_low, last.val_high)
        assert check.beats_random == row["above_random_at_end"] == (check.low > 0)
        assert check.difference == pytest.approx(check.val_accuracy - check.random_accuracy_mean)
        assert SSLCheck.from_dict(check.to_dict()) == check  # kept beside the checkpoint, read back equal
    assert "by the paired test (" in check.verdict() and "one-sided 95% lower bound" in check.verdict()
    table = checks_markdown({"iq_othnccd_lung_ct": check})
    assert "| target | pretrained with | checkpoint | random init (mean) | difference | lower bound | beats random (paired test) |" in table
    # beside a check made before, in either order: the same columns, the old one marked by its rule
    old = SSLCheck("t", "c", 1.0, 0.6, 0.7, (0, 1), (0.62, 0.58), (0.6, 0.7))
    for mixed in ({"t": old, "iq_othnccd_lung_ct": check}, {"iq_othnccd_lung_ct": check, "t": old}):
        lines = checks_markdown(mixed).splitlines()
        assert lines[0] == table.splitlines()[0] and "| t | c | 0.600 | 0.600 |  |  | no (best seed) |" in lines
    # the curve cannot say it: other seeds, a target it does not probe, a curve from before issue #30
    assert check_from_curve(curve, "breastmnist", checkpoint.name, (0, 1)) is None
    assert check_from_curve(curve, "retinamnist", checkpoint.name, (0, 1, 2, 3, 4)) is None
    old = REPO / "results" / "quick" / "ssl" / "simclr-random-grey-26688e542040.safetensors"
    assert check_from_curve(read_curve(old), "breastmnist", old.name, (0, 1, 2, 3, 4)) is None


def test_the_summary_states_the_rule_its_checks_were_decided_by():
    from medimg.ssl.check import PAIRED, SSLCheck, rules_markdown

    old = SSLCheck("t", "c", 1.0, 0.6, 0.7, (0, 1), (0.62, 0.58), (0.6, 0.7))
    new = SSLCheck("u", "c", 1.0, 0.7, 0.6, (0, 1), (0.62, 0.58), (0.6, 0.7), rule=PAIRED, difference=0.1, low=0.02,
                   interval=(0.6, 0.8), step=100)
    assert rules_markdown({"t": old}).startswith("A check made before issue #30 counts a checkpoint as beating random "
                                                 "features when it is above the *best* of them;")
    assert rules_markdown({"u": new}).startswith("A checkpoint beats random features when the paired test says so")
    both = rules_markdown({"t": old, "u": new})
    assert "; a check made before issue #30 (marked *best seed*) counts" in both and rules_markdown({}) == ""
    assert new.beats_random and not SSLCheck(**dict(new.__dict__, low=-0.01)).beats_random
