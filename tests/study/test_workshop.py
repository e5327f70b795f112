"""The workshop chapter: its arms from the profile's workshop section, its place in the plan, and its questions'
answers computed from real runs (nbval runs the template itself, training its runs, at its defaults)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SHARED_DATA
from medimg.errors import MedimgError
from medimg.finetune.arms import arm_kind
from medimg.study.plan import dependencies, flatten, plan
from medimg.study.profiles import load_profile
from medimg.study.workshop import answers_markdown, workshop_answers, workshop_arms


def quick():
    return load_profile("quick", REPO / "study.yml")


def test_the_workshop_is_tl_against_scratch_with_the_sections_settings():
    p = quick()
    tl, scratch = workshop_arms(p)
    assert arm_kind(tl.method).imagenet and arm_kind(scratch.method).random
    for arm in (tl, scratch):
        assert (arm.dataset, arm.seeds, arm.results_dir) == ("breastmnist", (0, 1), "results/workshop")
        # the section's epochs on top of the profile's recipe and network: only the budget is the workshop's
        assert arm.finetune["epochs"] == 3 and arm.finetune["epochs"] != p["finetune"]["epochs"]
        assert {k: arm.finetune[k] for k in ("arch", "size", "recipe", "lr")} == {
            k: p["finetune"][k] for k in ("arch", "size", "recipe", "lr")}
    assert tl.tl_weights == p["tl_weights"]
    # a parameter replaces the section's value; None keeps it
    other = workshop_arms(p, dataset="busi_256", seeds=[3], size=32, epochs=None)
    assert {(a.dataset, a.seeds, a.finetune["size"], a.finetune["epochs"]) for a in other} == {("busi_256", (3,), 32, 3)}


def test_a_profile_without_a_workshop_section_is_refused_in_one_line():
    with pytest.raises(MedimgError, match="profile 'smoke' has no workshop section.*study.yml") as err:
        workshop_arms(load_profile("smoke", REPO / "study.yml"))
    assert "\n" not in str(err.value)


def test_the_workshop_opens_the_quick_book_and_waits_for_its_datasets_card():
    if not SHARED_DATA.is_dir():
        pytest.skip("the shared data folder is not here")
    chapters, _ = plan(quick())
    first = chapters[0]
    assert (first.path, first.template, first.part) == ("book/quick/workshop.ipynb", "workshop", "Workshop")
    assert first.parameters == {"profile": "quick"}
    assert [a["method"] for a in first.resolved["arms"]] == ["tl", "scratch"]
    assert dependencies(chapters)[first.path] == ("book/quick/breastmnist/card.ipynb",)
    # the summary and the appendix still wait for everything, the workshop included
    assert first.path in dependencies(chapters)["book/quick/summary.ipynb"]
    # the smoke profile has no section, so no workshop chapter
    smoke, _ = plan(load_profile("smoke", REPO / "study.yml"))
    assert not [c for c in flatten(smoke) if c.template == "workshop"]


def committed_breastmnist():
    """The quick book's committed BreastMNIST runs and probes, seeds 0 and 1, of TL and scratch (5 epochs, not the
    workshop's 3: the answers are computed the same way)."""
    from medimg.compare.comparison import compare_runs
    from medimg.compare.protocols import protocol_table
    from medimg.study.arm import profile_arm
    from medimg.study.arm_runs import finished_arm_runs, protocol_comparisons

    arms = [profile_arm(quick(), "breastmnist", m, seeds=[0, 1]) for m in ("tl", "scratch")]
    dirs = [d for a in arms for d in finished_arm_runs(a)]
    if len(dirs) != 4:
        pytest.skip("the quick book's BreastMNIST runs are not here")
    result = compare_runs(dirs, by="method")
    return result, protocol_table(protocol_comparisons(arms, "method", result))


