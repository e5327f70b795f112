"""Image folders: ``root/images/<class>/...`` (or ``root/<class>/...``) and an optional ``labels.csv``.

Opening is cheap (file listings, labels.csv); nothing is decoded here. Every file Pillow can open is
an image; other files are named in a warning. Names and labels are read as a person reads them
(:func:`normalise_text`), and two that differ only invisibly are refused. Every structural problem is a
:class:`MedimgError` naming the file and the fix.
"""
from __future__ import annotations

import csv
import functools
import io
import os
import unicodedata
from pathlib import Path

from medimg.errors import MedimgError, warn
from medimg.data.fingerprint import content_fingerprint
from medimg.data.records import DatasetSource, ImageRecord
from medimg.data.registry import DatasetSpec

SHOWN_NAMES = 5  # how many file names a warning about skipped files lists
# what operating systems leave beside images, skipped like hidden files and folders (names starting with "."):
# macOS's .DS_Store and ._<name> (AppleDouble: a ._scan.png is no PNG) and the __MACOSX folder of its zip files,
# Windows' thumbnail caches and folder settings
CLUTTER_FILES = frozenset({"Thumbs.db", "ehthumbs.db", "desktop.ini", "Desktop.ini"})
CLUTTER_FOLDERS = frozenset({"__MACOSX", "$RECYCLE.BIN", "System Volume Information"})
# folder names that say a dataset ships its splits as folders
SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "dev", "test", "testing"})

@functools.cache
def image_suffixes() -> frozenset[str]:
    """Every file suffix Pillow reads (``.png``, ``.jpg``, ``.webp``, ``.tif``, ``.gif``, ...), lower case."""
    from PIL import Image

    Image.init()
    return frozenset(Image.registered_extensions())


def is_image_file(path: Path) -> bool:
    """Whether medimg can read ``path``: a DICOM file (:mod:`medimg.data.image_file`), or one Pillow opens, by its
    suffix, else by reading its header."""
    from medimg.data.image_file import is_dicom

    if path.suffix.lower() in image_suffixes() or is_dicom(path):
        return True
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False


def _walk_files(top: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) below ``top`` in sorted order; hidden folders are skipped. Links to folders are
    followed (a class folder may be a link to where the images lie), each real folder once: a link back up the
    tree (a loop) is refused. A name that is not valid UTF-8 is refused, naming the file."""
    images, others = [], []
    seen: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(top, onerror=_raise_walk_error, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            raise MedimgError(f"{dirpath} is the folder {seen[real]} again, reached through a link (a loop, or two "
                              f"links to one folder), so its images would be read twice: remove the link")
        seen[real] = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in CLUTTER_FOLDERS)
        here = Path(dirpath)
        suffixes = image_suffixes()
        for f in sorted(filenames):
            if f.startswith(".") or f in CLUTTER_FILES:
                continue  # hidden files, macOS's .DS_Store and ._ copies, Windows' Thumbs.db: never images of a study
            path = here / f
            _check_utf8_name(path)
            # by its suffix (cheap, on the name) else by its header
            (images if os.path.splitext(f)[1].lower() in suffixes or is_image_file(path) else others).append(path)
    return images, others


def _check_utf8_name(path: Path) -> None:
    """Refuse a file name the file system holds in another encoding than UTF-8 (Python keeps its bytes as
    surrogates, which no CSV, JSON or book can write)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", errors="backslashreplace")
        raise MedimgError(f"the file name {shown} is not valid UTF-8 (written in another encoding, e.g. Latin-1): "
                          f"rename it, e.g. with convmv -f latin1 -t utf8 --notest") from None


def _raise_walk_error(err: OSError) -> None:
    raise MedimgError(f"cannot read {err.filename} ({err.strerror}): make the folder readable")


