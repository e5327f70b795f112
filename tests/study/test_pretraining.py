"""The pretraining stage: a long run killed and resumed ends with the uninterrupted weights; its learning curve,
snapshots and progress lines; pools that may hold a target's own training split; the profile's stage."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from medimg.ssl.config import SSLConfig
from medimg.training.trainer import TrainerSettings
from medimg.errors import MedimgError
from medimg.models.backbones import read_ssl_meta

# resnet18 at 16 px on 48 generated grey images, batch 8: 6 steps an epoch, 18 in all, the curve every 6
RUN = dict(datasets=["synthetic_grey"], arch="resnet18", size=16, steps=18, batch_size=8, max_images=48,
           grey_as="single", temperature=0.2)
SCRIPT = """
import json, sys
from pathlib import Path
from medimg.ssl.config import SSLConfig
from medimg.training.trainer import TrainerSettings
from medimg.ssl.run import pretrain_ssl
from medimg.ssl.curve import CurveTarget
settings, out, resume = json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "resume"
pretrain_ssl(SSLConfig(**settings), out, trainer=TrainerSettings(accelerator="cpu", progress=True), resume=resume,
             curve_targets=(CurveTarget("synthetic_grey"),), curve_every=6, snapshots=(12,), reference_seeds=(0,),
             progress_every=3, state_every=6)
