"""evaluate and compare on real run directories (fine-tuned on generated images), through the CLI."""
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import files_under, run_cli
from medimg.compare.comparison import compare_runs, comparison_figures, comparison_markdown
from medimg.finetune.runs import RunResult
from medimg.finetune.config import FinetuneConfig
from medimg.training.trainer import TrainerSettings
from medimg.finetune.train import finetune

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


def test_a_grey_folder_passed_by_path_compares_as_grey(tmp_path):
    """An unregistered folder of grey images (stored as RGB files) is grey in compare, as decoded."""
    from medimg.data.synthetic import write_image_folder

    folder = write_image_folder(tmp_path / "greyfolder", n_per_class=12, size=32, colour=False)
    run = tmp_path / "run"
    metrics = finetune(FinetuneConfig(str(folder), "scratch", arch="resnet18", size=16, epochs=1, batch_size=16),
                       run, settings=FAST)
    assert (metrics["channels"], metrics["modality"]) == (1, "grey")
    target = json.loads((run / "config.json").read_text())["data"]["target"]
    assert (target["channels"], target["modality"]) == (1, "grey")
    comparison = compare_runs([run])
    assert comparison.per_run["modality"].tolist() == ["grey"]
    assert comparison.summary["modality"].tolist() == ["grey"]


def test_runs_written_before_the_modality_was_recorded_read_it_from_preprocess(tmp_path):
    from conftest import REPO
    from medimg.data.registry import REGISTRY
    from medimg.finetune.runs import RunResult, _recorded_modality

    def old_run(grey_as, dataset="folder-x-0123456789", **recorded):
        metrics = dict(dataset=dataset, preprocess=dict(size=32, in_chans=3, grey_as=grey_as), **recorded)
        return RunResult(path=tmp_path, config={}, record=dict(data=dict(target={})), metrics=metrics, classes=(),
                         ids=np.array([]), y_true=np.array([]), probs=np.zeros((0, 0)))

    assert old_run("replicate").modality == "grey" and old_run("single").modality == "grey"
    assert old_run(None).modality == "colour"
    assert old_run(None, dataset="breastmnist", modality="colour").modality == "colour"  # recorded beats registry
    # every committed run records its modality, and it agrees with the registry and with its preprocessing
    committed = sorted((REPO / "results" / "quick" / "runs").glob("*/*/*/metrics.json"))
    if not committed:
        pytest.skip("results/quick holds no committed runs")
    for path in committed:
        metrics = json.loads(path.read_text())
        assert metrics["modality"] == REGISTRY[metrics["dataset"]].modality, path
        without = {key: value for key, value in metrics.items() if key != "modality"}
        assert _recorded_modality(without, {}) == metrics["modality"], path  # preprocess says the same


def fake_run(method: str, seed: int, wrong: int, n: int = 200) -> RunResult:
    """A finished two-class run of a grey folder on ``n`` test images (no training): ``wrong`` misclassified."""
    y = np.arange(n) % 2
    predicted = np.where(np.arange(n) < wrong, 1 - y, y)
    probs = np.where(np.eye(2)[predicted] == 1, 0.9, 0.1)
    return RunResult(path=f"fake/{method}-{seed}", config=dict(method=method, seed=seed), record={},
                     metrics=dict(dataset="near_perfect", modality="grey"), classes=("a", "b"),
                     ids=np.array([f"{i:04d}" for i in range(n)]), y_true=y, probs=probs)


def summary_cells(markdown: str, column: str) -> dict[str, str]:
    """``{arm: cell}`` of ``column`` in the first table of ``comparison_markdown``."""
    lines = [line for line in markdown.split("## Tests")[0].splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]
    return {r["arm"]: r[column] for r in rows}


def test_compare_keeps_intervals_of_accuracies_near_one_inside_zero_one():
    # accuracies 0.965 and 0.995 (tl), 0.99 and 1.0 (ssl): the plain t interval reaches past 1
    runs = [fake_run("tl", 0, 7), fake_run("tl", 1, 1), fake_run("ssl", 0, 2), fake_run("ssl", 1, 0)]
    c = compare_runs(runs, by="method")
    summary = c.summary.set_index("arm")
    assert summary.loc["tl", "accuracy"] == pytest.approx(0.98) and summary.loc["ssl", "accuracy"] == 0.995
    for arm in ("tl", "ssl"):
        for m in ("accuracy", "balanced_accuracy", "roc_auc", "macro_f1"):
            row = summary.loc[arm]
            assert 0 <= row[f"{m}_low"] <= row[m] <= row[f"{m}_high"] <= 1, (arm, m)
    text = comparison_markdown(c)
    for arm, cell in summary_cells(text, "accuracy").items():
        mean, low, high = (float(x) for x in cell.replace("[", "").replace("]", "").replace(",", "").split())
        assert 0 <= low <= mean <= high <= 1, cell
    assert summary_cells(text, "accuracy")["tl"] == (f"0.980 [{summary.loc['tl', 'accuracy_low']:.3f}, "
                                                     f"{summary.loc['tl', 'accuracy_high']:.3f}]")
    # the difference between the arms stays on the plain scale: the paired t interval of the differences
    t = c.tests.iloc[0]
    d = np.array([0.965 - 0.99, 0.995 - 1.0])
    half = 12.706204736 * d.std(ddof=1) / np.sqrt(2)
    assert (t["arm_a"], t["arm_b"]) == ("tl", "ssl")
    assert (t["low"], t["high"]) == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-6)


