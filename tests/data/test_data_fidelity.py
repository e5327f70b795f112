"""What a user's folder holds is what the model sees, or a clear refusal (issue #10).

Every input is generated here with numpy and Pillow: EXIF-rotated JPEGs, 16-bit and signed images,
WebP files beside PNGs, spreadsheet-written labels.csv files, shifted and noised copies.
"""
import json
import unicodedata

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from medimg.data import DataConfig, describe, load_images, open_dataset, prepare
from medimg.data.synthetic import write_image_folder
from medimg.errors import MedimgError, MedimgWarning

EXIF_ORIENTATION = 0x0112


# --- EXIF orientation --------------------------------------------------------------------------

def _upright(cls: int, i: int) -> np.ndarray:
    """A 40 x 60 (height x width) grey image, bright in its top-left quarter (and a class-dependent level)."""
    a = np.full((40, 60), 30 + 20 * cls + i, np.uint8)
    a[:20, :30] = 230
    return a


@pytest.mark.parametrize("orientation, stored_as", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)])
def test_exif_orientation_is_applied(tmp_path, orientation, stored_as):
    for cls in (0, 1):
        (tmp_path / "images" / f"c{cls}").mkdir(parents=True)
        for i in range(3):
            upright = Image.fromarray(_upright(cls, 3 * i))
            stored = upright.transpose(stored_as)  # the camera's sensor order: sideways
            exif = Image.Exif()
            exif[EXIF_ORIENTATION] = orientation
            stored.convert("RGB").save(tmp_path / "images" / f"c{cls}" / f"{i}.jpg", exif=exif, quality=95)
    data = prepare(DataConfig(str(tmp_path), size=20), progress=False)
    image = np.asarray(data.decoded.images[0, ..., 0], dtype=int)
    # what every viewer shows: bright top-left, dark bottom-right
    assert image[2, 2] > 200 and image[-3, -3] < 80, image
    info = describe(data)
    assert info["exif_rotated"] == 6 and info["duplicates"] == []
    assert info["image_sizes"] == {"60x40": 6}  # displayed (width x height), not the stored 40x60


# --- intensities beyond 8 bits -----------------------------------------------------------------

