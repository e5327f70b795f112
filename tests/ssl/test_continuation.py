"""Continuing ImageNet weights as MICLe does (issue #30): the head warmed up on the frozen backbone, batch-norm
statistics kept, a lower backbone rate; the state a checkout carries between machines; the size a checkpoint is
read at."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from medimg.errors import MedimgError
from medimg.training.trainer import TrainerSettings
from medimg.models.backbones import create_backbone, read_ssl_meta
from medimg.ssl.config import SSLConfig
from medimg.ssl.run import carry_path, pretrain_ssl, state_dir

CPU = TrainerSettings(progress=False, accelerator="cpu")
# MobileNetV2 (ImageNet weights offline: Google's TFLite file) at 16 px on 32 generated grey images, batch 8
RUN = dict(datasets=("synthetic_grey",), arch="mobilenetv2_100", size=16, batch_size=8, max_images=32,
           grey_as="replicate", temperature=0.2)


def test_the_head_warm_up_leaves_the_backbone_and_frozen_statistics_keep_imagenets(tmp_path, shared_data):
    imagenet, _ = create_backbone("mobilenetv2_100", num_classes=0, in_chans=3, weights="auto")
    start = {k: v.clone() for k, v in imagenet.state_dict().items()}
    warm = SSLConfig(**RUN, init="imagenet", steps=3, head_warmup_steps=3, backbone_bn="frozen")
    saved = load_file(str(pretrain_ssl(warm, tmp_path / "warm.safetensors", trainer=CPU)))
    # three steps of the head alone: every weight and statistic as ImageNet's (frozen statistics are kept: the
    # batch-norm rule reads them as the clean images' they are)
    weights = [k for k in start if not k.endswith("num_batches_tracked")]
    assert all(torch.equal(saved[k], start[k]) for k in weights)
    meta = read_ssl_meta(tmp_path / "warm.safetensors")
    assert meta["config"]["head_warmup_steps"] == 3 and "frozen" in meta["batch_norm"]
    # statistics that followed the views are replaced by the clean pool's at the end
    trained = SSLConfig(**RUN, init="imagenet", steps=2)
    saved = load_file(str(pretrain_ssl(trained, tmp_path / "plain.safetensors", trainer=CPU)))
    assert not torch.equal(saved["bn1.running_mean"], start["bn1.running_mean"])
    assert "clean" in read_ssl_meta(tmp_path / "plain.safetensors")["batch_norm"]

    # after the warm-up the backbone trains; with frozen statistics its running statistics never follow the views
    from medimg.ssl.modules import SimCLR
    config = SSLConfig(**RUN, init="imagenet", steps=4, head_warmup_steps=1, backbone_bn="frozen",
                       backbone_lr_scale=0.1)
    module = SimCLR(create_backbone("mobilenetv2_100", num_classes=0, in_chans=3, weights="auto")[0], config,
                    channels_last=False)
    module.on_train_batch_start(None, 0)
    before = module.backbone.bn1.running_mean.clone()
    module.train()
    module.on_train_batch_start(None, 0)
    module(torch.randn(8, 3, 16, 16))
    assert torch.equal(module.backbone.bn1.running_mean, before)
    with pytest.raises(MedimgError, match="random network's initial statistics"):
        SSLConfig(**RUN, backbone_bn="frozen")


def test_the_backbone_rate_starts_after_the_warm_up_and_is_scaled():
    from medimg.ssl.modules import schedule_factor

    head, backbone = schedule_factor(100), schedule_factor(80, 20)
    assert [backbone(s) for s in (0, 19)] == [0.0, 0.0] and backbone(20) == pytest.approx(1 / 8)  # 80 steps: 8 warm
    assert backbone(20 + 50) == pytest.approx(schedule_factor(80)(50)) and head(99) < 0.01
    old = [min(1.0, (s + 1) / 10) * 0.5 * (1 + __import__("math").cos(__import__("math").pi * s / 100))
           for s in range(100)]
    assert [head(s) for s in range(100)] == pytest.approx(old)  # the schedule before issue #30, unchanged


def test_a_carried_state_goes_on_where_the_run_stopped_with_fresh_optimiser_moments(tmp_path, shared_data):
    import shutil

    config = SSLConfig(**RUN, steps=8)
    whole = pretrain_ssl(config, tmp_path / "whole.safetensors", trainer=CPU, state_every=4)
    assert not carry_path(whole).exists()  # carrying is the stage's

    # a run that stopped after step 4 on another machine: its checkout holds the carried state, its cache nothing
    out = tmp_path / "c.safetensors"

    class Stop(Exception):
        pass

    import pytorch_lightning as pl

    class StopAfter(pl.Callback):
        def on_train_batch_end(self, trainer, *_):
            if trainer.global_step == 5:
                raise Stop

    from medimg.ssl import run as run_module
    original = run_module.Snapshots.__init__

    def with_stop(self, *a, **k):  # a callback the run builds anyway, made to stop the run after step 5
        original(self, *a, **k)
        self.on_train_batch_end = StopAfter().on_train_batch_end

    run_module.Snapshots.__init__ = with_stop
    try:
        with pytest.raises(Stop):
            pretrain_ssl(config, out, trainer=CPU, state_every=4, carry=True)
    finally:
        run_module.Snapshots.__init__ = original
    carried = torch.load(carry_path(out), weights_only=False)
    assert carried["global_step"] == 4 and carried["optimizer_states"][0]["state"] == {}
    assert carry_path(out).stat().st_size < 0.6 * (state_dir(out, config) / "last.ckpt").stat().st_size
    shutil.rmtree(state_dir(out, config))  # the next machine's cache is empty

    pretrain_ssl(config, out, trainer=CPU, state_every=4, carry=True, resume=True)
    meta, ref = read_ssl_meta(out), read_ssl_meta(whole)
    assert meta["steps"] == 8 and meta["resumed_at"] == [4] and meta["optimizer_reset_at"] == [4]
    assert meta["step_losses"][:4] == ref["step_losses"][:4]  # the same views and weights up to the stop
    assert meta["step_losses"][4:] != ref["step_losses"][4:]  # then Adam starts its moments afresh
    assert not carry_path(out).exists() and not state_dir(out, config).exists()


def test_a_checkpoint_is_read_at_the_size_it_was_pretrained_at(tmp_path, shared_data):
    from medimg.finetune.config import FinetuneConfig
    from medimg.finetune.train import finetune

    ckpt = pretrain_ssl(SSLConfig(**RUN, steps=2), tmp_path / "s.safetensors", trainer=CPU)
    config = FinetuneConfig("synthetic_grey", "ssl", weights=str(ckpt), arch="mobilenetv2_100", size=32, epochs=1, head_epochs=0,
                            grey_as="replicate")
    with pytest.raises(MedimgError, match="pretrained at 16 px but this run reads it at 32 px"):
        finetune(config, tmp_path / "run", settings=CPU)
    assert not (tmp_path / "run").exists()
    allowed = FinetuneConfig(**{**config.to_dict(), "allow_size_mismatch": True})
    assert "allow_size_mismatch" in allowed.to_dict() and "allow_size_mismatch" not in config.to_dict()


def test_a_float16_backbone_is_half_the_file_and_loads_as_float32(tmp_path):
    from medimg.models.backbones import save_ssl_backbone

    torch.manual_seed(0)
    net, _ = create_backbone("mobilenetv2_100", num_classes=0, in_chans=3, weights="random")
    meta = dict(arch="mobilenetv2_100", in_chans=3, init="random", method="simclr", size=16)
    save_ssl_backbone(tmp_path / "a.safetensors", net, meta)
    save_ssl_backbone(tmp_path / "b.safetensors", net, meta, storage="float16")
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert (tmp_path / "b.safetensors").stat().st_size < 0.6 * (tmp_path / "a.safetensors").stat().st_size
    assert b["conv_stem.weight"].dtype == torch.float16 and b["bn1.num_batches_tracked"].dtype == torch.int64
    assert torch.allclose(a["conv_stem.weight"], b["conv_stem.weight"].float(), atol=1e-3)
    assert read_ssl_meta(tmp_path / "b.safetensors")["storage"] == "float16"
    assert "storage" not in read_ssl_meta(tmp_path / "a.safetensors")


@pytest.mark.long  # make test-long: the stored file is checked above; this adds the probe's comparison in a run
def test_a_float16_checkpoint_is_half_the_file_and_probed_as_the_float32_one(tmp_path, shared_data):
    from medimg.ssl.curve import CurveTarget
    from medimg.ssl.run import STORAGE_TOLERANCE

    config = SSLConfig(**RUN, steps=2)
    full = pretrain_ssl(config, tmp_path / "a.safetensors", trainer=CPU)
    half = pretrain_ssl(config, tmp_path / "b.safetensors", trainer=CPU, storage="float16",
                        curve_targets=(CurveTarget("synthetic_grey"),), curve_every=100)
    meta = read_ssl_meta(half)
    check = meta["storage_check"]
    assert {p["protocol"] for p in check["pairs"]} == {"linear", "knn"}
    # float16 only where no probe moves by more than the tolerance; else the whole file is kept
    assert check["kept"] == ("float16" if check["max_difference"] <= STORAGE_TOLERANCE else "float32")
    assert meta.get("storage", "float32") == check["kept"]
    a, b = load_file(str(full)), load_file(str(half))
    if check["kept"] == "float16":
        assert half.stat().st_size < 0.6 * full.stat().st_size
        assert b["conv_stem.weight"].dtype == torch.float16 and b["bn1.num_batches_tracked"].dtype == torch.int64
    assert torch.allclose(a["conv_stem.weight"], b["conv_stem.weight"].float(), atol=1e-3)
    model, _ = create_backbone("mobilenetv2_100", num_classes=2, in_chans=3, weights=half)
    assert model.conv_stem.weight.dtype == torch.float32


def test_a_pause_is_not_training_time():
    """A step 20 times the median of the steps before it (a SIGSTOP, a machine asleep) counts at that median: the
    budget in core-hours and the ETA leave the pause out, and the record says how long it was."""
    from medimg.ssl.progress import train_seconds, working_seconds

    steps = [1.0, 1.2, 0.9, 1.1, 1.0, 1.05, 0.95, 1.0, 1.1, 1.0]
    assert working_seconds(3000.0, steps) == 1.0 and working_seconds(5.0, steps) == 5.0  # slow, not paused
    assert working_seconds(3000.0, steps[:5]) == 3000.0  # too few steps to tell
    training, paused = train_seconds(steps + [3000.0] + steps)
    assert training == pytest.approx(2 * sum(steps) + 1.0) and paused == pytest.approx(2999.0)
    assert train_seconds(steps) == (pytest.approx(sum(steps)), 0.0)
