import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from medimg.data import DataConfig, describe, load_images, open_dataset, prepare
from medimg.data.synthetic import SHAPES, write_image_folder


def test_describe_busi_by_path(shared_data):
    result = run_cli("describe", str(shared_data / "busi_256"), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["name"] == "busi_256"  # a path to a registered folder is that dataset
    assert info["classes"] == ["benign", "malignant", "normal"]
    assert info["per_class"] == {"benign": 437, "malignant": 210, "normal": 133}
    assert sum(info["splits"][s]["n"] for s in ("train", "val", "test")) == 780
    assert info["modality"] == "grey" and info["stored_modes"] == {"RGB": 780}
    assert [d["ids"] for d in info["duplicates"]] == [["images/benign/benign (433).png",
                                                        "images/malignant/malignant (145).png"]]
    assert len(info["duplicates"][0]["splits"]) == 1  # the pair shares a split


def test_mixed_modes_formats_and_nesting(tmp_path):
    root = write_image_folder(tmp_path / "mixed", n_per_class=8, size=40, nested=True,
                              formats=("png", "jpg", "tif", "bmp"), modes=("RGB", "L", "RGBA", "P", "CMYK", "I;16"))
    info = describe(prepare(DataConfig(str(root), size=32), progress=False))
    assert info["classes"] == sorted(SHAPES)
    assert info["per_class"] == {c: 8 for c in SHAPES}
    assert info["n_images"] == 24 and info["channels"] == 3  # colour images present -> colour
    assert set(info["stored_modes"]) >= {"RGB", "L", "RGBA", "P", "CMYK"}
    nested = [r for r in open_dataset(root).records if r.id.count("/") == 3]
    assert nested, "images one folder deeper are found"


def test_mixed_sizes_are_resized(tmp_path):
    for i, (w, h) in enumerate([(30, 20), (64, 64), (100, 37), (17, 90)]):
        for cls in ("a", "b"):
            (tmp_path / "images" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((h, w), 40 * i + (cls == "b") * 5, np.uint8)).save(tmp_path / "images" / cls / f"{i}.png")
    decoded = load_images(open_dataset(tmp_path), 24, progress=False)
    assert decoded.images.shape == (8, 24, 24, 1)
    assert sorted(set(decoded.original_sizes)) == [(17, 90), (30, 20), (64, 64), (100, 37)]


def test_grey_folder_stays_grey_and_16_bit_is_mapped_by_its_bit_depth(tmp_path):
    for cls in ("x", "y"):
        (tmp_path / cls).mkdir()
        ramp = (np.arange(32 * 32).reshape(32, 32) * 3 + 1000).astype(np.uint16)  # a 12-bit-ish range
        Image.fromarray(ramp).save(tmp_path / cls / "ramp.png")
        Image.fromarray(np.full((32, 32), 200, np.uint8), "L").convert("RGB").save(tmp_path / cls / "grey_rgb.png")
    decoded = load_images(open_dataset(tmp_path), 32, progress=False)
    assert decoded.channels == 1
    ramp = decoded.images[decoded.ids.index("x/ramp.png"), ..., 0]
    # 12-bit data (at most 4069): 0..4095 -> 0..255 for the whole dataset, not truncated to its low byte
    assert (ramp.min(), ramp.max()) == (round(1000 * 255 / 4095), round(4069 * 255 / 4095))
    assert np.all(np.diff(ramp.astype(int).ravel()[::40]) >= 0)


def test_labels_csv_decides_classes_and_groups(tmp_path):
    root = write_image_folder(tmp_path / "csv", n_per_class=6, labels_csv=True)
    rows = (root / "labels.csv").read_text().splitlines()
    # one patient with images in two classes' rows must end up in one split
    header, body = rows[0] + ",patient_id", [r + f",p{i % 5}" for i, r in enumerate(rows[1:])]
    (root / "labels.csv").write_text("\n".join([header, *body]) + "\n")
    data = prepare(DataConfig(str(root), size=16), progress=False)
    by_patient = {}
    for r in data.source.records:
        by_patient.setdefault(r.group, set()).add(data.split.assignment[r.id])
    assert all(len(s) == 1 for s in by_patient.values())


@pytest.mark.parametrize("name", ["busi_256", "iq_othnccd_lung_ct", "ham10000_224", "ham10000_224_large",
                                  "eye_diseases_fundus_400", "bccd_wbc_640"])
def test_every_shared_folder_loads_by_name(shared_data, name):
    data = prepare(DataConfig(name, size=16), progress=False)
    csv_rows = (shared_data / name / "labels.csv").read_text().splitlines()[1:]
    assert len(data.decoded.ids) == len(csv_rows)
    assert data.decoded.channels == data.source.spec.channels
    declared = sum(1 for r in data.source.records if r.duplicate_of)
    info = describe(data)
    assert sum(len(g["ids"]) - 1 for g in info["duplicates"]) >= declared
    assert info["duplicates_across_splits"] == 0
    # near-duplicates (neighbouring slices, repeated frames) are grouped: none straddles the split
    near = info["near_duplicates"]
    assert near["grouped"] and near["max_distance"] == 8 and near["across_splits"] == 0
    assert json.loads(data.split.path.read_text())["near_duplicates"]["max_distance"] == 8
    assert info["not_images"]["n"] == 0 and info["exif_rotated"] == 0 and info["intensity"]["rule"] == "none"


def test_busi_near_duplicates_would_have_straddled_the_old_split(shared_data):
    info = describe(prepare(DataConfig("busi_256", size=16), progress=False))
    near = info["near_duplicates"]
    # repeated frames of one patient: 27 pairs within 8 bits, 11 of which an exact-only split put apart
    assert (near["pairs"], near["across_splits"], near["across_without_grouping"]) == (27, 0, 11)
    assert info["per_class"] == {"benign": 437, "malignant": 210, "normal": 133}
