"""Run directories have one owner (medimg.finetune.runs): names from every setting that changes a result, one reader."""
import json
import subprocess
import sys

import pytest

from conftest import REPO
from medimg.finetune.config import FinetuneConfig
from medimg.training.trainer import TrainerSettings
from medimg.errors import MedimgError
from medimg.finetune.runs import read_run, run_name


def test_run_name_covers_every_setting_that_changes_a_result(tmp_path):
    config = FinetuneConfig(dataset="synthetic_grey", method="scratch", arch="resnet18", size=16)
    fp32 = TrainerSettings(accelerator="cpu", precision="32-true")
    base = run_name(config, fp32)
    assert base == run_name(FinetuneConfig(dataset="synthetic_grey", method="scratch", arch="resnet18", size=16), fp32)
    assert run_name(config, TrainerSettings(accelerator="cpu", precision="bf16-mixed")) != base
    assert run_name(config, TrainerSettings(accelerator="cpu", precision="32-true", deterministic=False)) != base
    for change in (dict(seed=1), dict(near_duplicate_distance=None), dict(intensity="per-image"), dict(lr=0.01)):
        assert run_name(FinetuneConfig(**{**config.__dict__, **change}), fp32) != base, change
    # where a run's settings do not change its numbers, its name does not change either
    assert run_name(config, TrainerSettings(accelerator="cpu", precision="32-true", progress=False)) == base
    # a weights file is named by its file name, not by the folder it lies in
    a, b = (tmp_path / "a" / "simclr-x.safetensors"), (tmp_path / "b" / "simclr-x.safetensors")
    ssl = dict(dataset="synthetic_grey", method="ssl", arch="resnet18", size=16)
    assert run_name(FinetuneConfig(weights=str(a), **ssl), fp32) == run_name(FinetuneConfig(weights=str(b), **ssl), fp32)


def test_reading_a_run_imports_neither_lightning_nor_the_training_code():
    code = ("import sys, medimg.finetune.runs, medimg.finetune.run_model, medimg.compare.report, medimg.compare.comparison, medimg.explain.gradcam;"
            "print(sorted(m for m in sys.modules if m.startswith(('pytorch_lightning', 'lightning')) or m in "
            "('medimg.finetune.train', 'medimg.finetune.classifier', 'medimg.finetune.loaders')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_config_written_before_a_field_existed_reads_with_its_old_meaning(tmp_path):
    config = FinetuneConfig(dataset="synthetic_grey", method="scratch", arch="resnet18").to_dict()
    del config["near_duplicate_distance"], config["intensity"]
    old = FinetuneConfig.from_dict(config)
    assert old.near_duplicate_distance is None and old.intensity == "per-image"


def test_read_run_refuses_what_is_not_a_finished_run(tmp_path):
    with pytest.raises(MedimgError, match="missing"):
        read_run(tmp_path / "nope")
    with pytest.raises(MedimgError, match="no config.json"):
        read_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({}))
    with pytest.raises(MedimgError, match="unfinished run"):
        read_run(tmp_path)


def test_a_checkout_is_dirty_for_changed_code_not_for_the_studys_own_outputs(tmp_path):
    from medimg.identity import git_commit

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    files = ["medimg/finetune/train.py", "study.yml", "results/quick/runs/a/metrics.json", "book/quick/summary.ipynb",
             "_toc.yml"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("one\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = git_commit(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    for name in files[2:]:  # what a running study rewrites
        (tmp_path / name).write_text("two\n")
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert git_commit(tmp_path)["dirty"] is False
    for name in files[:2]:
        (tmp_path / name).write_text("two\n")
        assert git_commit(tmp_path)["dirty"] is True, name
        (tmp_path / name).write_text("one\n")
