"""The workshop chapter: ImageNet transfer against training from scratch on one dataset, two seeds, a budget a
laptop's CPU trains in minutes, read by fine-tuning, a linear probe and Grad-CAM, and the questions a participant
answers from the chapter's own output.

Its settings are the ``workshop`` section of a profile in study.yml, on top of that profile's own (the recipe, the
network, the TL weights): ``dataset``, ``seeds``, any fine-tuning setting (``epochs``, ``size``) and
``results_dir``, where its runs go (the quick profile's: ``results/workshop``, not committed, so a participant's
clone trains them rather than finding them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medimg.errors import MedimgError
from medimg.finetune.arms import paper_pair, random_init_arm
from medimg.probe.protocols import fine_tuning, lead_probe, protocol_of
from medimg.study.arm import Arm, profile_arm
from medimg.study.profiles import as_profile

# what the section may set besides fine-tuning settings
_OWN = ("dataset", "seeds", "results_dir")


def workshop_arms(profile: str | dict, dataset: str | None = None, seeds=None, size: int | None = None,
                  epochs: int | None = None) -> list[Arm]:
    """The workshop's two arms, ImageNet transfer then scratch (:data:`medimg.finetune.arms.ARMS`), as
    ``profile``'s ``workshop`` section defines them; an argument that is not None replaces the section's value.

    Raises :class:`MedimgError` when the profile has no ``workshop`` section."""
    p = as_profile(profile)
    spec = dict(p.get("workshop") or {})
    if not spec.get("dataset"):
        raise MedimgError(f"profile {p['name']!r} has no workshop section with a dataset: add one under the profile "
                          f"in study.yml, e.g. workshop: {{dataset: breastmnist, seeds: [0, 1], epochs: 3}}")
    finetune = {k: v for k, v in spec.items() if k not in _OWN}
    finetune.update({k: v for k, v in dict(size=size, epochs=epochs).items() if v is not None})
    tl, _ = paper_pair()
    return [profile_arm(p, dataset or spec["dataset"], method, seeds=seeds if seeds is not None else spec.get("seeds"),
                        results_dir=spec.get("results_dir"), **finetune)
            for method in (tl, random_init_arm())]


@dataclass
class Answer:
    """One workshop question and its answer, read from the chapter's own results."""

    question: str
    answer: str


def _spread(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.max() - values.min()) if values.size else 0.0


def _test(result, first: str, second: str) -> dict | None:
    """The row of ``result.tests`` comparing the two arms, or None (one seed: no test)."""
    tests = getattr(result, "tests", None)
    if tests is None or tests.empty:
        return None
    rows = [r for r in tests.to_dict("records") if {r["arm_a"], r["arm_b"]} == {first, second}]
    return rows[0] if rows else None