def test_the_answers_are_the_chapters_own_numbers():
    result, protocols = committed_breastmnist()
    answers = workshop_answers(result, protocols)
    assert len(answers) == 3  # the Grad-CAM question only with a gallery
    s = result.summary.set_index("arm")
    gap = s.loc["tl", "accuracy"] - s.loc["scratch", "accuracy"]
    assert gap > 0  # TL is ahead on BreastMNIST in every seed of the quick book
    spread = np.ptp(result.per_run.loc[result.per_run["arm"] == "scratch", "accuracy"])
    first = answers[0].answer
    assert first.startswith(f"**tl**: {s.loc['tl', 'accuracy']:.3f} against {s.loc['scratch', 'accuracy']:.3f}")
    assert f"a gap of {gap:.3f}" in first and f"{gap / spread:.1f} times" in first
    test = result.tests.iloc[0]
    assert (test.arm_a, test.arm_b) == ("tl", "scratch")
    assert f"(tl minus scratch) runs from {test.low:+.3f} to {test.high:+.3f} (paired t, p = {test.p:.3g})" in first
    assert ("excludes 0" in first) == bool(test.significant)
    assert f"{s.loc['tl', 'majority_accuracy']:.3f}:" in answers[1].answer
    probe = protocols.set_index(["arm", "protocol"])["accuracy"]
    assert f"tl: linear probe {probe['tl', 'linear probe']:.3f}, fine-tuned {probe['tl', 'fine-tuning']:.3f}" in (
        answers[2].answer)
    text = answers_markdown(answers)
    assert text.count("<details><summary>Answer") == 3 == text.count("</details>") and text.startswith("1. Which start")
    knn = f"Under kNN (tl {probe['tl', 'kNN']:.3f}, scratch {probe['scratch', 'kNN']:.3f})"
    assert knn in answers[2].answer
    assert answers[2].answer.endswith("it agrees.") == (probe["tl", "kNN"].round(3) > probe["scratch", "kNN"].round(3))


def test_the_answers_follow_the_numbers_when_scratch_wins_and_seeds_agree():
    """Generated results: the answer names the winner the numbers give, not the one the workshop expects."""
    per_run = pd.DataFrame(dict(arm=["tl", "tl", "scratch", "scratch"], accuracy=[0.70, 0.70, 0.80, 0.80]))
    summary = pd.DataFrame(dict(arm=["tl", "scratch"], accuracy=[0.70, 0.80], accuracy_low=[0.6, 0.7],
                                accuracy_high=[0.8, 0.9], majority_accuracy=[0.75, 0.75],
                                balanced_accuracy=[0.50, 0.62]))
    protocols = pd.DataFrame(dict(arm=["tl"] * 3 + ["scratch"] * 3, accuracy=[0.70, 0.6, 0.7, 0.8, 0.65, 0.6],
                                  protocol=["fine-tuning", "linear probe", "kNN"] * 2))

    class Result:
        pass

    result = Result()
    result.summary, result.per_run = summary, per_run
    # the test's arms the other way round: the interval is turned to read first (tl) minus second (scratch)
    result.tests = pd.DataFrame([dict(arm_a="scratch", arm_b="tl", mean_difference=0.1, low=-0.05, high=0.25,
                                      p=0.2, significant=False, test="paired t")])
    first, second, third = workshop_answers(result, protocols)
    assert first.answer.startswith("**scratch**: 0.800 against 0.700 for tl, a gap of 0.100")
    assert "scored the same" in first.answer
    assert "(tl minus scratch) runs from -0.250 to +0.050 (paired t, p = 0.2): it includes 0" in first.answer
    result.tests = pd.DataFrame()
    assert "No test compares them here" in workshop_answers(result, protocols)[0].answer
    assert "scratch does find the smaller class" in second.answer
    assert "no better than random ones" in third.answer and third.answer.endswith("it does not agree. With two seeds "
                                                                                    "neither gap is tested: the study's "
                                                                                    "chapters ask it again with five.")
