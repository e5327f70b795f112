"""Reading a learning curve made since issue #30: the batch-norm rule's rows, the paired test against the random
seeds, ImageNet's crossing and the budget chapter's opening table."""
from __future__ import annotations

import numpy as np
import pandas as pd

from medimg.ssl.curve import (batchnorm_effect, budget_answer, crossing_sentence, crossing_table, crossings,
                              pack_bits, unpack_bits)


def row(kind, correct, *, step=None, seed=None, bn="clean", protocol="linear"):
    correct = np.asarray(correct, dtype=bool)
    return dict(kind=kind, step=step, seed=seed, target="t", protocol=protocol, bn=bn,
                val_accuracy=correct.mean(), n_val=len(correct), correct=pack_bits(correct))


def curve(rng, n=300):
    """Random seeds right on ~60% of the images, ImageNet on ~80%; the checkpoint climbs from 60% to 90%."""
    rows = [row("random", rng.random(n) < 0.6, seed=s) for s in range(5)]
    rows += [row("random", rng.random(n) < 0.9, seed=s, bn="carried") for s in range(5)]  # not the rule: ignored
    rows.append(row("imagenet", rng.random(n) < 0.8))
    rows += [row("checkpoint", rng.random(n) < p, step=s) for s, p in ((0, 0.6), (500, 0.62), (1000, 0.75),
                                                                        (1500, 0.9))]
    return pd.DataFrame(rows)


def test_bits_round_trip():
    bits = np.random.default_rng(0).random(77) < 0.5
    assert np.array_equal(unpack_bits(pack_bits(bits), 77), bits)


def test_crossings_use_the_rule_and_the_paired_test():
    found = crossings(curve(np.random.default_rng(0))).iloc[0]
    assert found.rule == "paired bootstrap"
    assert found.random_best < 0.7  # the carried rows (90%) are not the rule's references
    assert found.first_step_above_random == 1000 and found.above_random_at_end  # 62% on 300 images is not enough
    assert found.first_step_at_imagenet == 1500 and found.imagenet_difference > 0
    assert found.imagenet_low < found.imagenet_difference < found.imagenet_high


def test_the_opening_table_says_where_each_checkpoint_crosses_or_its_budget():
    rng = np.random.default_rng(1)
    good = crossings(curve(rng)).assign(checkpoint="SimCLR")
    flat = curve(rng)
    flat.loc[flat.kind == "checkpoint", "correct"] = flat[flat.kind == "random"].correct.iloc[0]
    flat.loc[flat.kind == "checkpoint", "val_accuracy"] = flat[flat.kind == "random"].val_accuracy.iloc[0]
    table = crossing_table(pd.concat([good, crossings(flat).assign(checkpoint="VICReg")]))
    assert table.loc["t", "SimCLR"] == "random @ 1,000; ImageNet @ 1,500"
    assert table.loc["t", "VICReg"] == "random: not by 1,500; ImageNet: not by 1,500"


def test_the_sentences_say_the_paired_test_and_imagenets_interval():
    rng = np.random.default_rng(0)
    found = crossings(curve(rng))
    line = crossing_sentence(found.iloc[0])
    assert line.startswith("**t**, linear probe: beats random features (paired test) from step 1,000 on its way to")
    d = found.iloc[0]
    assert (f"the difference to ImageNet {d.imagenet_difference:+.3f}, 90% interval {d.imagenet_low:+.3f} to "
            f"{d.imagenet_high:+.3f}") in line
    # TL+SSL's start: ImageNet-initialised, counted against ImageNet's own features by the interval
    below = curve(rng)
    below.loc[below.kind == "checkpoint", "correct"] = below[below.kind == "random"].correct.iloc[0]
    below.loc[below.kind == "checkpoint", "val_accuracy"] = below[below.kind == "random"].val_accuracy.iloc[0]
    both = pd.concat([found.assign(target="a"), crossings(below).assign(target="b")], ignore_index=True)
    answer = budget_answer(both.assign(method="simclr", init="imagenet", pool="grey", hours_per_step=1e-4))
    assert ("not below ImageNet's beyond the 90% paired interval under the linear probe on **1 of 2** targets (a)"
            in answer)
    assert "and they beat random features (paired test) under the linear probe on **1 of 2** targets (a)" in answer
    assert "does **not** beat random features (paired test)" in crossing_sentence(crossings(below).iloc[0])


