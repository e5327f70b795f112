import json

import numpy as np
import pytest

from conftest import files_under, run_cli
from medimg.data import DataConfig, describe, prepare


def npz_counts(path, classes):
    with np.load(path) as npz:
        return {s: {c: int((npz[f"{s}_labels"].ravel() == k).sum()) for k, c in enumerate(classes)}
                for s in ("train", "val", "test")}


def test_describe_breastmnist_matches_official_file(shared_data):
    result = run_cli("describe", "breastmnist", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["split"]["method"] == "official"
    assert {s: info["splits"][s]["n"] for s in ("train", "val", "test")} == {"train": 546, "val": 78, "test": 156}
    expected = npz_counts(shared_data / "breastmnist" / "breastmnist.npz", info["classes"])
    assert {s: info["splits"][s]["per_class"] for s in expected} == expected
    assert info["channels"] == 1 and info["image_sizes"] == {"28x28": 780}


def test_official_split_duplicates_are_kept_out_of_training(shared_data):
    # breastmnist's official split has one image in both train and test (with two labels):
    # the split is kept, but the train copy is left out of what training uses.
    data = prepare(DataConfig("breastmnist", size=28), progress=False)
    info = describe(data)
    assert info["duplicates_across_splits"] >= 1
    train_ids = {data.decoded.ids[i] for i in data.split.indices("train", data.decoded.ids)}
    test_hashes = {data.decoded.sha256[i] for i in data.split.indices("test", data.decoded.ids)}
    assert not any(data.decoded.sha256[data.decoded.ids.index(i)] in test_hashes for i in train_ids)
    assert len(train_ids) == 546 - len(info["excluded_from_training"])


def test_pixels_come_from_the_npz(shared_data):
    data = prepare(DataConfig("pneumoniamnist", size=28), progress=False)
    with np.load(shared_data / "pneumoniamnist" / "pneumoniamnist.npz") as npz:
        assert np.array_equal(data.decoded.images[:4708, ..., 0], npz["train_images"])
        assert np.array_equal(data.decoded.images[-624:, ..., 0], npz["test_images"])


def test_colour_medmnist_resized_once_and_cached(shared_data):
    first = prepare(DataConfig("retinamnist", size=48), progress=False)
    assert first.decoded.images.shape == (1600, 48, 48, 3)
    second = prepare(DataConfig("retinamnist", size=48), progress=False)
    assert second.decoded.path == first.decoded.path
    assert np.array_equal(np.asarray(second.decoded.images), np.asarray(first.decoded.images))


def test_missing_size_offline_names_the_exact_file(shared_data, cache_dir):
    result = run_cli("describe", "breastmnist", "--medmnist-size", "64")
    assert result.returncode == 2
    assert "breastmnist_64.npz" in result.stderr and "zenodo" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert files_under(cache_dir) == []


def test_npz_directly_in_data_dir_is_found(tmp_path, shared_data):
    (tmp_path / "retinamnist.npz").symlink_to(shared_data / "retinamnist" / "retinamnist.npz")
    result = run_cli("describe", "retinamnist", "--json", env={"MEDIMG_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["splits"]["test"]["n"] == 400


def test_download_is_attempted_only_online(tmp_path, monkeypatch):
    from medimg.data import medmnist_files
    from medimg.data.registry import get_spec
    from medimg.errors import MedimgError

    calls = []
    monkeypatch.setattr(medmnist_files, "download_medmnist", lambda flag, size, dest: calls.append((flag, size, dest)))
    monkeypatch.delenv("MEDIMG_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(MedimgError):  # the fake download wrote nothing, so reading then fails clearly
        medmnist_files.open_medmnist(get_spec("octmnist"), tmp_path, size=64)
    assert calls == [("octmnist", 64, tmp_path / "octmnist_64.npz")]


def test_medmnist_download_urls_are_known():
    from medmnist.info import INFO

    from medimg.data.registry import MEDMNIST_SIZES, REGISTRY

    for spec in REGISTRY.values():
        if spec.kind == "medmnist":
            info = INFO[spec.location]
            assert len(spec.classes) == len(info["label"])
            assert spec.channels == info["n_channels"]
            for size in MEDMNIST_SIZES:
                suffix = "" if size == 28 else f"_{size}"
                assert f"/{spec.location}{suffix}.npz" in info[f"url{suffix}"]