def open_image_folder(root: Path, spec: DatasetSpec) -> DatasetSource:
    """Read ``root/images/<class>/...`` (or ``root/<class>/...``) and the optional ``labels.csv``."""
    image_top = root / "images" if (root / "images").is_dir() else root
    labels_csv = root / "labels.csv"
    class_dirs = sorted(d for d in image_top.iterdir()
                        if d.is_dir() and not d.name.startswith(".") and d.name not in CLUTTER_FOLDERS)
    files, others = _walk_files(image_top)
    if image_top == root:  # the root's own files (labels.csv, notes) are not class members
        others = [f for f in others if f.parent != root]
    # paths below image_top and root as text, once (pathlib's parsing dominates a cached describe of 100k files)
    below_top = _relative_texts(files, image_top)
    loose = [f for f, rel in zip(files, below_top) if "/" not in rel]
    populated = {rel.split("/", 1)[0] for rel in below_top if "/" in rel}  # a file's class folder
    for d in class_dirs:
        if d.name not in populated:
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
        listed = {r.id for r in records}  # paths relative to root, as found on disk
        unlisted = [f for f, rel in zip(files, _relative_texts(files, root)) if rel not in listed]
        if unlisted:
            names = ", ".join(f.relative_to(root).as_posix() for f in unlisted[:SHOWN_NAMES])
            warn(f"{labels_csv} does not list {len(unlisted)} of the images under {image_top}, which are not used: "
                 f"{names}{', ...' if len(unlisted) > SHOWN_NAMES else ''} (add rows for them, or remove them)")
    else:
        if loose:
            raise MedimgError(f"{loose[0]} is not inside a class folder and there is no labels.csv: "
                              f"move images into {image_top}/<class>/ or add {labels_csv} with path,label")
        _refuse_nested_classes(image_top, below_top, labels_csv)
        names = [normalise_text(d.name) for d in class_dirs]
        check_invisible_differences(dict.fromkeys(names), f"the class folders of {image_top}")
        merged = [d.name for d, n in zip(class_dirs, names) if names.count(n) > 1]
        if merged:
            warn(f"{image_top}: the class folders {', '.join(map(repr, merged))} read as one name and are one class "
                 f"(surrounding spaces and Unicode composition are ignored): rename them if they are not")
        classes = spec.classes or tuple(dict.fromkeys(names))
        index = {c: i for i, c in enumerate(classes)}
        records = []
        folder_class = {}  # a class folder's name as read, once per folder
        for f, rel, below in zip(files, _relative_texts(files, root), below_top):
            top = below.split("/", 1)[0]
            cls = folder_class.get(top) or folder_class.setdefault(top, normalise_text(top))
            if cls not in index:
                raise MedimgError(f"class folder {image_top / cls} is not one of the classes of {spec.name} "
                                  f"({', '.join(classes)}): remove it or rename it")
            records.append(ImageRecord(id=rel, label=index[cls], path=f))
    if len(classes) < 2 or len({r.label for r in records}) < 2:
        raise MedimgError(f"{root} has images of only one class ({classes[records[0].label]}): "
                          f"a classifier needs at least two class folders")
    fingerprint = content_fingerprint({**{r.id: r.path for r in records},
                                       **({"labels.csv": labels_csv} if labels_csv.is_file() else {})},
                                      desc=f"fingerprint {root.name}")
    return DatasetSource(spec=spec, root=root, classes=tuple(classes), records=tuple(records), fingerprint=fingerprint,
                         not_images=tuple(f.relative_to(root).as_posix() for f in others))


def _split_like(name: str) -> bool:
    """Whether a folder's name says it holds a split: train, training, train_set, Val, validation, Test, testing, dev."""
    name = name.casefold()
    return name.startswith(("train", "val", "test")) or name in SPLIT_NAMES


def _refuse_nested_classes(image_top: Path, below_top: list[str], labels_csv: Path) -> None:
    """Refuse folders laid out by split (``train/benign/``, ``val/benign/``, ``test/benign/``: how many public
    datasets ship): the folders below the top ones repeat across them, and the top ones are named as splits. Read as
    they are, train, val and test would be the classes and the real classes would never appear. Folders that repeat
    below top ones not named as splits (``benign/2019/``, ``malignant/2019/``) may be batches or years within
    classes: read as they are, with a warning that says how to read them otherwise."""
    from collections import defaultdict

    subs = defaultdict(set)
    for rel in below_top:
        parts = rel.split("/")
        if len(parts) >= 3:
            subs[parts[0]].add(parts[1])
    counts = defaultdict(int)
    for names in subs.values():
        for name in names:
            counts[name] += 1
    repeated = sorted(n for n, c in counts.items() if c > 1)
    if not repeated:
        return
    tops = sorted(t for t in subs if subs[t] & set(repeated))
    shown = ", ".join(f"{n}/" for n in repeated[:SHOWN_NAMES]) + (", ..." if len(repeated) > SHOWN_NAMES else "")
    held = f"{', '.join(f'{t}/' for t in tops[:SHOWN_NAMES])} each hold {shown}"
    fix = (f"move the images to {image_top}/<class>/ (e.g. {image_top / repeated[0]}/), or list them in {labels_csv} "
           f"with path,label")
    if any(_split_like(t) for t in tops):
        raise MedimgError(f"{image_top} is laid out by split ({held}): its top folders would be read as the classes; "
                          f"{fix} (medimg makes its own train/val/test split)")
    warn(f"{image_top}: {held}; the top folders are read as the classes ({', '.join(tops[:3])}, ...): if the inner "
         f"folders are the classes, {fix}")


