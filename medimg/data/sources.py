"""Turn a dataset name or a folder path into records of images, checking the structure on the way.

Opening is cheap (file listings, labels.csv, npz headers); nothing is decoded here. Decoding
happens once, in :mod:`medimg.data.cache`. Every structural problem is a :class:`MedimgError`
naming the file and the fix.
"""
from __future__ import annotations

import csv
import hashlib
import os
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MedimgError, warn
from ..paths import check_readable_dir, data_dir
from .registry import MEDMNIST_SIZES, REGISTRY, DatasetSpec, Lineage, get_spec

SPLITS = ("train", "val", "test")
SHOWN_NAMES = 5  # how many file names a warning about skipped files lists


@dataclass(frozen=True)
class ImageRecord:
    """One image: ``id`` is stable across runs (a relative path, or ``split/index`` in an npz)."""

    id: str
    label: int
    path: Path | None = None
    group: str | None = None  # images sharing a group (patient, lesion) stay in one split
    duplicate_of: str | None = None  # an exact duplicate declared in labels.csv
    official_split: str | None = None


@dataclass(frozen=True)
class DatasetSource:
    """A dataset opened for reading: its spec, where it lives, its classes and its images."""

    spec: DatasetSpec
    root: Path  # the folder, or the npz file
    classes: tuple[str, ...]
    records: tuple[ImageRecord, ...]
    fingerprint: str  # changes whenever a file is added, removed, replaced or touched
    source_size: int | None = None  # pixel size of an npz or generated set
    not_images: tuple[str, ...] = ()  # files under the image folders that Pillow cannot open (relative paths)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def has_official_split(self) -> bool:
        return all(r.official_split for r in self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)


def open_dataset(name_or_path: str | os.PathLike, *, data_dir_override: str | os.PathLike | None = None,
                 medmnist_size: int = 28, download: bool = True, synthetic_n_per_class: int = 100,
                 synthetic_size: int = 32, synthetic_seed: int = 0) -> DatasetSource:
    """Open a registered dataset by name, or any image folder by path.

    ``medmnist_size`` picks the official MedMNIST file (28 px is ``{flag}.npz``, others
    ``{flag}_{size}.npz``). A missing MedMNIST file is downloaded when online and
    ``download`` is true; otherwise the error names the exact file and where to put it.
    """
    text = os.fspath(name_or_path)
    looks_like_path = os.sep in text or text.startswith(".") or Path(text).is_dir()
    if looks_like_path:
        root = Path(text).expanduser()
        check_readable_dir(root, f"image folder {root}", fix="pass the path of a folder holding images/<class>/... files")
        return open_image_folder(root, spec=_spec_for_path(root))
    spec = get_spec(text)
    if spec.kind == "synthetic":
        from .synthetic import synthetic_source

        return synthetic_source(spec, n_per_class=synthetic_n_per_class, size=synthetic_size, seed=synthetic_seed)
    base = data_dir(data_dir_override)
    if spec.kind == "medmnist":
        from .medmnist_files import open_medmnist

        return open_medmnist(spec, base, size=medmnist_size, download=download)
    root = base / (spec.location or spec.name)
    if not root.is_dir():
        raise MedimgError(f"dataset {spec.name!r} is not in {root}: {spec.obtain or 'put its image folder there'}")
    return open_image_folder(root, spec=spec)


def _spec_for_path(root: Path) -> DatasetSpec:
    """The registered spec of a known folder (same name, same class folders), else a new one.

    For a folder the registry does not know, modality is found when it is decoded.
    """
    resolved = root.resolve()
    known = REGISTRY.get(resolved.name)
    if known is not None and known.kind == "folder" and known.classes:
        image_top = root / "images" if (root / "images").is_dir() else root
        if {d.name for d in image_top.iterdir() if d.is_dir()} == set(known.classes):
            return known
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    return DatasetSpec(
        name=f"folder-{resolved.name}-{digest}", kind="folder", modality="colour", location=str(resolved),
        description=f"image folder {resolved}", citation="user-supplied folder", licence="unknown",
        lineage=(Lineage(f"folder:{resolved}"),), extra={"modality_from_images": True},
    )


# --- image folders -----------------------------------------------------------------------------

def image_suffixes() -> frozenset[str]:
    """Every file suffix Pillow reads (``.png``, ``.jpg``, ``.webp``, ``.tif``, ``.gif``, ...), lower case."""
    from PIL import Image

    Image.init()
    return frozenset(Image.registered_extensions())


