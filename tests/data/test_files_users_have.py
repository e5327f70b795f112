"""The files, names and layouts users actually have (issue #22): what a viewer shows, or a one-line refusal naming
the file and the fix. Every input is generated here (numpy, Pillow, OpenCV, and pydicom's own small test files)."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import assert_one_line_error, files_under, run_cli
from medimg.data import DataConfig, describe, load_images, open_dataset, prepare
from medimg.data.synthetic import write_image_folder
from medimg.errors import MedimgError, MedimgWarning


def _two_class_folder(root, write, n=4):
    """``root/<low|high>/<i>.<ext>`` written by ``write(path_without_suffix, class_index, i)``."""
    for k, name in enumerate(("low", "high")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write(root / name / str(i), k, i)
    return root


# --- 16-bit colour PNG -------------------------------------------------------------------------

def _png16(rgb_equal: bool):
    import cv2

    def write(stem, k, i):
        rng = np.random.default_rng(10 * k + i)
        grey = rng.integers(600 + 2200 * k, 1000 + 2200 * k, (24, 24)).astype(np.uint16)  # 12-bit data
        a = np.stack([grey, grey, grey], -1)
        if not rgb_equal:
            a[..., 2] = a[..., 2] // 2
        assert cv2.imwrite(f"{stem}.png", a)
    return write


def test_a_16_bit_colour_png_with_equal_channels_is_read_at_full_depth(tmp_path):
    folder = _two_class_folder(tmp_path / "ds", _png16(rgb_equal=True))
    assert Image.open(folder / "low" / "0.png").mode == "RGB"  # what Pillow alone makes of it: the high byte
    data = prepare(DataConfig(str(folder), size=16), progress=False)
    means = {c: data.decoded.images[data.decoded.labels == k].mean() for k, c in enumerate(data.classes)}
    # 12-bit data mapped by its bit depth (0..4095 -> 0..255): ~50 and ~190, not 3 grey levels
    assert 40 < means["low"] < 60 and 180 < means["high"] < 200, means
    info = describe(data)
    assert "8 image(s) stored beyond 8 bits (stored values" in info["intensity"]["text"] and "12-bit" in info["intensity"]["text"]
    assert data.decoded.images.shape[-1] == 1  # one grey channel, as the channels agree
    assert info["stored_modes"] == {"I;16 (16-bit RGB, channels equal)": 8}


def test_a_16_bit_colour_png_whose_channels_differ_is_refused_naming_it(tmp_path, cache_dir):
    folder = _two_class_folder(tmp_path / "ds", _png16(rgb_equal=False))
    result = run_cli("describe", str(folder))
    assert_one_line_error(result, "16-bit colour PNG", "0.png", "8-bit RGB")
    assert files_under(cache_dir / "images") == []


# --- several pages -----------------------------------------------------------------------------

def test_a_multi_page_tiff_is_refused_naming_the_file_and_how_to_split_it(tmp_path, cache_dir):
    folder = write_image_folder(tmp_path / "ds", n_per_class=3, size=16)
    victim = folder / "images" / "disc" / "pages.tif"
    pages = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (10, 200, 90)]
    pages[0].save(victim, save_all=True, append_images=pages[1:])
    assert_one_line_error(run_cli("describe", str(folder)), str(victim), "3 pages", "its own file")
    assert files_under(cache_dir / "images") == []


# --- links, names, labels.csv ------------------------------------------------------------------

def test_class_folders_that_are_links_are_followed_and_a_loop_is_refused(tmp_path):
    real = write_image_folder(tmp_path / "elsewhere", n_per_class=5, size=16)
    linked = tmp_path / "ds"
    linked.mkdir()
    for cls in ("disc", "square"):
        (linked / cls).symlink_to(real / "images" / cls, target_is_directory=True)
    source = open_dataset(str(linked))
    assert len(source.records) == 10 and sorted(source.classes) == ["disc", "square"]
    assert {r.id.split("/")[0] for r in source.records} == {"disc", "square"}
    (real / "images" / "disc" / "loop").symlink_to(linked, target_is_directory=True)
    with pytest.raises(MedimgError, match="again, reached through a link"):
        open_dataset(str(linked))


def test_labels_csv_spellings_of_one_file_are_one_file(tmp_path):
    folder = write_image_folder(tmp_path / "ds", n_per_class=3, size=16)
    files = sorted(p.relative_to(folder).as_posix() for p in (folder / "images").rglob("*.png"))
    rows = ["path,label"] + [f"{'./' if i % 2 else ''}{f.replace('/', '//', 1) if i % 3 == 0 else f},{f.split('/')[1]}"
                             for i, f in enumerate(files)]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    source = open_dataset(str(folder))
    assert sorted(r.id for r in source.records) == files  # each once, under its plain name
    first, label = files[0], files[0].split("/")[1]
    other = next(f.split("/")[1] for f in files if f.split("/")[1] != label)
    (folder / "labels.csv").write_text("\n".join(rows + [f"images/{other}/../{first.split('/', 1)[1]},{other}"]) + "\n")
    with pytest.raises(MedimgError, match=rf"lines 2 and {len(rows) + 1} both name {first} with the labels "
                                          rf"'{label}' and '{other}'"):
        open_dataset(str(folder))


def test_a_file_name_that_is_not_utf8_is_refused_in_one_line(tmp_path, cache_dir):
    folder = write_image_folder(tmp_path / "ds", n_per_class=3, size=16)
    good = next((folder / "images" / "disc").glob("*.png"))
    os.rename(os.fsencode(good), os.fsencode(good.parent) + b"/caf\xe9.png")  # Latin-1, as an old archive holds it
    assert_one_line_error(run_cli("describe", str(folder)), "caf\\xe9.png", "not valid UTF-8", "rename")
    assert files_under(cache_dir / "images") == []


# --- CT stored as HU + offset ------------------------------------------------------------------

def _ct_offset(stem, k, i):
    """A slice stored as HU + 1024 in a 16-bit PNG: air (-1000 HU) around a body (40 + 30 k HU)."""
    a = np.full((32, 32), -1000 + 1024, np.uint16)
    a[2:30, 2:30] = 40 + 30 * k + i + 1024  # the body fills most of the slice
    Image.fromarray(a).save(f"{stem}.png")


def test_a_window_that_whitens_the_body_is_warned_about_with_the_stored_range(tmp_path):
    folder = _two_class_folder(tmp_path / "ct", _ct_offset, n=6)
    with pytest.warns(MedimgWarning, match=r"maps .* to white \(stored values 24\.\.1099\).*window:1064,400"):
        data = prepare(DataConfig(str(folder), size=32, intensity="window:40,400"), progress=False)
    assert "stored values 24..1099" in describe(data)["intensity"]["text"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        right = prepare(DataConfig(str(folder), size=32, intensity="window:1064,400"), progress=False)
    assert not [w for w in seen if issubclass(w.category, MedimgWarning) and "intensity window" in str(w.message)]
    body = right.decoded.images[:, 16, 16, 0]
    assert 100 < body.min() and body.max() < 160  # soft tissue mid-grey, as a CT viewer shows it


# --- a split file and the contents it was made from --------------------------------------------

def test_a_split_is_made_again_when_files_were_replaced_under_the_same_names(tmp_path):
    folder = write_image_folder(tmp_path / "ds", n_per_class=10, size=16)
    first = prepare(DataConfig(str(folder), size=16, near_duplicate_distance=None), progress=False)
    train_id = next(i for i in first.decoded.ids if first.split.assignment[i] == "train")
    test_id = next(i for i in first.decoded.ids if first.split.assignment[i] == "test"
                   and first.decoded.labels[first.decoded.ids.index(i)] == first.decoded.labels[first.decoded.ids.index(train_id)])
    (folder / test_id).write_bytes((folder / train_id).read_bytes())  # the test image is now a copy of a train one
    with pytest.warns(MedimgWarning, match="changed since it was made"):
        again = prepare(DataConfig(str(folder), size=16, near_duplicate_distance=None), progress=False)
    assert again.split.assignment[train_id] == again.split.assignment[test_id]  # the copies share a split
    assert first.split.path == again.split.path


# --- DICOM -------------------------------------------------------------------------------------

def _dicom(name: str):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    return pydicom.dcmread(get_testdata_file(name))


def _dicom_folder(root, name: str, edit=None, n=3):
    """Two classes of copies of one of pydicom's test files, the second class brighter by 200 stored units."""
    for k, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            ds = _dicom(name)
            pixels = ds.pixel_array.astype(np.int32) + 200 * k + 3 * i
            ds.PixelData = pixels.astype(ds.pixel_array.dtype).tobytes()
            if edit:
                edit(ds)
            ds.save_as(root / cls / f"{i}.dcm")
    return root


