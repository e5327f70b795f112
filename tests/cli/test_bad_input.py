"""Each kind of bad input: a one-line message naming the file and the fix, exit 2, nothing cached."""
import os
import struct
import zipfile

import numpy as np
import pytest
from medmnist.info import INFO
from PIL import Image

from conftest import assert_one_line_error, files_under, run_cli
from medimg.data.synthetic import write_image_folder


def assert_clean_failure(result, cache_dir, *must_mention):
    assert_one_line_error(result, *must_mention)
    assert files_under(cache_dir) == [], "a failed run left files in the cache"


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "ds", n_per_class=5, size=32, formats=("png", "jpg"))


def test_truncated_image(folder, cache_dir):
    victim = sorted((folder / "images" / "square").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    assert_clean_failure(run_cli("describe", str(folder)), cache_dir, str(victim), "replace the file")


def test_corrupt_image(folder, cache_dir):
    victim = sorted((folder / "images" / "disc").glob("*.png"))[0]
    victim.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    assert_clean_failure(run_cli("describe", str(folder)), cache_dir, str(victim))


def test_corrupt_image_after_good_ones_leaves_no_partial_cache(folder, cache_dir):
    # the bad file is decoded last, so a cache entry was well under way when it failed
    victim = folder / "images" / "square" / "zzz_last.png"
    victim.write_bytes(b"garbage")
    assert_clean_failure(run_cli("describe", str(folder), "--size", "16"), cache_dir, str(victim))


def test_empty_class_folder(folder, cache_dir):
    (folder / "images" / "empty_class").mkdir()
    assert_clean_failure(run_cli("describe", str(folder)), cache_dir, "empty_class", "holds no images")


def test_labels_csv_names_missing_file(folder, cache_dir):
    write_image_folder(folder, n_per_class=5, size=32, labels_csv=True)
    with open(folder / "labels.csv", "a") as fh:
        fh.write("images/disc/not_there.png,disc\n")
    assert_clean_failure(run_cli("describe", str(folder)), cache_dir, str(folder / "labels.csv"),
                         "not_there.png", "does not exist")


def test_labels_csv_unknown_class(folder, cache_dir):
    write_image_folder(folder, n_per_class=5, size=32, labels_csv=True)
    text = (folder / "labels.csv").read_text().replace(",disc\n", ",tumour\n", 1)
    (folder / "labels.csv").write_text(text)
    assert_clean_failure(run_cli("describe", str(folder)), cache_dir, "labels.csv line", "unknown class 'tumour'")


def test_one_class_only(tmp_path, cache_dir):
    (tmp_path / "only" / "a").mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "only" / "a" / "x.png")
    assert_clean_failure(run_cli("describe", str(tmp_path / "only")), cache_dir, str(tmp_path / "only"), "two class")


def test_npz_missing_keys(tmp_path, cache_dir):
    np.savez(tmp_path / "breastmnist.npz", train_images=np.zeros((3, 28, 28), np.uint8),
             train_labels=np.zeros((3, 1), np.uint8))
    result = run_cli("describe", "breastmnist", env={"MEDIMG_DATA_DIR": str(tmp_path)})
    assert_clean_failure(result, cache_dir, str(tmp_path / "breastmnist.npz"), "'val_images'")


def test_npz_mismatched_lengths(tmp_path, cache_dir):
    arrays = {f"{s}_images": np.zeros((4, 28, 28), np.uint8) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": np.zeros((4, 1), np.uint8) for s in ("train", "val", "test")})
    arrays["val_labels"] = np.zeros((3, 1), np.uint8)
    np.savez_compressed(tmp_path / "breastmnist.npz", **arrays)
    result = run_cli("describe", "breastmnist", env={"MEDIMG_DATA_DIR": str(tmp_path)})
    assert_clean_failure(result, cache_dir, "4 val_images but 3 val_labels")


@pytest.mark.parametrize("kind", ["missing", "file", "unreadable"])
def test_unreadable_data_directory(tmp_path, cache_dir, kind):
    target = tmp_path / "data"
    if kind == "file":
        target.write_text("not a folder")
    elif kind == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads any folder, whatever its mode")
        target.mkdir()
        target.chmod(0)
    result = run_cli("describe", "busi_256", env={"MEDIMG_DATA_DIR": str(target)})
    assert_clean_failure(result, cache_dir, str(target), "MEDIMG_DATA_DIR")


def test_unknown_dataset_name(cache_dir):
    assert_clean_failure(run_cli("describe", "no_such_set"), cache_dir, "'no_such_set'", "medimg datasets")


def test_npz_with_corrupted_member_bytes(tmp_path, shared_data, cache_dir):
    """A full-length npz whose train_images.npy bytes are damaged (bad CRC): re-download, with the MD5."""
    damaged = tmp_path / "breastmnist.npz"
    official = shared_data / "breastmnist" / "breastmnist.npz"
    data = bytearray(official.read_bytes())  # changed in memory, written to tmp_path: never the shared file
    with zipfile.ZipFile(official) as zf:
        info = zf.getinfo("train_images.npy")
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    middle = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    length = len(data)
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    damaged.write_bytes(data)
    assert damaged.stat().st_size == length
    result = run_cli("describe", "breastmnist", env={"MEDIMG_DATA_DIR": str(tmp_path)})
    assert_clean_failure(result, cache_dir, str(damaged), "MD5", INFO["breastmnist"]["MD5"], INFO["breastmnist"]["url"])