def _relative_texts(files: list[Path], top: Path) -> list[str]:
    """Each of ``files`` (all below ``top``, as :func:`_walk_files` lists them) relative to ``top``, with ``/``: what
    ``f.relative_to(top).as_posix()`` gives, by cutting text."""
    prefix = str(top).rstrip(os.sep) + os.sep
    out = []
    for f in files:
        text = str(f)
        if not text.startswith(prefix):  # not reached through top's own spelling: as pathlib says
            out.append(f.relative_to(top).as_posix())
        else:
            out.append(text[len(prefix):].replace(os.sep, "/") if os.sep != "/" else text[len(prefix):])
    return out


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
    """Refuse two distinct values that differ only invisibly, showing both with ``repr``; warn about two that
    differ only in case (``Cat`` and ``cat`` stay two classes)."""
    seen: dict[str, str] = {}
    cased: dict[str, str] = {}
    for v in values:
        other = seen.setdefault(_skeleton(v), v)
        if other != v:
            raise MedimgError(f"{where} has the labels {other!r} and {v!r}, which look the same but differ in "
                              f"invisible characters: make them identical")
        other = cased.setdefault(_skeleton(v).casefold(), v)
        if other != v:
            warn(f"{where} has the labels {other!r} and {v!r}, which differ only in case and are two classes: "
                 f"make them identical if they are one")


def _records_from_csv(root: Path, labels_csv: Path, class_dirs: list[Path], spec: DatasetSpec):
    text = _csv_text(labels_csv)
    separator = _separator(text)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
        header = next(reader, [])
        table = list(reader)
    except csv.Error as err:
        raise MedimgError(f"cannot read {labels_csv} ({err}): it must be a CSV with columns path,label") from None
    # header names and values as a person reads them: "path, label" has the columns path and label
    columns = [normalise_text(h).casefold() for h in header]
    numbered = [(line, {c: normalise_text(v) for c, v in zip(columns, row + [""] * len(columns))})
                for line, row in enumerate(table, start=2) if any(v.strip() for v in row)]
    rows = [row for _, row in numbered]
    missing = {"path", "label"} - set(columns)
    if missing:
        found = ", ".join(repr(h) for h in header) or "none"
        named = {",": "commas", ";": "semicolons", "\t": "tabs"}[separator]
        raise MedimgError(f"{labels_csv} lacks the column(s) {', '.join(sorted(missing))} (its header, read as "
                          f"separated by {named}, has {found}): add a header row with at least path,label")
    for line, row in numbered:
        if not row["label"]:
            raise MedimgError(f"{labels_csv} line {line} has no label for {row['path'] or 'its image'}: "
                              f"fill in its label or remove the row")
    check_invisible_differences(dict.fromkeys(row["label"] for row in rows), str(labels_csv))
    # Classes: the spec's, else labels.csv's label_index order, else class folders, else sorted labels.
    if spec.classes:
        classes = list(spec.classes)
    elif "label_index" in columns:
        by_index = {}
        for row in rows:
            by_index.setdefault(int(row["label_index"]), row["label"])
        classes = [by_index[i] for i in sorted(by_index)]
    elif class_dirs and {row["label"] for row in rows} & {normalise_text(d.name) for d in class_dirs}:
        # class folders (a label that is not one of them is an error below); the folders' order
        classes = list(dict.fromkeys(normalise_text(d.name) for d in class_dirs))
    else:  # folders that name no class (images/all/..., images/2021/...): the labels decide
        classes = sorted({row["label"] for row in rows})
    check_invisible_differences(dict.fromkeys([*classes, *(row["label"] for row in rows)]),
                                f"{labels_csv} with its classes")
    index = {c: i for i, c in enumerate(classes)}
    group_col = spec.group_column if spec.group_column in columns else None
    if group_col is None:
        group_col = next((c for c in ("patient_id", "lesion_id") if c in columns), None)
    records, seen = [], {}
    for line, row in numbered:
        rel = row["path"]
        path = _existing_path(root, rel)
        where = f"{labels_csv} line {line}"
        if path is None:
            slash = "; write paths with / rather than \\" if "\\" in rel else ""
            raise MedimgError(f"{where} names {rel}, which does not exist (paths are relative to {root}, the folder "
                              f"that holds labels.csv: looked for {root / rel}): fix the row or add the file{slash}")
        if row["label"] not in index:
            raise MedimgError(f"{where} has the unknown class {row['label']!r} (classes: {', '.join(classes)}): "
                              f"fix the label or add a class folder")
        rel = path.relative_to(root).as_posix()
        if rel in seen:  # one file, however its path was spelt (./x, x//y, a/../x): refused, showing both rows
            first_line, first_label = seen[rel]
            same = "with the same label" if first_label == row["label"] else \
                f"with the labels {first_label!r} and {row['label']!r}"
            raise MedimgError(f"{labels_csv} lines {first_line} and {line} both name {rel} {same}: keep one row")
        seen[rel] = (line, row["label"])
        dup = row.get("exact_duplicate_of") or None
        group = (row.get(group_col) or None) if group_col else None
        records.append(ImageRecord(id=rel, label=index[row["label"]], path=path, group=group,
                                   duplicate_of=Path(dup).as_posix() if dup else None))
    if not records:
        raise MedimgError(f"{labels_csv} has no rows: add one row per image (path,label)")
    return records, classes


