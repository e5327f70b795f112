"""A pretraining run (medimg.ssl.run) and its record (medimg.ssl.config): the saved checkpoint loads and repeats
exactly, a colour pool replicates grey images, nothing is overwritten, bad settings are refused."""
from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from conftest import files_under
from medimg.errors import MedimgError
from medimg.models.backbones import create_backbone, read_ssl_meta
from medimg.ssl.config import SSLConfig
from medimg.ssl.run import pretrain_ssl
from tiny_runs import CPU, tiny

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


def test_config_is_checked():
    assert SSLConfig(datasets="synthetic_grey").datasets == ("synthetic_grey",)
    for bad in (dict(datasets=()), dict(datasets=("a", "a")), dict(init="imagenet21k"), dict(grey_as="rgb"),
                dict(batch_size=1), dict(arch="vit"), dict(max_images=1)):
        with pytest.raises(MedimgError):
            SSLConfig(**{"datasets": ("synthetic_grey",), **bad})
