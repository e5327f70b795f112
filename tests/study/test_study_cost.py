"""``medimg study --plan``: every chapter and run of a profile with its cost, in seconds and without training."""
import re

import pytest

from conftest import REPO, SHARED_DATA, assert_one_line_error, run_cli
from medimg.study.plan import flatten, plan
from medimg.study.profiles import load_profile
from medimg.study.cost import cost_plan
from medimg.study.train_sizes import train_images


def test_quick_plan_counts_each_runs_training_images_exactly_where_the_file_says():
    if not SHARED_DATA.is_dir():
        pytest.skip("the shared data folder is not here")
    p = load_profile("quick", REPO / "study.yml")
    rows = {r["chapter"]: r for r in cost_plan(p)}
    assert list(rows) == [c.path for c in flatten(plan(p)[0])]
    # BreastMNIST's file holds 546 training images: 5 seeds x 5 epochs of them
    assert train_images("breastmnist").n == 546 and not train_images("breastmnist").estimate
    assert rows["book/quick/breastmnist/tl.ipynb"]["passes"] == 5 * 5 * 546
    # PneumoniaMNIST is capped at 1,000; a SimCLR checkpoint sees max_images twice (two views) per epoch
    assert rows["book/quick/pneumoniamnist/ssl.ipynb"]["passes"] == 5 * 5 * 1000
    # without the pretraining stage, each SSL arm's pool pretrains in a chapter of its own
    no_stage = {k: v for k, v in p.items() if k != "pretraining"}
    assert {r["chapter"]: r for r in cost_plan(no_stage)}["book/quick/ssl/index.ipynb"]["passes"] == 2 * 4 * 1000
    assert not [c for c in rows if c.startswith("book/quick/ssl/") and c != "book/quick/ssl/budget.ipynb"]
    # double fine-tuning adds its first stage: 1,000 images for 2 epochs, per seed
    double, single = rows["book/quick/ablations/double/ham10000_224-tl.ipynb"], rows["book/quick/ham10000_224/tl.ipynb"]
    assert double["passes"] - single["passes"] == 5 * 2 * 1000
    assert rows["book/quick/ablations/architecture/ham10000_224-tl.ipynb"]["network"] == "tf_efficientnet_lite0 64 px"


def test_paper_plan_prints_every_chapter_with_hours_without_its_data(tmp_path):
    # no data directory at all: a plan is made before any data is here
    done = run_cli("study", "--profile", "paper", "--plan", "--img-per-s", "500",
                   env={"MEDIMG_DATA_DIR": str(tmp_path / "no-data-yet")})
    assert done.returncode == 0, done.stderr
    p = load_profile("paper", REPO / "study.yml")
    chapters = flatten(plan(p, every_dataset=True)[0])
    assert all(c.path in done.stdout for c in chapters) and len(chapters) > 60
    assert "book/paper/isic2019/tl.ipynb" in done.stdout and "legacy_xception 299 px" in done.stdout
    # ISIC 2019 is not here: sized from its publication (25,331 images, 0.7 of them to train), 5 seeds x 30 epochs
    line = next(x for x in done.stdout.splitlines() if "book/paper/isic2019/tl.ipynb" in x)
    assert "~17,732" in line and f"{5 * 30 * 17732:,}" in line and f"{5 * 30 * 17732 / 500 / 3600:.2f}" in line
    total = re.search(r"At 500 images/s: about ([\d.]+) hours", done.stdout)
    assert total and float(total[1]) > 10
    assert not (REPO / "results" / "paper").exists()  # nothing trained, nothing written


def test_plan_refuses_a_meaningless_speed():
    assert_one_line_error(run_cli("study", "--profile", "paper", "--plan", "--img-per-s", "0"), "--img-per-s")


def test_plan_with_only_lists_the_chapters_the_study_would_run(tmp_path):
    from medimg.study.cost import plan_text

    p = load_profile("paper", REPO / "study.yml")
    every = [c.path for c in flatten(plan(p, every_dataset=True)[0])]
    text = plan_text(p, 500, only="isic2019")
    shown = [path for path in every if path in text]
    assert shown == [path for path in every if "isic2019" in path] and len(shown) >= 4
    assert "(chapters with 'isic2019' in their path)" in text and "book/paper/summary.ipynb" not in text
    assert_one_line_error(run_cli("study", "--profile", "paper", "--plan", "--only", "no-such-chapter",
                                  env={"MEDIMG_DATA_DIR": str(tmp_path)}), "--only no-such-chapter")