SEPARATORS = (",", ";", "\t")  # comma; semicolon (Excel where the decimal mark is a comma); tab


def _csv_text(labels_csv: Path) -> str:
    """labels.csv's text, UTF-8 (with or without Excel's byte-order mark). Another encoding is refused naming the
    likely one and the Excel choice that fixes it."""
    try:
        data = labels_csv.read_bytes()
    except OSError as err:
        raise MedimgError(f"cannot read {labels_csv} ({err.strerror}): make it readable") from None
    fix = "save it from Excel as 'CSV UTF-8 (Comma delimited)', or re-encode it, e.g. iconv -f {} -t UTF-8"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or data[:200].count(b"\0") > len(data[:200]) // 4:
        raise MedimgError(f"{labels_csv} is UTF-16 (Excel's 'Unicode Text'), not UTF-8: {fix.format('UTF-16')}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        try:
            data.decode("cp1252")
            likely = "Windows-1252 (Latin-1), as Excel's 'CSV (Comma delimited)' saves it"
            encoding = "CP1252"
        except UnicodeDecodeError:
            likely, encoding = "an unknown encoding", "ENCODING"
        raise MedimgError(f"{labels_csv} is not UTF-8 (line {line} has the byte {data[err.start]:#04x}; it looks "
                          f"like {likely}): {fix.format(encoding)}") from None


def _separator(text: str) -> str:
    """The separator of labels.csv: the one of :data:`SEPARATORS` that splits its header into columns holding
    ``path`` and ``label``; else the one that splits it most; a comma when none does."""
    first = next((line for line in text.splitlines() if line.strip()), "")

    def columns(sep):
        return {normalise_text(c).casefold().strip('"') for c in first.split(sep)}

    fitting = [sep for sep in SEPARATORS if {"path", "label"} <= columns(sep)]
    if fitting:
        return fitting[0]
    return max(SEPARATORS, key=lambda sep: (first.count(sep), sep == ","))


def _existing_path(root: Path, rel: str) -> Path | None:
    """``root / rel`` with its spelling normalised (``./``, repeated ``/``, ``..`` resolved lexically; an absolute
    path inside ``root`` made relative), also when the file system stores the name decomposed (NFD, as macOS does)
    or composed; None when there is no such file inside ``root``."""
    if "\\" in rel and (root / rel).is_file():
        plain = rel  # a name that holds a backslash (legal on Linux)
    else:  # Windows' separators, ./, //, and a/../ spelt out
        plain = os.path.normpath(rel.replace("\\", "/"))
    if os.path.isabs(plain):
        try:
            plain = os.path.relpath(plain, root)
        except ValueError:
            return None
    if plain == ".." or plain.startswith("../"):
        return None  # outside the dataset's folder
    if (root / plain).is_file():
        return root / plain
    # one name, another Unicode form (macOS writes names decomposed, NFD): matched part by part, as a person reads them
    here = root
    for part in Path(plain).parts:
        if (here / part).exists():
            here = here / part
            continue
        wanted = unicodedata.normalize("NFC", part)
        try:
            with os.scandir(here) as entries:
                match = next((e.name for e in entries if unicodedata.normalize("NFC", e.name) == wanted), None)
        except OSError:
            return None
        if match is None:
            return None
        here = here / match
    return here if here.is_file() else None
