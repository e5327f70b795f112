import json

import pytest

from conftest import run_cli
from medimg.data import REGISTRY, check_lineage, open_dataset
from medimg.errors import MedimgError

SHARED_FOLDERS = ["busi_256", "iq_othnccd_lung_ct", "ham10000_224", "ham10000_224_large",
                  "eye_diseases_fundus_400", "bccd_wbc_640"]
PAPER = ["vindr_cxr", "oasis_mri", "ct_kidney", "busi", "iq_othnccd", "odir2019", "isic2019", "kvasir_v2", "eyepacs"]
MEDMNIST_2D = ["pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist", "breastmnist",
               "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist"]


def test_every_dataset_is_registered_with_its_facts():
    for name in SHARED_FOLDERS + PAPER + MEDMNIST_2D:
        spec = REGISTRY[name]
        assert spec.modality in ("grey", "colour") and spec.citation and spec.licence and spec.lineage
    assert all(REGISTRY[n].paper and "download from http" in REGISTRY[n].obtain for n in PAPER)
    assert {REGISTRY[n].modality for n in ("busi_256", "iq_othnccd_lung_ct", "breastmnist", "pneumoniamnist")} == {"grey"}
    assert {REGISTRY[n].modality for n in ("ham10000_224", "eye_diseases_fundus_400", "bccd_wbc_640", "retinamnist")} == {"colour"}


def test_shared_class_lists_match_labels_csv(shared_data):
    import csv

    for name in SHARED_FOLDERS:
        with open(shared_data / name / "labels.csv") as fh:
            by_index = {int(r["label_index"]): r["label"] for r in csv.DictReader(fh)}
        # the same classes in labels.csv's label_index order (indices may skip absent classes)
        assert list(REGISTRY[name].classes) == [by_index[i] for i in sorted(by_index)], name


def test_paper_dataset_not_downloaded_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIMG_DATA_DIR", str(tmp_path))
    with pytest.raises(MedimgError, match=r"kvasir_v2.*datasets\.simula\.no.*images/<class>"):
        open_dataset("kvasir_v2")


def test_paper_dataset_loads_by_name_once_arranged(tmp_path, monkeypatch):
    from medimg.data.synthetic import write_image_folder

    write_image_folder(tmp_path / "ct_kidney", n_per_class=3, size=16, colour=False)
    monkeypatch.setenv("MEDIMG_DATA_DIR", str(tmp_path))
    source = open_dataset("ct_kidney")
    assert source.spec.paper and len(source.records) == 9 and source.classes == ("cross", "disc", "square")


def test_lineage_refuses_overlapping_pairs(shared_data):
    breast, busi = open_dataset("breastmnist"), open_dataset("busi_256")
    with pytest.raises(MedimgError, match="busi_256 and breastmnist share images from busi.*--allow-overlap"):
        check_lineage([busi, breast], purpose="double fine-tuning of breastmnist")
    recorded = check_lineage([busi, breast], purpose="x", allow_overlap=True)
    assert recorded.overridden and "busi" in recorded.overlaps[0]
    ham, ham_large = open_dataset("ham10000_224"), open_dataset("ham10000_224_large")
    assert not check_lineage([ham_large, ham], purpose="x").overlaps  # lesion-disjoint subsets
    assert not check_lineage([open_dataset("pneumoniamnist"), breast], purpose="x").overlaps


def test_lineage_catches_identical_files_in_unregistered_folders(tmp_path):
    from medimg.data.synthetic import write_image_folder

    a = write_image_folder(tmp_path / "a", n_per_class=2, size=16)
    b = write_image_folder(tmp_path / "b", n_per_class=2, size=16, seed=5)
    same = (a / "images" / "disc" / "img0000.png").read_bytes()
    (b / "images" / "disc" / "stolen.png").write_bytes(same)
    sa, sb = open_dataset(a), open_dataset(b)
    import hashlib

    hashes = {s.name: {hashlib.sha256(r.path.read_bytes()).hexdigest() for r in s.records} for s in (sa, sb)}
    with pytest.raises(MedimgError, match="1 identical image files"):
        check_lineage([sa, sb], purpose="SSL pretraining", hashes=hashes)


def test_datasets_command_lists_availability(shared_data):
    result = run_cli("datasets", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["breastmnist"]["available"] == "28px" and rows["busi_256"]["available"] == "yes"
    assert rows["kvasir_v2"]["available"] == "missing" and rows["synthetic_grey"]["available"] == "generated"
    table = run_cli("datasets").stdout.splitlines()
    assert table[0].split()[:3] == ["name", "kind", "modality"] and len(table) == len(rows) + 1
