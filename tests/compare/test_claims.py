"""The verdicts on the paper's claims follow the rule the summary chapter prints, from comparison tables."""
import re
from types import SimpleNamespace

import pandas as pd

from medimg.compare.claims import above_chance, double_claim, grey_colour_markdown, grey_colour_table, modality_claims
from medimg.evaluate.stats import seed_summary


def pair_row(dataset, modality, a, b, difference, significant):
    return dict(dataset=dataset, modality=modality, arm_a=a, arm_b=b, mean_difference=difference,
                low=difference - 0.02, high=difference + 0.02, p_holm=0.01 if significant else 0.4,
                significant=significant, winner=a if difference > 0 else b)


def comparison(tests, summary=(), classes=None):
    runs = [SimpleNamespace(dataset=d, classes=tuple(range(k))) for d, k in (classes or {}).items()]
    return SimpleNamespace(tests=pd.DataFrame(tests), summary=pd.DataFrame(list(summary)), runs=runs)


def test_modality_claims_hold_contradict_or_leave_undecided():
    tests = [pair_row("c1", "colour", "tl", "ssl", 0.10, True), pair_row("c2", "colour", "tl", "ssl", 0.05, True),
             pair_row("c3", "colour", "tl", "ssl", -0.01, False),
             # grey: written the other way round (ssl vs tl), so the orientation must be flipped
             pair_row("g1", "grey", "ssl", "tl", -0.08, True), pair_row("g2", "grey", "ssl", "tl", -0.06, True),
             pair_row("g3", "grey", "ssl", "tl", 0.02, False)]
    colour, grey = modality_claims(comparison(tests))
    assert colour["verdict"] == "holds" and colour["datasets"] == 3
    assert "tl significantly better on 2 of 3" in colour["evidence"]
    assert grey["verdict"] == "contradicted" and "tl significantly better on 2" in grey["evidence"]
    # one significant loss is enough to stop a claim from holding
    tests[2] = pair_row("c3", "colour", "tl", "ssl", -0.05, True)
    assert modality_claims(comparison(tests))[0]["verdict"] == "not decided"


def test_double_claim_compares_the_gains_of_tl_and_ssl():
    def rows(tl_gain, ssl_gain, tl_significant):
        return [pair_row("d1", "grey", "tl/double", "tl/single", tl_gain, tl_significant),
                pair_row("d1", "grey", "ssl/double", "ssl/single", ssl_gain, False)]

    assert double_claim(comparison(rows(0.08, 0.01, True)))["verdict"] == "holds"
    assert double_claim(comparison(rows(-0.03, 0.02, False)))["verdict"] == "contradicted"
    assert double_claim(comparison(rows(0.03, 0.01, False)))["verdict"] == "not decided"
    assert double_claim(None)["verdict"] == "not tested"


def test_above_chance_uses_the_balanced_accuracy_interval_and_the_class_count():
    summary = [dict(dataset="two", modality="grey", arm="tl", seeds=5, balanced_accuracy=0.6,
                    balanced_accuracy_low=0.55, accuracy=0.8, accuracy_low=0.78, accuracy_high=0.82,
                    majority_accuracy=0.73),
               dict(dataset="two", modality="grey", arm="ssl", seeds=5, balanced_accuracy=0.55,
                    balanced_accuracy_low=0.50, accuracy=0.73, accuracy_low=0.73, accuracy_high=0.73,
                    majority_accuracy=0.73),
               dict(dataset="five", modality="colour", arm="tl", seeds=5, balanced_accuracy=0.3,
                    balanced_accuracy_low=0.25, accuracy=0.4, accuracy_low=0.35, accuracy_high=0.45,
                    majority_accuracy=0.3)]
    main = comparison([pair_row("two", "grey", "tl", "ssl", 0.07, True)], summary, {"two": 2, "five": 5})
    # a constant prediction scores exactly chance (0.5 for two classes): not above it
    assert above_chance(main) == {"two": ["tl"], "five": ["tl"]}
    table = grey_colour_table(main).set_index("dataset")
    assert table.loc["two", "above_chance"] == "tl" and table.loc["two", "majority"] == 0.73
    assert table.loc["two", "verdict"] == "tl (significant)" and list(table.index) == ["two", "five"]
    # the book's narrow form: modality in the name, no seeds or above-chance column, the winner alone
    lines = grey_colour_markdown(main).splitlines()
    assert lines[0].split("|")[1:-1] == [" dataset ", " tl ", " ssl ", " majority ", " tl − ssl ", " Holm p ", " wins "]
    assert lines[2].startswith("| two (grey) |") and lines[2].rstrip().endswith("| tl |")
    assert lines[3].startswith("| five (colour) |")


