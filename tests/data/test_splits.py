import json

import numpy as np
import pytest

from medimg.data import DataConfig, load_images, make_split, open_dataset, prepare
from medimg.data.synthetic import write_image_folder
from medimg.errors import MedimgError


def test_stratified_split_is_seeded_and_proportional():
    a = prepare(DataConfig("synthetic_colour", size=16, split_seed=1), progress=False)
    b = prepare(DataConfig("synthetic_colour", size=16, split_seed=1), progress=False)
    c = prepare(DataConfig("synthetic_colour", size=16, split_seed=2), progress=False)
    assert a.split.assignment == b.split.assignment
    assert a.split.assignment != c.split.assignment
    labels = a.decoded.labels
    for s, share in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        idx = a.split.indices(s, a.decoded.ids)
        for k in range(3):  # every class in every split, in proportion
            assert abs((labels[idx] == k).sum() - share * 100) <= 1


def test_duplicates_and_groups_never_cross_splits(shared_data):
    data = prepare(DataConfig("iq_othnccd_lung_ct", size=16), progress=False)
    by_hash = {}
    for id_, h in zip(data.decoded.ids, data.decoded.sha256):
        by_hash.setdefault(h, set()).add(data.split.assignment[id_])
    assert sum(len(v) > 1 for v in by_hash.values()) == 0
    assert len(data.decoded.ids) - len(by_hash) == 24  # the 24 flagged duplicates


def test_equal_content_found_without_labels_csv(tmp_path):
    root = write_image_folder(tmp_path / "d", n_per_class=10, size=16)
    first = sorted((root / "images" / "disc").glob("*.png"))
    for i, src in enumerate(first[:4]):  # copies in another class folder, same bytes
        (root / "images" / "cross" / f"copy{i}.png").write_bytes(src.read_bytes())
    for seed in range(5):
        data = prepare(DataConfig(str(root), size=16, split_seed=seed), progress=False)
        for i, src in enumerate(first[:4]):
            a, b = src.relative_to(root).as_posix(), f"images/cross/copy{i}.png"
            assert data.split.assignment[a] == data.split.assignment[b]


def test_split_file_is_reused_and_guards_against_changes(tmp_path):
    root = write_image_folder(tmp_path / "d", n_per_class=10, size=16)
    data = prepare(DataConfig(str(root), size=16), progress=False)
    path = data.split.path
    saved = json.loads(path.read_text())
    assert sorted(sum(saved["ids"].values(), [])) == sorted(data.decoded.ids)
    # a rerun at another size reads the same file
    assert prepare(DataConfig(str(root), size=24), progress=False).split.assignment == data.split.assignment
    # a new image would silently change the split: refused
    (root / "images" / "disc" / "new.png").write_bytes((root / "images" / "disc" / "img0000.png").read_bytes())
    with pytest.raises(MedimgError, match="split file .* was made for other images"):
        prepare(DataConfig(str(root), size=16), progress=False)


def test_bad_ratios():
    source = open_dataset("synthetic_grey")
    with pytest.raises(MedimgError, match="three positive numbers"):
        make_split(source, load_images(source, 16, progress=False), ratios=(0.8, 0.3, 0.1))


def test_official_split_can_be_ignored(shared_data):
    source = open_dataset("breastmnist")
    decoded = load_images(source, 28, progress=False)
    split = make_split(source, decoded, official=False, seed=3)
    assert split.method == "stratified-group"
    assert np.isclose(split.counts()["test"] / len(decoded.ids), 0.2, atol=0.01)
