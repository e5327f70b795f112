"""Folders as people lay them out (issue #31): by split, with the clutter of macOS and Windows, labels.csv saved by
Excel on a European locale or in another encoding, and transparent images on a grey study. Every input generated."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import assert_one_line_error, run_cli
from medimg.data import DataConfig, describe, open_dataset, prepare
from medimg.data.cache import load_images


def _grey(value: int, size: int = 24, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed * 1000 + value)
    return Image.fromarray(np.clip(value + rng.integers(-30, 30, (size, size)), 0, 255).astype(np.uint8))


def write_by_split(root, per: int = 4) -> list[tuple[str, str]]:
    """``root/images/{train,val,test}/{benign,malignant}/*.png``; returns (path, class) rows."""
    rows = []
    for split in ("train", "val", "test"):
        for k, cls in enumerate(("benign", "malignant")):
            folder = root / "images" / split / cls
            folder.mkdir(parents=True)
            for i in range(per):
                _grey(60 + 120 * k, seed=i + 10 * len(rows)).save(folder / f"{i}.png")
                rows.append((f"images/{split}/{cls}/{i}.png", cls))
    return rows


def test_a_folder_laid_out_by_split_is_refused_naming_the_layout_and_the_fix(tmp_path):
    write_by_split(tmp_path / "ds")
    done = run_cli("describe", str(tmp_path / "ds"))
    assert_one_line_error(done, "is laid out by split", "test/, train/, val/ each hold benign/, malignant/",
                          f"move the images to {tmp_path / 'ds' / 'images'}/<class>/", "labels.csv")


def test_the_same_folder_with_a_labels_csv_reads_the_real_classes(tmp_path):
    rows = write_by_split(tmp_path / "ds")
    (tmp_path / "ds" / "labels.csv").write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in rows))
    source = open_dataset(tmp_path / "ds")
    assert source.classes == ("benign", "malignant") and len(source.records) == 24


def test_batches_repeated_within_class_folders_are_read_with_a_warning(tmp_path):
    for cls in ("benign", "malignant"):
        for batch in ("2019", "2020"):
            (tmp_path / "images" / cls / batch).mkdir(parents=True)
            for i in range(3):
                _grey(100, seed=i).save(tmp_path / "images" / cls / batch / f"{i}.png")
    with pytest.warns(UserWarning, match=r"benign/, malignant/ each hold 2019/, 2020/; the top folders are read as "
                                         r"the classes"):
        source = open_dataset(tmp_path)
    assert source.classes == ("benign", "malignant")


def test_operating_system_clutter_is_skipped_never_a_stop(tmp_path, recwarn):
    for cls in ("a", "b"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(4):
            _grey(50 if cls == "a" else 200, seed=i).save(tmp_path / "images" / cls / f"{i}.png")
        (tmp_path / "images" / cls / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(100))
        (tmp_path / "images" / cls / "._0.png").write_bytes(b"\0\5\26\7" + bytes(80))  # AppleDouble: no PNG
        (tmp_path / "images" / cls / "Thumbs.db").write_bytes(bytes(64))
        (tmp_path / "images" / cls / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (tmp_path / "images" / "__MACOSX" / "a").mkdir(parents=True)  # as a zip made on a Mac unpacks
    (tmp_path / "images" / "__MACOSX" / "a" / "._0.png").write_bytes(b"\0\5\26\7" + bytes(80))
    info = describe(prepare(DataConfig(str(tmp_path), size=16), progress=False))
    assert info["classes"] == ["a", "b"] and info["n_images"] == 8 and info["not_images"]["n"] == 0
    assert [str(w.message) for w in recwarn if "not images" in str(w.message)] == []


def _write_classes(root, n: int = 6):
    rows = []
    for k, cls in enumerate(("bénin", "malin")):  # accented, as a French export names them
        (root / "images").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"images/{cls}_{i}.png"
            _grey(60 + 120 * k, seed=i).save(root / name)
            rows.append((name, cls))
    return rows


@pytest.mark.parametrize("separator", [",", ";", "\t"])
def test_labels_csv_separated_by_commas_semicolons_or_tabs_reads_the_same(tmp_path, separator):
    rows = _write_classes(tmp_path)
    # Excel's European CSV: semicolons, a byte-order mark, CRLF line ends, a quoted field
    text = f"path{separator}label{separator}note\r\n" + "".join(
        f'{p}{separator}{c}{separator}"a; b, c"\r\n' for p, c in rows)
    (tmp_path / "labels.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    source = open_dataset(tmp_path)
    assert source.classes == ("bénin", "malin")
    assert [(r.id, source.classes[r.label]) for r in source.records] == rows


@pytest.mark.parametrize("encoding, said", [("cp1252", "Windows-1252 (Latin-1), as Excel's 'CSV (Comma delimited)'"),
                                            ("utf-16", "UTF-16 (Excel's 'Unicode Text')"),
                                            ("utf-16-le", "UTF-16 (Excel's 'Unicode Text')")])  # no byte-order mark
def test_labels_csv_in_another_encoding_names_it_and_the_excel_choice(tmp_path, encoding, said):
    rows = _write_classes(tmp_path)
    (tmp_path / "labels.csv").write_bytes(("path;label\n" + "".join(f"{p};{c}\n" for p, c in rows)).encode(encoding))
    done = run_cli("describe", str(tmp_path))
    assert_one_line_error(done, str(tmp_path / "labels.csv"), said, "'CSV UTF-8 (Comma delimited)'")


def test_transparency_on_a_grey_study_is_laid_on_black_counted_and_blank_images_named(tmp_path, cache_dir):
    """Palette with tRNS, LA and RGBA (grey values), partly and fully transparent: the alpha is laid on black (value
    times alpha), describe counts the images that carried it, and an image blank after flattening is named."""
    value, alpha = 200, 128
    for cls in ("a", "b"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(3):
            _grey(80 if cls == "a" else 160, seed=i).save(tmp_path / "images" / cls / f"plain{i}.png")
    grey = np.full((24, 24), value, np.uint8)
    grey[:, :4] = 255  # not flat: a bright band
    la = Image.fromarray(np.dstack([grey, np.full((24, 24), alpha, np.uint8)]), "LA")
    la.save(tmp_path / "images" / "a" / "half.png")
    rgba = np.zeros((24, 24, 4), np.uint8)
    rgba[..., :3] = 90
    rgba[:12, ..., 3] = 255  # top half opaque, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "images" / "b" / "top.png")
    gone = Image.fromarray(np.full((24, 24), 7, np.uint8), "L").convert("P")
    gone.info["transparency"] = gone.getpixel((0, 0))
    gone.save(tmp_path / "images" / "b" / "gone.png", transparency=gone.getpixel((0, 0)))  # every pixel transparent
    with pytest.warns(UserWarning, match=r"1 image\(s\) are one flat value as decoded .*images/b/gone.png "
                                         r"\(it carried transparency\)"):
        data = prepare(DataConfig(str(tmp_path), size=24), progress=False)
    info = describe(data)
    assert info["modality"] == "grey"
    assert info["transparency"]["n"] == 3 and info["transparency"]["blank"] == ["images/b/gone.png"]
    ids = list(data.decoded.ids)
    images = np.asarray(data.decoded.images)[..., 0]
    half = images[ids.index("images/a/half.png")].astype(int)
    assert abs(half[:, 8:] - round(value * alpha / 255)).max() <= 1 and abs(half[:, :2] - 128).max() <= 1
    top = images[ids.index("images/b/top.png")]
    assert (top[:10] >= 85).all() and (top[14:] == 0).all()
    assert (images[ids.index("images/b/gone.png")] == 0).all()
    text = run_cli("describe", str(tmp_path), "--size", "24")
    assert text.returncode == 0 and "transparency: 3 image(s) carried it, laid on black" in text.stdout
    assert "blank (one flat value as decoded): 1 image(s): images/b/gone.png" in text.stdout
    assert "medimg: warning: 1 image(s) are one flat value" in text.stderr  # said again when read from the cache
    assert json.loads((next((cache_dir / "images").iterdir()) / "meta.json").read_text())["transparent"].count(True) == 3
