"""The pretraining pool: its channels, the target's own training split pooled, and lineage refusals (a registered
ancestor, a copied folder) before anything is decoded."""
from __future__ import annotations

import shutil

import pytest

from conftest import files_under
from medimg.data.synthetic import write_image_folder
from medimg.errors import MedimgError
from medimg.models.backbones import read_ssl_meta
from medimg.ssl.config import SSLConfig
from medimg.ssl.pool import _channels
from medimg.ssl.run import pretrain_ssl
from tiny_runs import CPU, tiny

def test_channels_of_a_pool():
    assert _channels({"a": 3}, "single") == (3, None)  # colour pools ignore grey_as
    assert _channels({"a": 1}, "single") == (1, "single")
    assert _channels({"a": 1, "b": 3}, "replicate") == (3, "replicate")
    with pytest.raises(MedimgError, match="--grey-as single"):
        _channels({"a": 1}, None)
    with pytest.raises(MedimgError, match="--grey-as replicate"):
        _channels({"a": 1, "b": 3}, "single")


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