def _sixteen_bit_folder(root, *, low=(600, 1000), high=(2800, 3200), n=4, seed=0):
    """A 12-bit export in 16-bit PNGs: class 'low' around 600-1000, class 'high' around 2800-3200 of 4095."""
    rng = np.random.default_rng(seed)
    stored = {}
    for name, (lo, hi) in (("low", low), ("high", high)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            a = rng.integers(lo, hi, (32, 32)).astype(np.uint16)
            Image.fromarray(a).save(root / name / f"{i}.png")
            stored.setdefault(name, []).append(a)
    return {k: float(np.mean(v)) for k, v in stored.items()}


def _class_means(decoded, classes=("low", "high")):
    return {c: float(np.mean([decoded.images[i] for i, id_ in enumerate(decoded.ids) if id_.startswith(c + "/")]))
            for c in classes}


def test_sixteen_bit_classes_keep_their_ratio(tmp_path):
    stored = _sixteen_bit_folder(tmp_path / "d")
    decoded = load_images(open_dataset(tmp_path / "d"), 32, progress=False)
    means = _class_means(decoded)
    # one mapping for the dataset (12 bits: 0..4095 -> 0..255), not a stretch per image
    assert decoded.intensity["rule"] == "bit-depth" and decoded.intensity["bits"] == 12
    assert means["high"] / means["low"] == pytest.approx(stored["high"] / stored["low"], rel=0.01)
    assert means["low"] == pytest.approx(stored["low"] * 255 / 4095, abs=0.6)
    # the old per-image stretch erases the class signal; it is still there when asked for
    stretched = _class_means(load_images(open_dataset(tmp_path / "d"), 32, intensity="per-image", progress=False))
    assert abs(stretched["high"] - stretched["low"]) < 10


def test_signed_ct_uses_the_dataset_range_or_a_window(tmp_path):
    root = tmp_path / "ct"
    values = {"air": -900, "tissue": 40}  # Hounsfield units
    for name, hu in values.items():
        (root / name).mkdir(parents=True)
        for i in range(3):
            a = np.full((24, 24), hu + 10 * i, np.int32)
            a[0, 0] = -1000 if name == "air" else 1000  # the dataset's range: -1000 .. 1000
            Image.fromarray(a, "I").save(root / name / f"{i}.tif")
    decoded = load_images(open_dataset(root), 24, progress=False)
    assert decoded.intensity["rule"] == "dataset-range"
    assert (decoded.intensity["low"], decoded.intensity["high"]) == (-1000, 1000)
    i = decoded.ids.index("tissue/0.tif")
    assert decoded.images[i, 12, 12, 0] == round((40 + 1000) * 255 / 2000)  # 134, the same for every image
    windowed = load_images(open_dataset(root), 24, intensity="window:40,400", progress=False)
    assert windowed.path != decoded.path  # the setting is part of the cache key
    assert abs(int(windowed.images[i, 12, 12, 0]) - 127.5) <= 0.5  # the window's centre: half of 255
    assert windowed.images[windowed.ids.index("air/0.tif"), 12, 12, 0] == 0  # below the window


def test_intensity_setting_is_recorded_and_part_of_the_cache_key(tmp_path):
    _sixteen_bit_folder(tmp_path / "d")
    source = open_dataset(tmp_path / "d")
    first = load_images(source, 32, progress=False)
    again = load_images(source, 32, progress=False)
    other = load_images(source, 32, intensity="per-image", progress=False)
    assert again.path == first.path and other.path != first.path
    assert not np.array_equal(np.asarray(other.images), np.asarray(first.images))
    meta = json.loads((first.path / "meta.json").read_text())
    assert meta["intensity"]["rule"] == "bit-depth" and meta["version"] >= 2
    result = run_cli("describe", str(tmp_path / "d"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["intensity"]["bits"] == 12
    bad = run_cli("describe", str(tmp_path / "d"), "--intensity", "window:40")
    assert bad.returncode == 2 and "window:LEVEL,WIDTH" in bad.stderr


# --- files that are images, and files that are not ----------------------------------------------

def test_webp_files_are_read_and_other_files_are_named(tmp_path):
    root = write_image_folder(tmp_path / "w", n_per_class=6, size=24, formats=("png", "webp"))
    assert len(list(root.rglob("*.webp"))) == 9
    (root / "images" / "disc" / "notes.txt").write_text("scanned on Tuesday")
    with pytest.warns(MedimgWarning, match=r"1 file\(s\) are not images .*notes.txt"):
        source = open_dataset(root)
    assert len(source.records) == 18
    info = describe(prepare(DataConfig(str(root), size=16), progress=False))
    assert info["n_images"] == 18 and info["not_images"] == {"n": 1, "first": ["images/disc/notes.txt"]}
    result = run_cli("describe", str(root))
    assert result.returncode == 0 and "medimg: warning:" in result.stderr and "notes.txt" in result.stderr


# --- labels.csv as spreadsheets write it ---------------------------------------------------------

def _csv_folder(root, header: str, labels: list[str]):
    (root / "images").mkdir(parents=True)
    rows = [header]
    for i, label in enumerate(labels):
        Image.fromarray(np.full((16, 16), 20 * i % 255, np.uint8)).save(root / "images" / f"{i}.png")
        rows.append(f"images/{i}.png,{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_labels_csv_with_stray_spaces_and_unicode_forms(tmp_path):
    naive_nfc, naive_nfd = unicodedata.normalize("NFC", "naïve"), unicodedata.normalize("NFD", "naïve")
    labels = ["benign", " benign", "benign ", naive_nfc, naive_nfd, f" {naive_nfd} "]
    source = open_dataset(_csv_folder(tmp_path / "c", "path, label", labels))
    assert source.classes == ("benign", naive_nfc)
    assert np.bincount(source.labels).tolist() == [3, 3]


def test_labels_that_differ_invisibly_are_refused(tmp_path):
    root = _csv_folder(tmp_path / "z", "path,label", ["benign", "benign\u200b", "malignant", "malignant"])
    with pytest.raises(MedimgError, match=r"'benign' and 'benign\\u200b'"):
        open_dataset(root)


def test_missing_column_lists_the_columns_found(tmp_path):
    root = _csv_folder(tmp_path / "m", "path,diagnosis", ["a", "b"])
    with pytest.raises(MedimgError, match=r"lacks the column\(s\) label \(its header, read as separated by commas, has 'path', 'diagnosis'\)"):
        open_dataset(root)


# --- near-duplicates ------------------------------------------------------------------------------

def _texture(rng, size: int) -> np.ndarray:
    """A smooth random grey texture (5 x 5 noise upsampled), ``size + 4`` pixels square."""
    coarse = rng.uniform(0, 255, (5, 5)).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size + 4, size + 4), Image.Resampling.BICUBIC), dtype=float)


def _near_duplicate_folder(root, originals=6, copies=3, size=256, seed=0):
    """Originals and copies shifted by a pixel (as neighbouring slices or frames are) with noise added."""
    rng = np.random.default_rng(seed)
    families = {}
    for k in range(originals):
        cls = ("a", "b")[k % 2]
        (root / cls).mkdir(parents=True, exist_ok=True)
        big = _texture(rng, size)
        names = []
        for c in range(copies + 1):
            dy, dx = (0, 0) if c == 0 else ((1, 0), (0, 1), (1, 1))[(c - 1) % 3]
            window = big[2 + dy:2 + dy + size, 2 + dx:2 + dx + size]
            noisy = window + (rng.normal(0, 2, window.shape) if c else 0)
            name = f"{cls}/orig{k}_copy{c}.png"
            Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(root / name)
            names.append(name)
        families[k] = names
    return families


def test_shifted_and_noised_copies_land_in_their_originals_split(tmp_path):
    root = tmp_path / "nd"
    families = _near_duplicate_folder(root)
    for seed in range(4):
        data = prepare(DataConfig(str(root), size=32, split_seed=seed), progress=False)
        for names in families.values():
            assert len({data.split.assignment[n] for n in names}) == 1, (seed, names)
    info = describe(data)
    near = info["near_duplicates"]
    assert near["max_distance"] == 8 and near["across_splits"] == 0
    assert sorted(map(sorted, near["groups"])) == sorted(sorted(v) for v in families.values())
    saved = json.loads(data.split.path.read_text())
    assert saved["near_duplicates"]["max_distance"] == 8
    # without the grouping the copies are spread over the splits, as they were before
    exact_only = prepare(DataConfig(str(root), size=32, split_seed=0, near_duplicate_distance=None), progress=False)
    assert any(len({exact_only.split.assignment[n] for n in names}) > 1 for names in families.values())
    assert describe(exact_only)["near_duplicates"]["across_splits"] > 0


def test_a_class_without_test_images_is_warned_about(tmp_path):
    root = write_image_folder(tmp_path / "r", n_per_class=12, size=16)
    rare = root / "images" / "rare"
    rare.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(rare / f"{i}.png")
    with pytest.warns(MedimgWarning, match=r"class 'rare' has 2 image\(s\) and none in val.*at least 6 images"):
        prepare(DataConfig(str(root), size=16), progress=False)


def test_class_folders_that_read_the_same_are_one_class(tmp_path):
    nfc, nfd = unicodedata.normalize("NFC", "naïve"), unicodedata.normalize("NFD", "naïve")
    for i, folder in enumerate([nfc, nfd, "plaque", "plaque "]):
        (tmp_path / folder).mkdir()
        for j in range(3):
            Image.fromarray(np.full((16, 16), 40 * i + 5 * j, np.uint8)).save(tmp_path / folder / f"{j}.png")
    with pytest.warns(MedimgWarning, match="read as one name and are one class"):
        source = open_dataset(tmp_path)
    assert source.classes == (nfc, "plaque")
    assert np.bincount(source.labels).tolist() == [6, 6]


def test_labels_csv_rows_images_and_folders(tmp_path):
    root = _csv_folder(tmp_path / "u", "path,label", ["Cat", "cat", "cat", "dog"])
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "images" / "unlisted.png")
    with pytest.warns(MedimgWarning) as caught:
        source = open_dataset(root)
    messages = " | ".join(str(w.message) for w in caught)
    assert "does not list 1 of the images" in messages and "images/unlisted.png" in messages
    assert "'Cat' and 'cat', which differ only in case" in messages
    assert source.classes == ("Cat", "cat", "dog") and len(source.records) == 4
    # an empty label is refused, naming its line
    empty = _csv_folder(tmp_path / "e", "path,label", ["a", "", "b"])
    with pytest.raises(MedimgError, match="line 3 has no label"):
        open_dataset(empty)
    # images in folders that are not classes (images/all/...): labels.csv decides the classes
    nested = tmp_path / "n"
    (nested / "images" / "all").mkdir(parents=True)
    rows = ["path,label"]
    for i, label in enumerate(["benign", "malignant"] * 2):
        Image.fromarray(np.full((16, 16), 60 * i, np.uint8)).save(nested / "images" / "all" / f"{i}.png")
        rows.append(f"images/all/{i}.png,{label}")
    (nested / "labels.csv").write_text("\n".join(rows) + "\n")
    assert open_dataset(nested).classes == ("benign", "malignant")
