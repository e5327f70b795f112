"""The book's headline numbers, held by CI: read from the committed ``quick`` results, never trained here.

A change that lowers TL below the published MedMNIST v2 figures, drops a committed SimCLR checkpoint's curve or
budget, or leaves the summary's verdicts disagreeing with the comparison they come from fails here.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

# MedMNIST v2 (Yang et al. 2023, Table 3), ResNet-18 (28) test accuracy: the bar TL must reach
MEDMNIST_V2_RESNET18_28 = {"breastmnist": 0.863, "pneumoniamnist": 0.854, "retinamnist": 0.524}


def _mean_test_accuracy(arm) -> float:
    from medimg.study.arm_runs import finished_arm_runs

    runs = finished_arm_runs(arm)
    return float(np.mean([json.loads((d / "metrics.json").read_text())["test"]["accuracy"] for d in runs]))


@pytest.mark.parametrize("dataset", sorted(MEDMNIST_V2_RESNET18_28))
def test_tl_reaches_the_medmnist_v2_resnet18_figure(dataset, shared_data):
    from medimg.study.arm import profile_arm

    arm = profile_arm("quick", dataset, "tl")
    assert len(arm.seeds) == 5
    accuracy = _mean_test_accuracy(arm)
    assert accuracy >= MEDMNIST_V2_RESNET18_28[dataset], (
        f"TL on {dataset}: mean test accuracy {accuracy:.3f} over 5 seeds, below MedMNIST v2's ResNet-18 "
        f"{MEDMNIST_V2_RESNET18_28[dataset]}")


def test_every_committed_simclr_checkpoint_has_its_curve_and_budget():
    from medimg.models.backbones import read_ssl_meta
    from medimg.ssl.run import snapshot_path
    from medimg.ssl.curve import read_curve
    from medimg.study.pretraining import pretraining_runs

    # the stage the book reads, and the next stage (issue #30) being pretrained: a finished checkpoint of either
    runs = pretraining_runs("quick") + pretraining_runs("quick", stage="pretraining_next")
    finished = [r for r in runs if r.path.is_file()]
    assert finished, "no checkpoint of the quick profile's pretraining stage is committed"
    for run in finished:
        meta = read_ssl_meta(run.path)
        # issue #20's least budget for a random-initialised checkpoint; an ImageNet-initialised one trains its own
        assert meta["steps"] == meta["total_steps"] == run.config.steps and meta["batch_size"] >= 128, run.path.name
        assert meta["steps"] >= 3000 or run.config.init == "imagenet", run.path.name
        curve = read_curve(run.path)
        points = curve[curve.kind == "checkpoint"]
        # every curve target, both probes, from step 0 to the last step, with both reference lines
        assert set(points.target) == {t.dataset for t in run.curve_targets}, run.path.name
        assert set(points.protocol) == {"linear", "knn"}
        assert points.step.min() == 0 and points.step.max() == meta["steps"]
        assert {"random", "imagenet"} <= set(curve.kind), f"{run.path.name}: a reference line is missing"
        assert points.val_accuracy.between(0, 1).all()
        for step in run.snapshots:
            assert read_ssl_meta(snapshot_path(run.path, step))["steps"] == step
    # no other weights beside them: every committed file is a stage checkpoint or one of its named snapshots
    expected = {r.path.name for r in runs} | {snapshot_path(r.path, s).name for r in runs for s in r.snapshots}
    committed = subprocess.run(["git", "ls-files", "results/quick/ssl/*.safetensors"], cwd=REPO, check=True,
                               capture_output=True, text=True).stdout.split()
    assert committed and {Path(f).name for f in committed} <= expected


def _glued(notebook, name: str) -> str:
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", []):
            if output.get("metadata", {}).get("scrapbook", {}).get("name") == name:
                data = output["data"]
                return data.get("application/papermill.record/text/markdown") or data["application/papermill.record/text/plain"]
    raise AssertionError(f"{notebook} has no glued {name!r}")


def test_the_summary_verdicts_are_those_of_the_committed_comparison(shared_data):
    """Claims 1 and 2 recomputed from the committed runs and checks read the same as the committed summary."""
    from medimg.compare.claims import modality_claims_checked
    from medimg.compare.comparison import compare_runs
    from medimg.study.arm_runs import arm_ssl_checkpoint, finished_arm_runs
    from medimg.study.profiles import load_profile, targets
    from medimg.study.chapter_arms import main_arms
    from medimg.ssl.check import read_check

    p = load_profile("quick")
    arms = main_arms(p, [d for _, d in targets(p)])
    main = compare_runs([d for a in arms for d in finished_arm_runs(a)], by="method")
    checks = {a.dataset: read_check(arm_ssl_checkpoint(a, create=False), a.dataset) for a in arms if a.method == "ssl"}
    assert None not in checks.values(), "a SimCLR check the summary read is not committed"
    from medimg.study.pretraining import budget_phrase

    budgets = {a.dataset: budget_phrase(arm_ssl_checkpoint(a, create=False)) for a in arms if a.method == "ssl"}
    claims = modality_claims_checked(main, checks, budgets)
    summary = REPO / "book" / "quick" / "summary.ipynb"
    for i, claim in enumerate(claims, 1):
        assert _glued(summary, f"claim{i}") == f"**{claim['verdict']}** ({claim['evidence']})"