"""


def pretrain(out, resume=False, **popen) -> subprocess.Popen:
    """The run in a fresh interpreter, as ``medimg pretrain-ssl`` runs it."""
    return subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(RUN), str(out), "resume" if resume else "new"],
                            cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def finish(process: subprocess.Popen) -> str:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return err


def test_sigkill_then_resume_gives_the_uninterrupted_checkpoint_curve_and_snapshots(tmp_path):
    whole = tmp_path / "whole" / "c.safetensors"
    killed = tmp_path / "killed" / "c.safetensors"
    whole.parent.mkdir(), killed.parent.mkdir()
    lines = finish(pretrain(whole))

    process = pretrain(killed)
    from medimg.ssl.run import state_dir
    state = state_dir(killed, SSLConfig(**RUN)) / "last.ckpt"
    assert state.is_relative_to(os.environ["MEDIMG_CACHE_DIR"])  # a fresh checkout of the study finds it
    deadline = time.monotonic() + 300
    while not state.is_file():  # step 6 has been saved
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first state"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not killed.exists()
    interrupted_at = torch.load(state, weights_only=False)["global_step"]
    assert 6 <= interrupted_at < 18
    # without --resume, the state is not thrown away silently
    from medimg.ssl.run import pretrain_ssl
    with pytest.raises(MedimgError, match="--resume"):
        pretrain_ssl(SSLConfig(**RUN), killed, trainer=TrainerSettings(accelerator="cpu", progress=False))
    finish(pretrain(killed, resume=True))

    a, b = load_file(str(whole)), load_file(str(killed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta_a, meta_b = read_ssl_meta(whole), read_ssl_meta(killed)
    assert meta_b["step_losses"] == meta_a["step_losses"] and len(meta_a["step_losses"]) == 18
    assert meta_a["steps"] == 18 and meta_a["pairs"] == 18 * 8 and meta_a["resumed_at"] == []
    assert meta_b["resumed_at"] == [interrupted_at]
    assert not state.parent.exists()  # the state goes once the checkpoint is written

    # the curve: references first, then step 0, 6, 12, 18, each target x protocol; the same after the kill
    curve_a = pd.read_csv(whole.with_name("c.curve.csv"))
    curve_b = pd.read_csv(killed.with_name("c.curve.csv"))
    points = curve_a[curve_a.kind == "checkpoint"]
    assert sorted(points.step.unique()) == [0, 6, 12, 18]
    assert set(curve_a.kind) == {"random", "checkpoint"} and set(curve_a.protocol) == {"linear", "knn"}
    assert (points.pairs == points.step * 8).all() and points.val_accuracy.between(0, 1).all()
    pd.testing.assert_frame_equal(curve_a.drop(columns="train_seconds"), curve_b.drop(columns="train_seconds"))
    # step 0 is the random initialisation of seed 0: the same probe as the random reference of seed 0
    clean = curve_a[curve_a.bn == "clean"]  # the batch-norm rule (medimg.probe.batchnorm)
    random0 = clean[(clean.kind == "random") & (clean.seed == 0)].set_index("protocol").val_accuracy
    assert clean[(clean.kind == "checkpoint") & (clean.step == 0)].set_index("protocol").val_accuracy.equals(random0)
    # the rule and its alternative: the references and the last point under both, the other points under the rule
    assert set(curve_a[curve_a.kind == "random"].bn) == {"clean", "carried"}
    assert set(points[points.step == 18].bn) == {"clean", "carried"} and set(points[points.step == 6].bn) == {"clean"}
    # every point with its interval, paired bits and collapse signals
    assert (points.val_low <= points.val_accuracy).all() and (points.val_accuracy <= points.val_high).all()
    assert points.rankme.gt(1).all() and points.feature_std.gt(0).all() and points.correct.str.len().gt(0).all()
    # the snapshot at step 12 is a loadable backbone of its own step
    snap = whole.with_name("c.step-12.safetensors")
    assert read_ssl_meta(snap)["steps"] == 12
    assert torch.equal(load_file(str(snap))["conv1.weight"], load_file(str(killed.with_name("c.step-12.safetensors")))["conv1.weight"])
    assert not torch.equal(load_file(str(snap))["conv1.weight"], a["conv1.weight"])
    # progress lines: step, loss, rate and ETA
    progress = [line for line in lines.splitlines() if ": step " in line]
    assert progress[-1].split(": step ")[1].startswith("18/18 (100%)")
    assert all("loss" in line and "img/s" in line and "ETA" in line for line in progress)


def test_a_target_own_training_split_may_be_pooled_but_no_other_set_that_shares_its_images(shared_data):
    from medimg.ssl.pool import check_targets

    config = SSLConfig(datasets=("pneumoniamnist", "iq_othnccd_lung_ct"), grey_as="replicate")
    checks = check_targets(config, ("pneumoniamnist", "breastmnist", "busi_256"))
    assert checks["pneumoniamnist"]["own_training_split"] == ["pneumoniamnist"]
    assert not checks["pneumoniamnist"]["overlaps"] and not checks["busi_256"]["overridden"]
    with pytest.raises(MedimgError, match="busi_256.*breastmnist|breastmnist.*busi_256"):
        check_targets(SSLConfig(datasets=("pneumoniamnist", "busi_256"), grey_as="replicate"), ("breastmnist",))


def test_the_quick_profile_stage_names_one_checkpoint_per_method_init_and_pool():
    from medimg.study.profiles import load_profile
    from medimg.study.pretraining import pretraining_runs, stage_inits

    runs = pretraining_runs("quick")
    p = load_profile("quick")
    section = p["pretraining"]
    # random init: every method on every pool (the SSL arms); ImageNet init: SimCLR only, fewer steps (TL+SSL)
    assert [(r.config.method, r.config.init, r.pool) for r in runs] == (
        [("simclr", i, pool) for i in ("random", "imagenet") for pool in section["pools"]]
        + [("vicreg", "random", pool) for pool in section["pools"]])
    for run in runs:
        assert run.config.batch_size >= 128
        assert run.config.steps >= 3000 if run.config.init == "random" else run.config.steps == 1000  # issue #20's least
        assert all(s < run.config.steps for s in run.snapshots) and run.imagenet_weights == p["tl_weights"]
        assert run.path.parent == REPO / p["results_dir"] / "ssl"
        assert run.path.name.startswith(f"{run.config.method}-{run.config.init}-{run.pool}-")
        # every target of the pool's modality is on its curve, and the pool is safe for each of them
        modality_targets = set(p["targets"][run.pool])
        assert modality_targets <= {t.dataset for t in run.curve_targets}
    assert len({r.path for r in runs}) == len(runs)
    with pytest.raises(MedimgError, match="no pool"):
        pretraining_runs("quick", pools=["purple"])
    with pytest.raises(MedimgError, match="no method byol"):
        pretraining_runs("quick", methods=["byol"])
    assert [r.label for r in pretraining_runs("quick", methods=["vicreg"], pools=["grey"])] == ["vicreg random grey"]
    assert [r.label for r in pretraining_runs("quick", inits=["imagenet"], pools=["grey"])] == ["simclr imagenet grey"]
    # the stage's trainer: the profile's, with one worker making the views
    from medimg.study.pretraining import stage_trainer
    assert stage_trainer(p) == stage_trainer(p).__class__(**{**p["trainer"], "num_workers": 1, "progress": True})
    # inits as a list or a mapping; what it names is checked
    assert stage_inits({"inits": ["random", "imagenet"]}) == {"random": {}, "imagenet": {}}
    assert stage_inits({}) == {"random": {}}
    with pytest.raises(MedimgError, match="pretraining.inits names 'noise'"):
        stage_inits({"inits": ["noise"]})
    with pytest.raises(MedimgError, match="inits.imagenet.methods names byol"):
        stage_inits({"methods": ["simclr"], "inits": {"imagenet": {"methods": ["byol"]}}})
    # methods as a list or a mapping whose values override the pool's and the initialisation's settings
    from medimg.study.pretraining import stage_methods
    assert stage_methods({}) == {"simclr": {}}
    assert stage_methods({"methods": {"simclr": None, "vicreg": {"steps": 7}}}) == {"simclr": {}, "vicreg": {"steps": 7}}
    with pytest.raises(MedimgError, match="pretraining.methods names 'byol'"):
        stage_methods({"methods": ["simclr", "byol"]})
    section = dict(p["pretraining"], methods={"simclr": {}, "vicreg": {"steps": 7}},
                   pools={"grey": dict(p["pretraining"]["pools"]["grey"], steps=50)})
    steps = {r.label: r.config.steps for r in pretraining_runs(dict(p, pretraining=section))}
    assert steps == {"simclr random grey": 50, "simclr imagenet grey": 1000, "vicreg random grey": 7}


def test_old_checkpoint_names_are_unchanged_by_the_new_settings():
    """A config with the new fields at their old behaviour hashes as before (the committed checks are found)."""
    from medimg.identity import identity as config_key

    config = SSLConfig(datasets=("pneumoniamnist",), grey_as="replicate", size=64, epochs=4, max_images=1000,
                       views="pil")  # lightly's views, as every checkpoint before issue #30
    later = ("target", "method", "steps", "min_scale", "intensity_jitter", "views", "head_warmup_steps",
             "backbone_bn", "backbone_lr_scale")
    before = {k: v for k, v in config.to_dict().items() if k not in later}
    assert config_key(config.identity()) == config_key(before)
    assert config_key(SSLConfig(**{**config.to_dict(), "steps": 100}).identity()) != config_key(before)
    # the tensor views (the default since issue #30) are another checkpoint
    assert config_key(SSLConfig(**{**config.to_dict(), "views": "tensor"}).identity()) != config_key(before)


def test_step_batches_are_the_epoch_order_by_step_and_start_anywhere():
    from torch.utils.data import DataLoader

    from medimg.data import EpochSampler
    from medimg.ssl.batches import StepBatches

    # 23 images in batches of 5: 4 steps a pass (the last 3 images of each pass's order are dropped)
    whole = list(StepBatches(23, 5, steps=10, seed=3))
    assert len(whole) == 10 and all(len(b) == 5 for b in whole)
    keys = [k for b in DataLoader(list(range(23)), batch_size=5, drop_last=True,
                                   sampler=EpochSampler(23, seed=3)).batch_sampler for k in b]
    assert [k for b in whole[:4] for k in b] == keys  # pass 0 is fine-tuning's epoch order, batched
    assert {e for b in whole[4:8] for _, e in b} == {1} and {e for b in whole[8:] for _, e in b} == {2}
    assert len({i for b in whole[4:8] for i, _ in b}) == 20  # no image twice within a pass
    for start in (1, 4, 7):
        assert list(StepBatches(23, 5, steps=10, seed=3, start=start)) == whole[start:]
    # a pool smaller than a batch: each step is the whole pool
    assert [sorted(i for i, _ in b) for b in StepBatches(3, 8, steps=2, seed=0)] == [[0, 1, 2]] * 2
    # two processes: disjoint shards of the same step
    a, b = (list(StepBatches(23, 5, steps=4, seed=3, rank=r, world_size=2)) for r in (0, 1))
    assert len(a) == len(b) == 4
    assert all(not {i for i, _ in x} & {i for i, _ in y} for x, y in zip(a, b))
    with pytest.raises(ValueError, match="at least 2"):
        StepBatches(10, 1, steps=3, seed=0)


def test_a_second_method_is_a_setting_of_the_stage(tmp_path):
    """VICReg from the methods table: same pool, views, loop and record; its own head and loss."""
    from medimg.ssl.run import pretrain_ssl

    out = tmp_path / "v.safetensors"
    config = SSLConfig(**{**RUN, "steps": 4, "method": "vicreg"})
    pretrain_ssl(config, out, trainer=TrainerSettings(accelerator="cpu", progress=False), progress_every=100)
    meta = read_ssl_meta(out)
    assert meta["method"] == "vicreg" and meta["steps"] == 4 and len(meta["step_losses"]) == 4
    assert all(np.isfinite(meta["step_losses"])) and meta["step_losses"][0] > 0
    # another method is another checkpoint: its settings name it apart from SimCLR's
    assert config.identity() != SSLConfig(**{**RUN, "steps": 4}).identity()
    from medimg.ssl.methods import METHODS
    from medimg.ssl.modules import SimCLR, VICReg, module_of

    assert module_of(METHODS["vicreg"]) is VICReg and module_of(METHODS["simclr"]) is SimCLR
    # the budget in words, as the summary states it beside each claim, from the checkpoint's own record
    from medimg.study.pretraining import budget_phrase, core_hours

    hours = meta["timing"]["train_seconds"] / 3600 * meta["provenance"]["machine"]["torch_threads"]
    assert hours > 0 and core_hours(meta) == pytest.approx(hours)
    assert budget_phrase(out) == f"VICReg, 4 steps at batch 8 on synthetic_grey (16 px, {hours:.2f} CPU core-hours)"
    assert budget_phrase(tmp_path / "gone.safetensors") == "gone.safetensors (not here to read its budget)"


def _curve(path, last: dict, *, random: float = 0.6, imagenet: float = 0.8):
    """A generated curve beside ``path`` (and ``path`` itself, as the finished checkpoint's file): per target, the
    linear probe and kNN at step 0 (0.5) and 3,000 (``last[target]``), random inits 0.55 and ``random``."""
    rows = []
    for target, value in last.items():
        for protocol in ("linear", "knn"):
            rows += [dict(kind="random", target=target, protocol=protocol, val_accuracy=v, seed=s)
                     for s, v in enumerate((0.55, random))]
            rows.append(dict(kind="imagenet", target=target, protocol=protocol, val_accuracy=imagenet))
            rows += [dict(kind="checkpoint", step=step, pairs=step * 128, train_seconds=step, target=target,
                          protocol=protocol, val_accuracy=v) for step, v in ((0, 0.5), (3000, value))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"placeholder")
    pd.DataFrame(rows).to_csv(path.with_name(f"{path.stem}.curve.csv"), index=False)


def test_an_ssl_arm_fine_tunes_from_the_stage_checkpoint_with_the_better_validation_probe(tmp_path, monkeypatch):
    from medimg.study.arm import Arm, profile_arm
    from medimg.study.arm_runs import arm_ssl_checkpoint
    from medimg.study.profiles import load_profile
    from medimg.ssl.curve import budget_answer, crossings
    from medimg.study.pretraining import pretraining_runs

    monkeypatch.setenv("MEDIMG_STUDY_ROOT", str(tmp_path))
    p = load_profile("quick", REPO / "study.yml")
    runs = {(r.config.method, r.pool): r for r in pretraining_runs(p, inits=["random"])}
    assert {m for m, _ in runs} == {"simclr", "vicreg"}
    simclr, vicreg = runs["simclr", "grey"], runs["vicreg", "grey"]
    assert simclr.path.parent == vicreg.path.parent == tmp_path / "results" / "quick" / "ssl"
    assert vicreg.path.name.startswith("vicreg-random-grey-") and vicreg.config.identity() != simclr.config.identity()

    # nothing pretrained: the arm names the first method's checkpoint and refuses to pretrain it
    arm = profile_arm(p, "breastmnist", "ssl")
    assert arm.ssl_checkpoint == str(simclr.path.relative_to(tmp_path)) and arm.ssl is None
    assert Arm.from_dict(arm.to_dict()) == arm
    with pytest.raises(MedimgError, match="make pretrain"):
        arm_ssl_checkpoint(arm)
    assert arm_ssl_checkpoint(arm, create=False) == simclr.path

    # both finished: each target takes the method with the better last linear-probe point on its validation split
    _curve(simclr.path, {"breastmnist": 0.58, "pneumoniamnist": 0.90, "busi_256": 0.59, "iq_othnccd_lung_ct": 0.7})
    _curve(vicreg.path, {"breastmnist": 0.65, "pneumoniamnist": 0.85, "busi_256": 0.59, "iq_othnccd_lung_ct": 0.8})
    picked = {d: profile_arm(p, d, "ssl").ssl_checkpoint for d in ("breastmnist", "pneumoniamnist", "busi_256")}
    assert picked == {"breastmnist": str(vicreg.path.relative_to(tmp_path)),
                      "pneumoniamnist": str(simclr.path.relative_to(tmp_path)),
                      "busi_256": str(simclr.path.relative_to(tmp_path))}  # a tie: the methods table's order
    assert arm_ssl_checkpoint(profile_arm(p, "breastmnist", "ssl")) == vicreg.path
    # its check against random features probes the study's own scratch arm (no checkpoint of any kind)
    from medimg.study.arm_runs import random_init_twin
    assert random_init_twin(profile_arm(p, "breastmnist", "ssl")) == profile_arm(p, "breastmnist", "scratch")
    # colour targets take the colour pool's checkpoint; TL+SSL (no ImageNet-init checkpoint in the stage) and
    # another network than the stage's pretrain their own
    assert profile_arm(p, "retinamnist", "ssl").ssl_checkpoint.startswith("results/quick/ssl/simclr-random-colour-")
    # TL+SSL takes the stage's ImageNet-initialised checkpoint of its pool; another network than the stage's
    # pretrains its own, and so does TL+SSL in a stage without ImageNet init
    (imagenet,) = pretraining_runs(p, inits=["imagenet"], pools=["grey"])
    assert profile_arm(p, "breastmnist", "tl+ssl").ssl_checkpoint == str(imagenet.path.relative_to(tmp_path))
    assert profile_arm(p, "breastmnist", "ssl", arch="tf_efficientnet_lite0").ssl_checkpoint is None
    no_imagenet = dict(p, pretraining=dict(p["pretraining"], inits=["random"]))
    own = profile_arm(no_imagenet, "breastmnist", "tl+ssl")
    assert own.ssl_checkpoint is None and own.ssl["epochs"] == p["ssl"]["epochs"]

    # the chapter's answer counts per method, then for the checkpoint each target's arm takes
    found = pd.concat([crossings(pd.read_csv(r.path.with_name(f"{r.path.stem}.curve.csv")))
                       .assign(method=m, pool="grey", hours_per_step=1e-4) for (m, _), r in runs.items()
                       if r.pool == "grey"], ignore_index=True)
    answer = budget_answer(found)
    assert ("**SimCLR** (grey pool 3,000 steps, 0.30 CPU core-hours): its frozen features beat the best random "
            "initialisation on validation under the linear probe on **2 of 4** targets (pneumoniamnist, "
            "iq_othnccd_lung_ct) and under the kNN on **2 of 4**") in answer
    assert "**VICReg** (grey pool 3,000 steps" in answer and "on **3 of 4** targets (breastmnist, pneumoniamnist, iq" in answer
    assert ("(breastmnist: VICReg, pneumoniamnist: SimCLR, busi_256: SimCLR, iq_othnccd_lung_ct: VICReg), the "
            "features beat the best random initialisation under the linear probe on **3 of 4** targets") in answer
    assert "ImageNet weights" not in answer
    # an ImageNet-initialised checkpoint (TL+SSL's start) is read against ImageNet's own features
    _curve(imagenet.path, {"breastmnist": 0.85, "pneumoniamnist": 0.70, "busi_256": 0.81, "iq_othnccd_lung_ct": 0.6},
           imagenet=0.8)
    tl_ssl = crossings(pd.read_csv(imagenet.path.with_name(f"{imagenet.path.stem}.curve.csv")))
    answer = budget_answer(pd.concat([found, tl_ssl.assign(method="simclr", init="imagenet", pool="grey",
                                                           hours_per_step=1e-4)], ignore_index=True))
    assert answer.startswith("At the end of each checkpoint's budget: **SimCLR** (grey pool 3,000 steps")
    assert answer.endswith("**SimCLR continued from ImageNet weights** (where the TL+SSL arms start; grey pool 3,000 "
                           "steps, 0.30 CPU core-hours): its features beat ImageNet's own on validation under the "
                           "linear probe on **2 of 4** targets (breastmnist, busi_256) and under the kNN on **2 of 4** "
                           "targets (breastmnist, busi_256); and they beat the best random initialisation under the "
                           "linear probe on **3 of 4** targets (breastmnist, pneumoniamnist, busi_256) and under the "
                           "kNN on **3 of "
                           "4** targets (breastmnist, pneumoniamnist, busi_256).")


def test_the_next_stage_pretrains_at_the_size_the_arms_read_with_the_views_the_field_gives():
    """Issue #30: every checkpoint of quick's next stage at the fine-tuning size, with its views budget (steps x
    batch x 2 views) at least the field's: 2M on the grey pool from random weights, 1M on the colour pool, 0.5M
    from ImageNet; the stage before it keeps its checkpoints' names (lightly's PIL views)."""
    from medimg.study.profiles import load_profile
    from medimg.study.pretraining import pretraining_runs, stage_methods, stage_trainer

    p = load_profile("quick")
    runs = pretraining_runs("quick", stage="pretraining_next")
    least = {("random", "grey"): 2_000_000, ("random", "colour"): 1_000_000, ("imagenet", "grey"): 500_000,
             ("imagenet", "colour"): 500_000}
    assert {(r.config.init, r.pool) for r in runs} == set(least)
    long_budget = "simclr"  # the first method gets the field's views; VICReg what compute remains, fewer steps
    assert list(stage_methods(p["pretraining_next"])) == [long_budget, "vicreg"]
    for run in runs:
        c = run.config
        assert c.size == p["finetune"]["size"] and c.views == "tensor"
        views = c.steps * c.batch_size * 2
        if c.method == long_budget:
            assert views >= least[(c.init, run.pool)]
        else:
            assert c.init == "random" and c.steps == 1000 and views < least[(c.init, run.pool)]
        if c.init == "imagenet":  # MICLe's way: the head first, ImageNet's statistics kept, a lower backbone rate
            assert c.head_warmup_steps > 0 and c.backbone_bn == "frozen" and c.backbone_lr_scale < 1
    assert not {r.path for r in runs} & {r.path for r in pretraining_runs("quick")}
    assert all(r.config.views == "pil" for r in pretraining_runs("quick"))
    assert all(r.path.is_file() for r in pretraining_runs("quick"))  # the book's checkpoints are found by name
    assert stage_trainer(p, "pretraining_next").num_workers == 0
    with pytest.raises(MedimgError, match="no 'pretraining_later' section"):
        pretraining_runs("quick", stage="pretraining_later")