def test_the_batchnorm_effect_compares_each_network_under_the_rule_and_its_alternative():
    rng = np.random.default_rng(2)
    c = curve(rng)
    c = pd.concat([c, pd.DataFrame([row("imagenet", rng.random(300) < 0.5, bn="pool"),
                                    row("checkpoint", rng.random(300) < 0.7, step=1500, bn="pool"),
                                    row("checkpoint", rng.random(300) < 0.1, step=500, bn="pool")])],
                  ignore_index=True)
    effect = batchnorm_effect(c).set_index("network")
    random = c[(c.kind == "random")].groupby("bn").val_accuracy.mean()
    assert effect.loc["random init (seeds' mean)", "alternative"] == "carried"
    assert np.isclose(effect.loc["random init (seeds' mean)", "difference"], random["carried"] - random["clean"])
    last = c[(c.kind == "checkpoint") & (c.step == 1500)].set_index("bn").val_accuracy  # the last point only
    assert np.isclose(effect.loc["the checkpoint", "under the rule"], last["clean"])
    assert np.isclose(effect.loc["the checkpoint", "under the alternative"], last["pool"])
    assert effect.loc["ImageNet weights", "alternative"] == "pool"
    assert batchnorm_effect(c.drop(columns="bn")).empty  # a curve from before issue #30


def test_a_resumed_curves_references_fill_a_fresh_cache_and_are_not_measured_again(tmp_path, monkeypatch):
    from medimg.ssl.config import SSLConfig
    from medimg.ssl.curve import CurveTarget, Prober, read_curve_file, reference_rows

    monkeypatch.setenv("MEDIMG_CACHE_DIR", str(tmp_path / "cache"))
    prober = Prober.__new__(Prober)
    prober.config, prober.targets, prober.in_chans = SSLConfig(datasets=["pneumoniamnist"]), \
        [CurveTarget("breastmnist")], 3
    prober.pool_images = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    measured = []
    prober.rows = lambda model, **fields: measured.append(fields) or [dict(fields, target=prober.targets[0].dataset)]
    rng = np.random.default_rng(1)
    held = [row("random", rng.random(20) < 0.5, seed=s) | {"seed": float(s)} for s in (0, 1)] \
        + [row("imagenet", rng.random(20) < 0.7)] + [row("checkpoint", rng.random(20) < 0.6, step=100)]
    held = [r | {"target": "breastmnist"} for r in held]
    held[0]["correct"] = "12e456"  # all digits but one "e": a number to a CSV reader that guesses
    # as a resumed curve holds them: written to CSV and read back ("correct" stays text)
    pd.DataFrame(held).to_csv(tmp_path / "c.csv", index=False)
    known = read_curve_file(tmp_path / "c.csv")
    args = dict(seeds=[0, 1], imagenet_weights="tflite", timm_kwargs={})

    first = reference_rows(prober, "mobilenetv2_100", known=known, **args)
    again = reference_rows(prober, "mobilenetv2_100", **args)  # a new curve on the same pool: from the cache
    assert measured == []
    assert [r["kind"] for r in first] == ["random", "random", "imagenet"]
    assert [r["correct"] for r in again] == [r["correct"] for r in known[:3]]
    assert len(list((tmp_path / "cache" / "ssl-references").glob("*.json"))) == 3

    # rows measured on other targets are not these references: the networks are measured
    prober.targets = [CurveTarget("pneumoniamnist")]
    other = reference_rows(prober, "mobilenetv2_100", seeds=[0], imagenet_weights=None, timm_kwargs={},
                           known=known)
    assert [m["kind"] for m in measured] == ["random", "random"]  # the rule and the alternative
    assert [r["target"] for r in other] == ["pneumoniamnist"] * 2
