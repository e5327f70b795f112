"""A property of the folder reader, over trees Hypothesis makes up: every image is read exactly once with its label,
or the reader refuses in one line (:class:`MedimgError`) — and it refuses exactly the trees that hold a problem.

The trees vary what users' folders vary: class folders directly under the root or under ``images/``, linked in
from elsewhere, odd but legal names (spaces, accents composed or decomposed, other scripts, dots), every format
Pillow writes, grey and colour, and an optional ``labels.csv`` whose paths are spelt as people spell them
(``./x``, ``a//b``, ``a/../a/x``, decomposed Unicode). The one problem injected: a file listed twice with two labels.
"""
from __future__ import annotations

import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from medimg.data import load_images, open_dataset
from medimg.data.image_folder import normalise_text
from medimg.errors import MedimgError

CLASS_NAMES = ("benign", "malignant tumour", "caf\u00e9", "\u30af\u30e9\u30b9", "grade.2", "Zelle-\u00fc")
FILE_STEMS = ("a", "scan 01", "r\u00e9sum\u00e9", "\u753b\u50cf", "x.y.z", "IMG_0001", "f\u00fcnf", "-dash")
FORMATS = ("png", "jpg", "bmp", "tif", "gif", "webp")


@st.composite
def trees(draw):
    classes = draw(st.lists(st.sampled_from(CLASS_NAMES), min_size=2, max_size=3, unique=True))
    spelling = {c: draw(st.sampled_from(("NFC", "NFD", "trailing space"))) for c in classes}
    images = {c: draw(st.lists(st.tuples(st.sampled_from(FILE_STEMS), st.sampled_from(FORMATS),
                                         st.sampled_from(("L", "RGB"))), min_size=1, max_size=4,
                               unique_by=lambda t: t[0]))
              for c in classes}
    return dict(classes=classes, spelling=spelling, images=images,
                under_images=draw(st.booleans()), linked=draw(st.sets(st.sampled_from(classes))),
                labels_csv=draw(st.booleans()), path_style=draw(st.sampled_from(("plain", "./", "//", "..", "NFD"))),
                repeat_with_other_label=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


def _folder_name(name: str, spelling: str) -> str:
    return name + " " if spelling == "trailing space" else unicodedata.normalize(spelling, name)


def _spelt(rel: str, style: str) -> str:
    if style == "./":
        return "./" + rel
    if style == "//":
        return rel.replace("/", "//", 1)
    if style == "..":
        head, tail = rel.split("/", 1)
        return f"{head}/../{head}/{tail}"
    return unicodedata.normalize("NFD", rel) if style == "NFD" else rel


def _write(tree: dict, base: Path) -> tuple[Path, dict[str, str], bool]:
    """The tree on disk: (its root, {id as the reader should name it: class}, whether it holds a problem)."""
    rng = np.random.default_rng(tree["seed"])
    root, elsewhere = base / "dataset", base / "elsewhere"
    top = root / "images" if tree["under_images"] else root
    top.mkdir(parents=True)
    expected, rows = {}, []
    for cls in tree["classes"]:
        folder = _folder_name(cls, tree["spelling"][cls])
        where = (elsewhere / folder) if cls in tree["linked"] else (top / folder)
        where.mkdir(parents=True)
        if cls in tree["linked"]:
            (top / folder).symlink_to(where, target_is_directory=True)
        for stem, fmt, mode in tree["images"][cls]:
            pixels = rng.integers(0, 256, (12, 12, 3) if mode == "RGB" else (12, 12)).astype(np.uint8)
            Image.fromarray(pixels).convert(mode).save(where / f"{stem}.{fmt}")
            rel = (top / folder / f"{stem}.{fmt}").relative_to(root).as_posix()
            expected[rel] = normalise_text(cls)
            rows.append(f'"{_spelt(rel, tree["path_style"])}",{cls}')
    problem = False
    if tree["labels_csv"]:
        if tree["repeat_with_other_label"]:
            first = next(iter(expected))
            other = next(c for c in tree["classes"] if normalise_text(c) != expected[first])
            rows.append(f'"./{first}",{other}')
            problem = True
        (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root, expected, problem


# derandomised: the same trees on every run and machine (CI reproducible); no example database in the checkout
@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_every_image_is_read_once_with_its_label_or_the_tree_is_refused_in_one_line(tree):
    with tempfile.TemporaryDirectory() as tmp:
        root, expected, problem = _write(tree, Path(tmp))
        try:
            source = open_dataset(str(root))
        except MedimgError as err:
            assert problem, f"refused a tree without a problem: {err}"
            assert "\n" not in str(err) and "labels.csv" in str(err)
            return
        assert not problem, "a file listed twice with two labels was accepted"
        read = {r.id: source.classes[r.label] for r in source.records}
        assert len(read) == len(source.records), "an image was read twice"
        assert {unicodedata.normalize("NFC", i): c for i, c in read.items()} == \
            {unicodedata.normalize("NFC", i): c for i, c in expected.items()}
        decoded = load_images(source, 8, use_cache=False, progress=False, workers=1)
        assert decoded.images.shape[0] == len(expected) and list(decoded.ids) == [r.id for r in source.records]


@pytest.mark.parametrize("style", ["./", "//", "..", "NFD"])
def test_each_spelling_of_a_path_names_the_same_file(tmp_path, style):
    """The property's spellings one by one, so a failure says which."""
    tree = dict(classes=["benign", "caf\u00e9"], spelling={"benign": "NFC", "caf\u00e9": "NFD"},
                images={"benign": [("a", "png", "L")], "caf\u00e9": [("r\u00e9sum\u00e9", "png", "RGB")]},
                under_images=True, linked=set(), labels_csv=True, path_style=style, repeat_with_other_label=False,
                seed=0)
    root, expected, _ = _write(tree, tmp_path)
    source = open_dataset(str(root))
    assert sorted(unicodedata.normalize("NFC", r.id) for r in source.records) == \
        sorted(unicodedata.normalize("NFC", i) for i in expected)