def workshop_answers(result, protocols, explanations: dict | None = None) -> list[Answer]:
    """The questions of the workshop chapter with their answers, each computed from what the chapter shows.

    ``result``: the :class:`~medimg.compare.comparison.Comparison` of the fine-tuned arms (one dataset, by method);
    ``protocols``: :func:`~medimg.compare.protocols.protocol_table` of fine-tuning, linear probe and kNN;
    ``explanations``: arm -> :class:`~medimg.explain.gradcam.Explanation` (may be empty). The arms are read in
    ``result``'s order (the workshop's: ImageNet transfer first, then scratch)."""
    summary = result.summary.set_index("arm")
    per_run = result.per_run
    first, second = list(summary.index)[:2]
    a, b = summary.loc[first], summary.loc[second]
    gap = float(a["accuracy"] - b["accuracy"])
    spreads = {arm: _spread(per_run.loc[per_run["arm"] == arm, "accuracy"]) for arm in (first, second)}
    widest = max(spreads.values())
    leader, trailer = (first, second) if gap >= 0 else (second, first)
    if widest == 0:
        versus = "both seeds of each arm scored the same, so two seeds show no spread at all"
    else:
        versus = (f"the two seeds of one arm differ by at most {widest:.3f}, so the gap is "
                  f"{abs(gap) / widest:.1f} times the seed-to-seed spread")
    test = _test(result, first, second)
    if test is None:
        verdict = "No test compares them here (one seed per arm)."
    else:
        sign = 1 if test["arm_a"] == first else -1  # the difference as first minus second
        low, high = sorted((sign * test["low"], sign * test["high"]))
        verdict = (f"The 95% interval of the difference ({first} minus {second}) runs from {low:+.3f} to {high:+.3f} "
                   f"({test['test']}, p = {test['p']:.3g}): "
                   + ("it excludes 0, so even two seeds tell the starts apart."
                      if test["significant"] else
                      "it includes 0, so two seeds cannot tell the starts apart, however large the gap looks; "
                      "the study runs five."))
    answers = [Answer(
        "Which start gave the higher mean test accuracy, and by how much? Is that gap larger than the difference "
        "between two seeds of the same arm, and is it significant?",
        f"**{leader}**: {summary.loc[leader, 'accuracy']:.3f} against {summary.loc[trailer, 'accuracy']:.3f} for "
        f"{trailer}, a gap of {abs(gap):.3f}; {versus}. {verdict}")]

    majority = float(a["majority_accuracy"])
    beat = [arm for arm in (first, second) if summary.loc[arm, "balanced_accuracy"] > 0.5]
    answers.append(Answer(
        "Always answering the largest class scores the *majority accuracy*. What is it here, and what does the "
        "balanced accuracy (the mean of the per-class sensitivities) add?",
        f"{majority:.3f}: a network that never finds the smaller class already reaches it. Balanced accuracy scores "
        f"that network 0.5; here {first} reaches {a['balanced_accuracy']:.3f} and {second} "
        f"{b['balanced_accuracy']:.3f}, so "
        + (f"{' and '.join(beat)} {'do' if len(beat) > 1 else 'does'} find the smaller class some of the time."
           if beat else "neither finds the smaller class better than chance.")))

    table = protocols.set_index(["arm", "protocol"])["accuracy"].round(3)  # as the chapter's table shows them

    def under(protocol) -> dict:
        return {arm: float(table.get((arm, protocol.display), np.nan)) for arm in (first, second)}

    probe, tuned, knn = under(lead_probe()), under(fine_tuning()), under(protocol_of("knn"))
    ahead = probe[first] - probe[second]
    answers.append(Answer(
        "The linear probe trains only a logistic regression on the network's frozen features. How close does it "
        "come to fine-tuning for each start, and what does that say about what the ImageNet weights already know? "
        "Does kNN agree?",
        f"{first}: linear probe {probe[first]:.3f}, fine-tuned {tuned[first]:.3f}; {second} (random features): "
        f"linear probe {probe[second]:.3f}, fine-tuned {tuned[second]:.3f}. "
        + (f"Under the linear probe the ImageNet features alone are {ahead:+.3f} ahead of random ones: what "
           "transfers is in the weights before any medical image is seen."
           if ahead > 0 else
           "Under the linear probe the ImageNet features are no better than random ones, so what transfer gives is "
           "in how fine-tuning uses them, not in the frozen features.")
        + f" Under kNN ({first} {knn[first]:.3f}, {second} {knn[second]:.3f})"
        + (": it agrees." if (knn[first] > knn[second]) == (ahead > 0) else
           ": it does not agree. With two seeds neither gap is tested: the study's chapters ask it again "
           "with five.")))

    if explanations:
        similarity = ", ".join(f"{arm} {e.summary()['randomisation']['spearman']:.2f}" for arm, e in explanations.items())
        answers.append(Answer(
            "Grad-CAM: on the images shown, does each arm look at the lesion? Would its maps look the same if the "
            "network's weights were random?",
            "Compare each overlay with the image in the left column by eye; the sanity check under the figure "
            f"answers the second part. The Spearman similarity of each arm's maps to those of the same network with "
            f"randomised weights: {similarity}. Near 1 would mean the map shows the image's edges, not what the "
            "network learnt; near 0 (or below), that the maps depend on the trained weights."))
    return answers


def answers_markdown(answers: list[Answer]) -> str:
    """The questions as a numbered list, each answer folded under it (an HTML ``details`` element, which Jupyter,
    Colab and the book all show closed until clicked)."""
    out = []
    for i, a in enumerate(answers, 1):
        out.append(f"{i}. {a.question}\n\n   <details><summary>Answer (from this run's output)</summary>\n\n   {a.answer}"
                   f"\n\n   </details>\n")
    return "\n".join(out)


def randomisation_lines(explanations: dict) -> str:
    """Under the Grad-CAM figure, one Markdown line per arm: the sanity check of :func:`~medimg.explain.gradcam.\
randomisation_check` (the Spearman similarity of the maps to those of the same network with randomised weights)."""
    return "\n".join(f"- **{arm}**: similarity to the randomised network's maps (Spearman) "
                     f"{e.summary()['randomisation']['spearman']:.2f}" for arm, e in explanations.items())