def summary_row(dataset, arm, accuracies, balanced):
    """A row of compare's summary built by seed_summary, as compare_runs builds it."""
    row = dict(dataset=dataset, modality="grey", arm=arm, seeds=len(accuracies), majority_accuracy=0.6)
    for metric, values in (("accuracy", accuracies), ("balanced_accuracy", balanced)):
        s = seed_summary(values, metric=metric)
        row.update({metric: s["mean"], f"{metric}_low": s["low"], f"{metric}_high": s["high"],
                    f"{metric}_note": s["note"]})
    return row


def test_above_chance_with_bounded_intervals_and_with_a_single_seed():
    summary = [summary_row("near_one", "tl", [0.99, 1.0, 1.0], [0.99, 1.0, 1.0]),
               summary_row("near_one", "ssl", [0.6, 0.9], [0.5, 0.9]),  # wide: not wholly above 0.5
               summary_row("single", "tl", [0.8], [0.75]),  # one seed: no interval, judged by its value
               summary_row("single", "ssl", [0.5], [0.5])]
    main = comparison([], summary, {"near_one": 2, "single": 2})
    assert above_chance(main) == {"near_one": ["tl"], "single": ["tl"]}
    table = grey_colour_table(main, arms=("tl", "ssl")).set_index("dataset")
    assert table.loc["single", "tl"] == "0.800 [—] (1 seed: no interval)"
    assert table.loc["single", "above_chance"] == "tl (1 seed: no interval)"
    assert table.loc["near_one", "above_chance"] == "tl"
    low, high = (float(x) for x in table.loc["near_one", "tl"].split("[")[1].rstrip("]").split(","))
    assert 0.5 < low <= 0.99667 <= high <= 1  # the plain t interval reaches 1.011
    assert not re.search(r"\bnan\b", table.to_string(), re.IGNORECASE)


def test_a_claim_states_the_pretraining_budget_and_where_a_checkpoint_lost_to_random_features():
    from medimg.compare.claims import agreement_markdown, claims_by_protocol, modality_claims_checked
    from medimg.ssl.check import SSLCheck

    tests = [pair_row("c1", "colour", "tl", "ssl", 0.10, True), pair_row("g1", "grey", "tl", "ssl", 0.10, True)]
    main = comparison(tests)
    main.runs = [SimpleNamespace(dataset="c1", modality="colour"), SimpleNamespace(dataset="g1", modality="grey")]
    lost = SSLCheck("g1", "ck", 1.0, 0.50, 0.7, (0, 1), (0.60, 0.55), (0.6, 0.6))
    won = SSLCheck("c1", "ck", 1.0, 0.80, 0.4, (0, 1), (0.60, 0.55), (0.6, 0.6))
    budgets = {"g1": "SimCLR, 3,000 steps (1.80 CPU core-hours)", "c1": "VICReg, 3,000 steps (1.90 CPU core-hours)"}
    colour, grey = modality_claims_checked(main, {"g1": lost, "c1": won}, budgets)
    # the verdict is what the test decides; where the checkpoint lost, the evidence says so, with its budget
    assert grey["verdict"] == "contradicted" and colour["verdict"] == "holds"
    assert grey["evidence"].endswith("; self-supervised pretraining: SimCLR, 3,000 steps (1.80 CPU core-hours); the "
                                     "checkpoint g1's SSL arm starts from does not beat random features on validation "
                                     "at that budget, so that arm measures self-supervision at that budget (the learning curves: *How "
                                     "much pretraining does self-supervision need?*)")
    assert colour["evidence"].endswith("; self-supervised pretraining: VICReg, 3,000 steps (1.90 CPU core-hours)")
    assert [c["verdict"] for c in modality_claims_checked(main, {"g1": won})] == ["holds", "contradicted"]
    assert "random features" not in modality_claims_checked(main, {"g1": won})[1]["evidence"]
    # several that lost are named in one plural sentence
    main.runs.append(SimpleNamespace(dataset="g2", modality="grey"))
    grey = modality_claims_checked(main, {"g1": lost, "g2": lost, "c1": won})[1]
    assert ("; the checkpoints the SSL arms of g1 and g2 start from do not beat random features on validation "
            "at that budget, so those arms measure self-supervision") in grey["evidence"]

    probe = comparison([pair_row("c1", "colour", "tl", "ssl", -0.10, True), pair_row("g1", "grey", "tl", "ssl", 0.1, True)])
    probe.runs = main.runs
    table = claims_by_protocol({"fine-tuning": main, "linear probe": probe}, {"g1": won})
    assert list(table["protocol"]) == ["fine-tuning"] * 2 + ["linear probe"] * 2
    text = agreement_markdown(table)
    assert "*TL wins on colour images*: the protocols disagree: fine-tuning **holds**; linear probe **contradicted**" in text
    assert "*SSL wins on grey-scale images*: every protocol agrees, **contradicted**" in text