def test_dicom_ct_is_read_in_hounsfield_units_through_the_window_given(tmp_path):
    folder = _dicom_folder(tmp_path / "ct", "CT_small.dcm")
    data = prepare(DataConfig(str(folder), size=32, intensity="window:40,400"), progress=False)
    ds = _dicom("CT_small.dcm")
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)  # -1024 offset
    expected = np.clip((hu - (40 - 200)) * 255 / 400, 0, 255)
    got = data.decoded.images[data.decoded.ids.index("a/0.dcm"), ..., 0].astype(float)
    shown = np.asarray(Image.fromarray(np.round(expected).astype(np.uint8)).resize((32, 32), Image.Resampling.BICUBIC))
    assert np.abs(got - shown).mean() < 2  # the same picture a viewer's soft-tissue window shows
    assert describe(data)["stored_modes"] == {"F (DICOM MONOCHROME2)": 6}


def test_dicom_monochrome1_is_inverted_and_the_header_window_used_under_auto(tmp_path):
    plain = prepare(DataConfig(str(_dicom_folder(tmp_path / "mr", "MR_small.dcm")), size=32), progress=False)
    ds = _dicom("MR_small.dcm")
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)  # 600, 1600 in its header
    expected = np.clip((ds.pixel_array - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255
    shown = np.asarray(Image.fromarray(np.round(expected).astype(np.uint8)).resize((32, 32), Image.Resampling.BICUBIC))
    assert np.abs(plain.decoded.images[plain.decoded.ids.index("a/0.dcm"), ..., 0].astype(float) - shown).mean() < 2

    def monochrome1(d):
        d.PhotometricInterpretation = "MONOCHROME1"

    inverted = prepare(DataConfig(str(_dicom_folder(tmp_path / "mr1", "MR_small.dcm", monochrome1)), size=32),
                       progress=False)
    a, b = plain.decoded.images.astype(int), inverted.decoded.images.astype(int)
    assert np.abs((255 - a) - b).mean() < 0.5  # the same picture, dark for light (resizing clips at 0 and 255)


def test_a_multi_frame_dicom_is_refused_like_a_multi_page_file(tmp_path, cache_dir):
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    folder = write_image_folder(tmp_path / "ds", n_per_class=3, size=16)
    victim = folder / "images" / "disc" / "dose.dcm"
    victim.write_bytes(open(get_testdata_file("rtdose.dcm"), "rb").read())
    assert_one_line_error(run_cli("describe", str(folder)), str(victim), "15 frames", "its own file")


# --- a very large image ------------------------------------------------------------------------

def test_an_image_over_the_pixel_limit_names_the_option_that_raises_it(tmp_path, cache_dir):
    folder = write_image_folder(tmp_path / "ds", n_per_class=3, size=40)
    result = run_cli("--max-image-pixels", "1000", "describe", str(folder))
    assert_one_line_error(result, "larger than the limit of 1,000 pixels", "--max-image-pixels")
    assert "DecompressionBomb" not in result.stderr
    assert run_cli("--max-image-pixels", "2000", "describe", str(folder)).returncode == 0
    source = open_dataset(str(folder))
    assert load_images(source, 16, progress=False).images.shape[0] == len(source.records)  # the default limit
