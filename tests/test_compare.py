"""evaluate and compare on real run directories (fine-tuned on generated images), through the CLI."""
import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import files_under, run_cli
from medimg.evaluate.compare import compare_runs, comparison_figures
from medimg.train import FinetuneConfig, finetune
from medimg.trainer_settings import TrainerSettings

FAST = TrainerSettings(accelerator="cpu", progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, module_env):
    """Scratch resnet18 with augmentation off and on, two seeds each, on the generated colour set."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for augment in (False, True):
        for seed in (0, 1):
            path = root / f"aug{int(augment)}-seed{seed}"
            finetune(FinetuneConfig("synthetic_colour", "scratch", arch="resnet18", size=32, epochs=2,
                                    augment=augment, seed=seed), path, settings=FAST)
            out[augment, seed] = path
    return out


def assert_real_figure(png: bytes, min_size=(300, 200)):
    image = Image.open(io.BytesIO(png)).convert("L")
    assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
    pixels = np.asarray(image, float)
    assert pixels.std() > 10, "the figure is blank"
    assert (pixels < 128).mean() > 0.005, "the figure has almost nothing drawn on it"


def test_evaluate_writes_intervals_beside_the_run(runs):
    run = runs[False, 0]
    result = run_cli("evaluate", str(run), "--n-boot", "300")
    assert result.returncode == 0, result.stderr
    evaluation = json.loads((run / "evaluation.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    accuracy = evaluation["metrics"]["accuracy"]
    assert accuracy["estimate"] == pytest.approx(metrics["test"]["accuracy"])
    assert accuracy["low"] <= accuracy["estimate"] <= accuracy["high"]
    assert {"macro_f1", "weighted_f1", "roc_auc", "mcc", "kappa", "ece", "brier", "sensitivity/disc",
            "specificity/cross"} <= set(evaluation["metrics"])
    assert evaluation["bootstrap"] == dict(n_boot=300, level=0.95, random_state=0, unit="test image")
    assert "| accuracy |" in (run / "evaluation.md").read_text()
    again = run_cli("evaluate", str(run))
    assert again.returncode == 2 and "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_compare_by_augmentation_pairs_seeds(runs, tmp_path):
    out = tmp_path / "cmp"
    result = run_cli("compare", *map(str, runs.values()), "--by", "augment", "--out", str(out))
    assert result.returncode == 0, result.stderr
    tests = pd.read_csv(out / "tests.csv")
    assert len(tests) == 1
    row = tests.iloc[0]
    assert (row["arm_a"], row["arm_b"], row["seeds"], row["test"]) == ("off", "on", 2, "paired t")
    per_run = pd.read_csv(out / "runs.csv")
    acc = per_run.set_index(["arm", "seed"])["accuracy"]
    assert row["mean_difference"] == pytest.approx((acc["off"] - acc["on"]).mean())
    assert row["p_holm"] == pytest.approx(row["p"])  # one dataset: Holm changes nothing
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["arm"]) == {"off", "on"} and (summary["seeds"] == 2).all()
    assert "# Comparison by augment" in (out / "comparison.md").read_text()
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["bars_accuracy.png", "bars_balanced_accuracy.png", "confusion_synthetic_colour.png",
                       "curves_synthetic_colour.png", "difference_off_vs_on.png", "reliability_synthetic_colour.png"]
    for png in (out / "figures").iterdir():
        assert_real_figure(png.read_bytes())
    # never silently overwritten; --force replaces it whole
    again = run_cli("compare", *map(str, runs.values()), "--by", "augment", "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr
    forced = run_cli("compare", str(runs[False, 0]), str(runs[True, 0]), "--by", "augment", "--out", str(out),
                     "--force")
    assert forced.returncode == 0, forced.stderr
    assert pd.read_csv(out / "tests.csv").iloc[0]["test"] == "McNemar"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_compare_refuses_ambiguous_and_unfinished_runs(runs, tmp_path):
    both = run_cli("compare", str(runs[False, 0]), str(runs[True, 0]), "--by", "method", "--out", str(tmp_path / "x"))
    assert both.returncode == 2 and "seed 0" in both.stderr and "only one run" in both.stderr
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((runs[False, 0] / "config.json").read_text())
    r = run_cli("compare", str(unfinished), "--out", str(tmp_path / "y"))
    assert r.returncode == 2 and "unfinished" in r.stderr and "--resume" in r.stderr
    assert not files_under(tmp_path / "x") and not files_under(tmp_path / "y")


def test_comparison_figures_are_figures_and_do_not_touch_pyplot(runs):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    comparison = compare_runs(list(runs.values()), by="augment")
    figures = comparison_figures(comparison)
    assert plt.get_fignums() == before
    buffer = io.BytesIO()
    figures["bars_accuracy"].savefig(buffer, format="png")
    assert_real_figure(buffer.getvalue())