def test_compare_with_one_seed_shows_no_interval_with_a_footnote():
    c = compare_runs([fake_run("tl", 0, 7), fake_run("ssl", 0, 2)], by="method")
    text = comparison_markdown(c)
    assert summary_cells(text, "accuracy") == {"tl": "0.965 [—¹]", "ssl": "0.990 [—¹]"}
    assert "- ¹ 1 seed: no interval" in text.splitlines()
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    tests_table = text.split("## Tests")[1]
    assert "| -0.025 [—¹] | McNemar |" in tests_table and "- ¹ 1 seed: no interval" in tests_table


def test_compare_refuses_to_pool_runs_of_other_numerics(runs, tmp_path):
    """A bf16 run beside fp32 ones: its difference would partly be numerics, so compare says so and stops."""
    import shutil

    bf16 = tmp_path / "bf16-seed1"
    shutil.copytree(runs[True, 1], bf16)
    record = json.loads((bf16 / "config.json").read_text())
    record["trainer"]["resolved_precision"] = "bf16-mixed"
    (bf16 / "config.json").write_text(json.dumps(record))
    assert len(compare_runs([runs[False, 0], runs[True, 1]], by="augment").runs) == 2  # one precision: fine
    result = run_cli("compare", str(runs[False, 0]), str(runs[False, 1]), str(runs[True, 0]), str(bf16),
                     "--by", "augment", "--out", str(tmp_path / "cmp"))
    assert result.returncode == 2 and not (tmp_path / "cmp").exists()
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "bf16-mixed" in line and "32-true" in line and "pin 'precision'" in line


def test_arms_of_several_settings_are_paired_one_setting_at_a_time():
    from medimg.compare.comparison import arm_pairs

    assert arm_pairs(["tl", "ssl", "scratch"]) == [("tl", "ssl"), ("tl", "scratch"), ("ssl", "scratch")]
    arms = ["tl/a", "tl/b", "ssl/a", "ssl/b", "scratch/a", "scratch/b"]
    pairs = arm_pairs(arms)
    # each method across the networks (3), each network across the methods (2 x 3): 9 of the 15 pairs
    assert len(pairs) == 9
    assert ("tl/a", "tl/b") in pairs and ("tl/a", "ssl/a") in pairs and ("ssl/b", "scratch/b") in pairs
    assert ("tl/a", "ssl/b") not in pairs and ("tl/b", "scratch/a") not in pairs


def test_verdicts_are_a_list_with_one_item_per_dataset_and_pair(runs):
    from medimg.compare.comparison import verdicts_markdown

    result = compare_runs(list(runs.values()), by="augment")
    row = result.tests.iloc[0]
    lines = verdicts_markdown(result).splitlines()
    assert len(lines) == len(result.tests) == 1 and lines[0].startswith("- synthetic_colour: ")
    if row["significant"]:  # said as the better arm minus the other
        better, other = (row["winner"], "on" if row["winner"] == "off" else "off")
        sign = 1 if better == "off" else -1
        assert f"**{better}** is better than {other} (accuracy {better} minus {other} " \
               f"{sign * row['mean_difference']:+.3f}" in lines[0]
    else:
        assert f"off and on do not differ significantly (accuracy off minus on {row['mean_difference']:+.3f}" in lines[0]
    # a significant win of the second arm is said as the second minus the first, interval turned round
    result.tests.loc[0, ["significant", "winner", "mean_difference", "low", "high"]] = [True, "on", -0.1, -0.15, -0.05]
    assert verdicts_markdown(result).startswith(
        "- synthetic_colour: **on** is better than off (accuracy on minus off +0.100, 95% CI [+0.050, +0.150]; ")
    result.tests.loc[0, ["significant", "winner"]] = [False, "on"]
    assert "off and on do not differ significantly (accuracy off minus on -0.100, 95% CI [-0.150, -0.050]" in \
        verdicts_markdown(result)
