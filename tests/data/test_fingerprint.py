"""A dataset's fingerprint is of its files' names and bytes: a copy of the data on another machine (new paths, new
modification times) is the same data, and a run trained on it reads it back there; changed bytes are not."""
import json
import os
import shutil

import pandas as pd
import pytest

from conftest import SHARED_DATA
from medimg.finetune.config import FinetuneConfig
from medimg.training.trainer import TrainerSettings
from medimg.data import open_dataset
from medimg.data.synthetic import write_image_folder
from medimg.errors import MedimgError
from medimg.finetune.runs import read_run


def touch_everything(root, ns=10**9):
    for dirpath, _, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(dirpath, f), ns=(ns, ns))


def test_a_copy_with_new_times_is_the_same_data_and_changed_bytes_are_not(tmp_path):
    root = write_image_folder(tmp_path / "a", n_per_class=3, size=24, labels_csv=True)
    first = open_dataset(root).fingerprint
    copy = shutil.copytree(root, tmp_path / "elsewhere" / "b")
    touch_everything(copy)
    assert open_dataset(copy).fingerprint == first  # another place, other times: the same files
    victim = copy / "images" / "disc" / "img0000.png"
    data = bytearray(victim.read_bytes())
    data[-5] ^= 1
    victim.write_bytes(bytes(data))
    assert open_dataset(copy).fingerprint != first
    victim.write_bytes(bytes(data[:-5]) + bytes([data[-5] ^ 1]) + bytes(data[-4:]))  # the original bytes again
    assert open_dataset(copy).fingerprint == first
    labels = copy / "labels.csv"
    text = labels.read_text()
    assert "images/disc/img0000.png,disc\n" in text
    labels.write_text(text.replace("images/disc/img0000.png,disc\n", "images/disc/img0000.png,square\n"))  # relabelled
    assert open_dataset(copy).fingerprint != first
    plain = write_image_folder(tmp_path / "c", n_per_class=3, size=24)
    before = open_dataset(plain).fingerprint
    victim = plain / "images" / "disc" / "img0000.png"
    victim.rename(victim.with_name("img9999.png"))  # the same bytes under another name are another record
    assert open_dataset(plain).fingerprint != before


def test_a_copied_medmnist_file_has_the_fingerprint_of_the_original(tmp_path):
    original = SHARED_DATA / "breastmnist" / "breastmnist.npz"
    if not original.is_file():
        pytest.skip("the shared data folder is not here")
    shutil.copy(original, tmp_path / "breastmnist.npz")
    touch_everything(tmp_path)
    here = open_dataset("breastmnist", data_dir_override=tmp_path, download=False).fingerprint
    assert here == open_dataset("breastmnist", data_dir_override=SHARED_DATA, download=False).fingerprint


@pytest.fixture
def folder_run(tmp_path):
    from medimg.finetune.train import finetune

    root = write_image_folder(tmp_path / "scans", n_per_class=10, size=24, colour=False)
    run = tmp_path / "run"
    finetune(FinetuneConfig(str(root), "scratch", arch="resnet18", size=16, epochs=1, seed=0), run,
             settings=TrainerSettings(accelerator="cpu", progress=False))
    return root, run


def test_a_run_reads_its_data_back_after_a_copy_but_not_after_a_change(folder_run):
    root, run = folder_run
    assert json.loads((run / "config.json").read_text())["data"]["target"]["fingerprint_of"] == "content"
    touch_everything(root)  # what a fresh copy of the data looks like to the run
    data = read_run(run).prepared_data()
    assert data.source.fingerprint == json.loads((run / "config.json").read_text())["data"]["target"]["fingerprint"]
    victim = next((root / "images").rglob("*.png"))
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    with pytest.raises(MedimgError, match="has changed since"):
        read_run(run).prepared_data()


def test_a_run_recorded_before_content_fingerprints_is_checked_by_its_split_and_test_labels(folder_run):
    """Older runs recorded a fingerprint of paths and times, which every copy changes: their split and test labels
    must match instead."""
    root, run = folder_run
    config = json.loads((run / "config.json").read_text())
    target = config["data"]["target"]
    del target["fingerprint_of"]
    target["fingerprint"] = "0" * 64
    (run / "config.json").write_text(json.dumps(config))
    assert read_run(run).prepared_data().source.fingerprint != target["fingerprint"]  # read back all the same
    predictions = pd.read_csv(run / "predictions.csv")
    classes = sorted(set(predictions["true"]))
    predictions.loc[0, "true"] = next(c for c in classes if c != predictions.loc[0, "true"])
    predictions.to_csv(run / "predictions.csv", index=False)
    with pytest.raises(MedimgError, match="is not the data"):
        read_run(run).prepared_data()