def is_image_file(path: Path) -> bool:
    """Whether Pillow can open ``path``: by its suffix, else by reading its header."""
    if path.suffix.lower() in image_suffixes():
        return True
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False


def _walk_files(top: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) below ``top`` in sorted order; hidden folders are skipped."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(top, onerror=_raise_walk_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            path = Path(dirpath) / f
            (images if is_image_file(path) else others).append(path)
    return images, others


def _raise_walk_error(err: OSError) -> None:
    raise MedimgError(f"cannot read {err.filename} ({err.strerror}): make the folder readable")


def _fingerprint(files: list[Path], extra: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files) + extra:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def open_image_folder(root: Path, spec: DatasetSpec) -> DatasetSource:
    """Read ``root/images/<class>/...`` (or ``root/<class>/...``) and the optional ``labels.csv``."""
    image_top = root / "images" if (root / "images").is_dir() else root
    labels_csv = root / "labels.csv"
    class_dirs = sorted(d for d in image_top.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, others = _walk_files(image_top)
    if image_top == root:  # the root's own files (labels.csv, notes) are not class members
        others = [f for f in others if f.parent != root]
    loose = [f for f in files if f.parent == image_top]
    for d in class_dirs:
        if not any(f.is_relative_to(d) for f in files):
            raise MedimgError(f"class folder {d} holds no images (no file that Pillow can open): "
                              f"add images to it or remove the folder")
    if others:
        names = ", ".join(f.relative_to(root).as_posix() for f in others[:SHOWN_NAMES])
        warn(f"{root}: {len(others)} file(s) are not images Pillow can open and are not used: {names}"
             f"{', ...' if len(others) > SHOWN_NAMES else ''} (remove them, or convert them to an image format)")
    if not files:
        raise MedimgError(f"{image_top} holds no images: expected {image_top}/<class>/<image files>")
    if labels_csv.is_file():
        records, classes = _records_from_csv(root, labels_csv, class_dirs, spec)
    else:
        if loose:
            raise MedimgError(f"{loose[0]} is not inside a class folder and there is no labels.csv: "
                              f"move images into {image_top}/<class>/ or add {labels_csv} with path,label")
        classes = spec.classes or tuple(normalise_text(d.name) for d in class_dirs)
        check_invisible_differences(classes, f"the class folders of {image_top}")
        index = {c: i for i, c in enumerate(classes)}
        records = []
        for f in files:
            cls = normalise_text(f.relative_to(image_top).parts[0])
            if cls not in index:
                raise MedimgError(f"class folder {image_top / cls} is not one of the classes of {spec.name} "
                                  f"({', '.join(classes)}): remove it or rename it")
            records.append(ImageRecord(id=f.relative_to(root).as_posix(), label=index[cls], path=f))
    if len(classes) < 2 or len({r.label for r in records}) < 2:
        raise MedimgError(f"{root} has images of only one class ({classes[records[0].label]}): "
                          f"a classifier needs at least two class folders")
    fingerprint = _fingerprint([r.path for r in records], [labels_csv] if labels_csv.is_file() else [])
    return DatasetSource(spec=spec, root=root, classes=tuple(classes), records=tuple(records), fingerprint=fingerprint,
                         not_images=tuple(f.relative_to(root).as_posix() for f in others))


def normalise_text(text: str) -> str:
    """A name as a person reads it: surrounding whitespace dropped, Unicode composed (NFC).

    ``"benign "`` and ``"benign"`` are one class; so are ``"e\u0301"`` (e + combining accent, as
    macOS writes file names) and ``"\u00e9"``.
    """
    return unicodedata.normalize("NFC", text).strip()


def _skeleton(text: str) -> str:
    """What remains visible: compatibility forms folded (NFKC), format characters (zero-width
    spaces, joiners, marks) removed, every run of whitespace (no-break spaces too) one space."""
    folded = unicodedata.normalize("NFKC", text)
    visible = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")
    return " ".join(visible.split())


def check_invisible_differences(values, where: str) -> None:
    """Refuse two distinct values that differ only invisibly, showing both with ``repr``."""
    seen: dict[str, str] = {}
    for v in values:
        other = seen.setdefault(_skeleton(v), v)
        if other != v:
            raise MedimgError(f"{where} has the labels {other!r} and {v!r}, which look the same but differ in "
                              f"invisible characters: make them identical")


def _records_from_csv(root: Path, labels_csv: Path, class_dirs: list[Path], spec: DatasetSpec):
    try:
        with open(labels_csv, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            table = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MedimgError(f"cannot read {labels_csv} ({err}): it must be a UTF-8 CSV with columns path,label") from None
    # header names and values as a person reads them: "path, label" has the columns path and label
    columns = [normalise_text(h).casefold() for h in header]
    numbered = [(line, {c: normalise_text(v) for c, v in zip(columns, row + [""] * len(columns))})
                for line, row in enumerate(table, start=2) if any(v.strip() for v in row)]
    rows = [row for _, row in numbered]
    missing = {"path", "label"} - set(columns)
    if missing:
        found = ", ".join(repr(h) for h in header) or "none"
        raise MedimgError(f"{labels_csv} lacks the column(s) {', '.join(sorted(missing))} (its header has {found}): "
                          f"add a header row with at least path,label")
    check_invisible_differences(dict.fromkeys(row["label"] for row in rows), str(labels_csv))
    # Classes: the spec's, else labels.csv's label_index order, else class folders, else sorted labels.
    if spec.classes:
        classes = list(spec.classes)
    elif "label_index" in columns:
        by_index = {}
        for row in rows:
            by_index.setdefault(int(row["label_index"]), row["label"])
        classes = [by_index[i] for i in sorted(by_index)]
    elif class_dirs:
        classes = [normalise_text(d.name) for d in class_dirs]
    else:
        classes = sorted({row["label"] for row in rows})
    check_invisible_differences(dict.fromkeys([*classes, *(row["label"] for row in rows)]),
                                f"{labels_csv} with its classes")
    index = {c: i for i, c in enumerate(classes)}
    group_col = spec.group_column if spec.group_column in columns else None
    if group_col is None:
        group_col = next((c for c in ("patient_id", "lesion_id") if c in columns), None)
    records, seen = [], set()
    for line, row in numbered:
        rel = row["path"]
        path = _existing_path(root, rel)
        where = f"{labels_csv} line {line}"
        if path is None:
            raise MedimgError(f"{where} names {rel}, which does not exist: fix the row or add the file")
        if row["label"] not in index:
            raise MedimgError(f"{where} has the unknown class {row['label']!r} (classes: {', '.join(classes)}): "
                              f"fix the label or add a class folder")
        rel = path.relative_to(root).as_posix()
        if rel in seen:
            raise MedimgError(f"{where} lists {rel} a second time: remove the repeated row")
        seen.add(rel)
        dup = row.get("exact_duplicate_of") or None
        group = (row.get(group_col) or None) if group_col else None
        records.append(ImageRecord(id=rel, label=index[row["label"]], path=path, group=group,
                                   duplicate_of=Path(dup).as_posix() if dup else None))
    if not records:
        raise MedimgError(f"{labels_csv} has no rows: add one row per image (path,label)")
    return records, classes


def _existing_path(root: Path, rel: str) -> Path | None:
    """``root / rel``, also when the file system stores the name decomposed (NFD, as macOS does) or composed."""
    for form in (rel, unicodedata.normalize("NFD", rel), unicodedata.normalize("NFC", rel)):
        if (root / form).is_file():
            return root / form
    return None


# --- npz files ---------------------------------------------------------------------------------

def npz_lengths(path: Path) -> dict[str, tuple[int, ...]]:
    """Array shapes in an npz, read from the headers without loading the arrays."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                        else np.lib.format.read_array_header_2_0
                    shape, _, _ = read_header(fh)
                shapes[info.filename[:-4]] = shape
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as err:
        raise MedimgError(f"{path} is not a readable npz file ({err}): replace it with the official MedMNIST file") from None
    return shapes


def check_medmnist_npz(path: Path) -> dict[str, int]:
    """Check the MedMNIST keys and lengths; return the number of images per split."""
    shapes = npz_lengths(path)
    counts = {}
    for split in SPLITS:
        for key in (f"{split}_images", f"{split}_labels"):
            if key not in shapes:
                raise MedimgError(f"{path} lacks the key {key!r} (it has {', '.join(sorted(shapes)) or 'none'}): "
                                  f"use an official MedMNIST npz with train/val/test _images and _labels")
        n_img, n_lab = shapes[f"{split}_images"][0], shapes[f"{split}_labels"][0]
        if n_img != n_lab:
            raise MedimgError(f"{path} has {n_img} {split}_images but {n_lab} {split}_labels: "
                              f"the file is damaged; replace it with the official MedMNIST file")
        counts[split] = n_img
    return counts


def medmnist_filename(flag: str, size: int) -> str:
    if size not in MEDMNIST_SIZES:
        raise MedimgError(f"MedMNIST has no {size} px files: choose one of {', '.join(map(str, MEDMNIST_SIZES))}")
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
