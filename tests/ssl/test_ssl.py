"""SimCLR pretraining: views, channels, the saved checkpoint, determinism, overwrite and lineage refusals."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, files_under
from medimg.data.synthetic import write_image_folder
from medimg.errors import MedimgError
from medimg.models.backbones import create_backbone, read_ssl_meta
from medimg.ssl.views import SimCLRViews, simclr_transform, view_settings
from medimg.ssl.config import SSLConfig
from medimg.ssl.pool import _channels
from medimg.ssl.run import pretrain_ssl
from medimg.training.trainer import TrainerSettings

CPU = TrainerSettings(progress=False, accelerator="cpu")


def tiny(datasets, **kwargs) -> SSLConfig:
    """resnet18 at 32 px, one epoch of four batches: seconds on two slow cores."""
    return SSLConfig(datasets=datasets, **{**dict(size=32, epochs=1, batch_size=8, max_images=32), **kwargs})


@pytest.mark.parametrize("channels", [1, 3])
def test_views_differ_keep_channels_and_repeat_per_seed(channels):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, channels), dtype=np.uint8)
    mean, std = ([0.45], [0.23]) if channels == 1 else ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    views = SimCLRViews(images, simclr_transform(view_settings(32, colour=channels == 3, mean=mean, std=std)), seed=0)
    v0, v1 = views[0, 0]
    assert v0.shape == v1.shape == (channels, 32, 32)  # lightly's default normalize would make grey 3-channel
    assert not torch.equal(v0, v1)
    assert all(torch.equal(a, b) for a, b in zip(views[0, 0], views[0, 0]))  # seeded by (seed, epoch, position)
    assert not torch.equal(views[0, 1][0], v0)  # another epoch, other views


def test_grey_settings_have_no_colour_augmentation():
    grey = view_settings(64, colour=False, mean=[0.45], std=[0.23])
    assert grey["cj_sat"] == grey["cj_hue"] == grey["random_gray_scale"] == 0
    assert grey["normalize"] == dict(mean=[0.45], std=[0.23])
    assert view_settings(64, colour=True, mean=[0.5] * 3, std=[0.5] * 3)["cj_sat"] > 0


def test_channels_of_a_pool():
    assert _channels({"a": 3}, "single") == (3, None)  # colour pools ignore grey_as
    assert _channels({"a": 1}, "single") == (1, "single")
    assert _channels({"a": 1, "b": 3}, "replicate") == (3, "replicate")
    with pytest.raises(MedimgError, match="--grey-as single"):
        _channels({"a": 1}, None)
    with pytest.raises(MedimgError, match="--grey-as replicate"):
        _channels({"a": 1, "b": 3}, "single")


def test_grey_single_checkpoint_loads_and_repeats_exactly(tmp_path):
    config = tiny(("synthetic_grey",), grey_as="single")
    first = pretrain_ssl(config, tmp_path / "a.safetensors", trainer=CPU)
    second = pretrain_ssl(config, tmp_path / "b.safetensors", trainer=CPU)
    assert files_under(tmp_path) == [first, second]  # nothing else left behind

    saved, again = load_file(str(first)), load_file(str(second))
    assert saved.keys() == again.keys() and all(torch.equal(saved[k], again[k]) for k in saved)

    meta = read_ssl_meta(first)
    assert meta["in_chans"] == 1 and meta["grey_as"] == "single" and meta["init"] == "random"
    assert meta["n_images"] == 32 and meta["datasets"] == ["synthetic_grey"]
    assert meta["config"] == config.to_dict() | dict(datasets=["synthetic_grey"])  # JSON lists for tuples
    assert len(meta["epoch_losses"]) == 1 and math.isfinite(meta["final_loss"])
    assert meta["transform"]["normalize"]["mean"] == [pytest.approx(0.449, abs=1e-3)]
    assert meta["lineage"] is None and meta["weight_source"]["kind"] == "random"
    assert meta["provenance"]["versions"]["lightly"]

    model, source = create_backbone("resnet18", num_classes=3, in_chans=1, weights=first)
    assert source.kind == "ssl-checkpoint" and source.meta["epochs"] == 1
    assert torch.equal(model.conv1.weight, saved["conv1.weight"])
    assert model.fc.weight.abs().max() < 0.1  # a fresh head
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 3)


def test_colour_pool_replicates_grey(tmp_path):
    out = pretrain_ssl(tiny(("synthetic_colour", "synthetic_grey"), grey_as="replicate"), tmp_path / "c.safetensors",
                       trainer=CPU)
    meta = read_ssl_meta(out)
    assert meta["in_chans"] == 3 and meta["grey_as"] == "replicate"
    assert [p["channels"] for p in meta["pool"]] == [3, 1]
    assert sum(p["pooled_images"] for p in meta["pool"]) == 32
    assert math.isfinite(meta["final_loss"])
    model, _ = create_backbone("resnet18", num_classes=2, in_chans=3, weights=out)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    with pytest.raises(MedimgError, match="same --grey-as"):
        create_backbone("resnet18", num_classes=2, in_chans=1, weights=out)


def test_refuses_to_overwrite(tmp_path):
    out = tmp_path / "ssl.safetensors"
    out.write_bytes(b"keep")
    with pytest.raises(MedimgError, match=f"{out}.*--force"):
        pretrain_ssl(tiny(("synthetic_grey",), grey_as="single"), out, trainer=CPU)
    assert out.read_bytes() == b"keep"
    with pytest.raises(MedimgError, match="must end in .safetensors"):
        pretrain_ssl(tiny(("synthetic_grey",), grey_as="single"), tmp_path / "ssl.pth", trainer=CPU)


def test_target_own_training_split_pooled_and_an_overlap_recorded_only_when_allowed(shared_data, tmp_path):
    # a target's own training split may be pooled (issue #20): its validation and test images stay out
    config = tiny(("synthetic_grey",), grey_as="single", target="synthetic_grey", max_images=16)
    lineage = read_ssl_meta(pretrain_ssl(config, tmp_path / "own.safetensors", trainer=CPU))["lineage"]
    assert lineage["own_training_split"] == ["synthetic_grey"] and not lineage["overridden"]
    # a set sharing source images with the target is refused, or recorded with allow_overlap
    config = tiny(("busi_256",), grey_as="single", target="breastmnist", max_images=16)
    with pytest.raises(MedimgError, match="--allow-overlap"):
        pretrain_ssl(config, tmp_path / "x.safetensors", trainer=CPU)
    out = pretrain_ssl(SSLConfig(**{**config.to_dict(), "allow_overlap": True}), tmp_path / "x.safetensors",
                       trainer=CPU)
    lineage = read_ssl_meta(out)["lineage"]
    assert lineage["overridden"] and lineage["datasets"] == ["breastmnist", "busi_256"]
    assert "share images" in lineage["overlaps"][0]


def test_busi_refused_for_breastmnist_before_decoding(shared_data, cache_dir, tmp_path):
    with pytest.raises(MedimgError, match="busi_256.*--allow-overlap"):
        pretrain_ssl(SSLConfig(datasets=("busi_256",), target="breastmnist", grey_as="single"),
                     tmp_path / "x.safetensors", trainer=CPU)
    assert files_under(cache_dir) == [] and files_under(tmp_path) == []


def test_copied_folder_refused_by_content(tmp_path):
    original = write_image_folder(tmp_path / "original", n_per_class=6, size=32, colour=False, modes=("L",))
    copy = shutil.copytree(original, tmp_path / "copy")  # another name and lineage, the same files
    with pytest.raises(MedimgError, match="identical image files.*--allow-overlap"):
        pretrain_ssl(tiny((str(original),), grey_as="single", target=str(copy)), tmp_path / "x.safetensors",
                     trainer=CPU)
    assert not (tmp_path / "x.safetensors").exists()


def test_config_is_checked():
    assert SSLConfig(datasets="synthetic_grey").datasets == ("synthetic_grey",)
    for bad in (dict(datasets=()), dict(datasets=("a", "a")), dict(init="imagenet21k"), dict(grey_as="rgb"),
                dict(batch_size=1), dict(arch="vit"), dict(max_images=1)):
        with pytest.raises(MedimgError):
            SSLConfig(**{"datasets": ("synthetic_grey",), **bad})


def test_a_checkpoint_is_checked_against_random_features_on_validation_only(tmp_path, monkeypatch):
    """The SimCLR chapter's check: the probe of the checkpoint's features beside one random init per seed of the
    arm, each the same numbers a probe fitted by hand gives."""
    from medimg.finetune.config import FinetuneConfig
    from medimg.probe.features import extract_features
    from medimg.probe.linear_knn import LinearProbe
    from medimg.ssl.check import SSLCheck, check_ssl_checkpoint

    monkeypatch.setenv("MEDIMG_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint = pretrain_ssl(tiny(("synthetic_grey",), grey_as="replicate"), tmp_path / "c.safetensors", trainer=CPU)
    run = dict(dataset="synthetic_colour", arch="resnet18", size=32)
    check = check_ssl_checkpoint(FinetuneConfig(**run, method="ssl", weights=str(checkpoint), seed=0).network,
                                 [FinetuneConfig(**run, method="scratch", seed=s).network for s in (0, 1)])

    def by_hand(**kw):
        features = extract_features(FinetuneConfig("synthetic_colour", arch="resnet18", size=32, **kw).network)
        probe = LinearProbe(random_state=kw["seed"]).fit(features)
        return float(np.mean(probe.predict_proba(features.x["val"]).argmax(1) == features.y["val"]))

    assert check.val_accuracy == by_hand(method="ssl", weights=str(checkpoint), seed=0)
    assert check.random_val_accuracy == (by_hand(method="scratch", seed=0), by_hand(method="scratch", seed=1))
    assert check.seeds == (0, 1) and check.checkpoint == "c.safetensors"
    assert check.beats_random == (check.val_accuracy > max(check.random_val_accuracy))
    # kept beside the checkpoint as JSON, read back equal (a committed study has the check, not the checkpoint)
    import json

    from medimg.ssl.check import check_path, read_check
    check_path(checkpoint, "synthetic_colour").write_text(json.dumps(check.to_dict()))
    assert check_path(checkpoint, "synthetic_colour").name == "c.check-synthetic_colour.json"
    assert read_check(checkpoint, "synthetic_colour") == check and read_check(checkpoint, "other") is None
    losing = SSLCheck("t", "c", 1.0, 0.6, 0.7, (0, 1), (0.62, 0.58), (0.6, 0.7))
    assert not losing.beats_random and "do **not** beat" in losing.verdict()
    assert SSLCheck("t", "c", 1.0, 0.7, 0.6, (0, 1), (0.62, 0.58), (0.6, 0.7)).beats_random
    from medimg.ssl.check import checks_markdown

    table = checks_markdown({"t": losing})  # the summary's table: checkpoint beside the random mean
    assert "| target | pretrained with | checkpoint | random init (mean) | above the best random |" in table
    assert "| t | c | 0.600 | 0.600 | no |" in table
    named = SSLCheck("t", "vicreg-random-grey-b5bd269fe050.safetensors", 1.0, 0.6, 0.7, (0, 1), (0.62, 0.58), (0.6, 0.7))
    assert "| t | VICReg | 0.600 | 0.600 | no |" in checks_markdown({"t": named})
    with pytest.raises(MedimgError, match="reads a self-supervised checkpoint file, not the auto weights"):
        check_ssl_checkpoint(FinetuneConfig(**run, method="tl", seed=0).network, [])
    # which arms start from a checkpoint is the study's to know: it refuses to check one that does not
    from medimg.study.arm import profile_arm
    from medimg.study.arm_runs import ensure_ssl_check
    from medimg.study.profiles import load_profile

    with pytest.raises(MedimgError, match="the tl arm starts from no self-supervised checkpoint: check an arm that "
                                          "does \\(ssl, tl\\+ssl\\)"):
        ensure_ssl_check(profile_arm(load_profile("quick", REPO / "study.yml"), "breastmnist", "tl"))