def test_architecture_table_says_where_the_networks_disagree():
    from medimg.compare.claims import architecture_markdown, architecture_table

    mob, lite = "mobilenetv2_100", "tf_efficientnet_lite0"
    tests = [pair_row("d", "grey", f"tl/{mob}", f"ssl/{mob}", 0.10, True),
             pair_row("d", "grey", f"ssl/{lite}", f"tl/{lite}", -0.12, True),  # the other orientation: TL wins
             pair_row("d", "grey", f"tl/{mob}", f"scratch/{mob}", 0.05, True),
             pair_row("d", "grey", f"tl/{lite}", f"scratch/{lite}", 0.01, False),
             pair_row("d", "grey", f"ssl/{mob}", f"scratch/{mob}", -0.02, False),
             pair_row("d", "grey", f"ssl/{lite}", f"scratch/{lite}", -0.03, False)]
    c = comparison(tests)
    c.arms = [f"{m}/{a}" for a in (mob, lite) for m in ("tl", "ssl", "scratch")]
    c.per_run = pd.DataFrame([dict(dataset="d")])
    table = architecture_table(c).set_index("pair")
    assert table.loc["tl vs ssl", mob] == "+0.100 (tl)" and table.loc["tl vs ssl", lite] == "+0.120 (tl)"
    assert list(table["same"]) == [True, False, True]
    assert "different verdicts on d (tl vs scratch)" in architecture_markdown(c)
    c.tests = pd.DataFrame()
    assert "No architecture ablation" in architecture_markdown(c)


def test_the_papers_numbers_stand_beside_the_books_for_its_own_datasets():
    from medimg.compare.claims import paper_numbers_markdown, paper_numbers_table
    from medimg.data.registry import REGISTRY

    def summary_row(dataset, arm, accuracy):
        return dict(dataset=dataset, arm=arm, accuracy=accuracy, accuracy_low=accuracy - 0.02,
                    accuracy_high=accuracy + 0.02, accuracy_note=None)

    summary = [summary_row(d, a, v) for d, a, v in (("busi_256", "tl", 0.81), ("busi_256", "ssl", 0.70),
                                                      ("iq_othnccd_lung_ct", "tl", 0.93), ("breastmnist", "tl", 0.86))]
    runs = [SimpleNamespace(dataset=d, seed=s, config=dict(arch="mobilenetv2_100", size=64))
            for d in ("busi_256", "iq_othnccd_lung_ct", "breastmnist") for s in range(5)]
    main = SimpleNamespace(summary=pd.DataFrame(summary), runs=runs)
    table = paper_numbers_table(main)
    # BreastMNIST is made from BUSI but is not the paper's dataset: only the two staged paper datasets have rows
    assert list(table.dataset) == ["busi_256", "iq_othnccd_lung_ct"]
    assert list(table.paper_dataset) == ["busi", "iq_othnccd"]
    busi, iq = table.to_dict("records")
    assert busi["paper SSL"] == REGISTRY["busi"].extra["paper_reported"]["ssl"] == 0.90 and pd.isna(busi["paper TL"])
    assert (iq["paper TL"], iq["paper SSL"]) == (0.954, 0.9722)
    assert busi["here TL"].startswith("0.81") and busi["here SSL"].startswith("0.7") and pd.isna(iq.get("here SSL"))
    assert busi["differs"].startswith("here mobilenetv2_100 at 64 px for every arm, 5 seeds, splits grouped")
    assert "a 520-image subset" in iq["differs"] and iq["differs"].endswith("ResNet-50 (SSL, 224 px), one run")
    assert "| busi_256 | busi |" in paper_numbers_markdown(main)
    main.summary = main.summary[main.summary.dataset == "breastmnist"]
    assert paper_numbers_table(main).empty and "None of this book's datasets" in paper_numbers_markdown(main)
