"""MedMNIST 2D subsets from the official npz files: find, download when online, check, read."""
from __future__ import annotations

import hashlib
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np

from medimg.atomic import atomic_path
from medimg.errors import MedimgError
from medimg.paths import offline
from medimg.data.fingerprint import content_fingerprint
from medimg.data.records import SPLITS, DatasetSource, ImageRecord
from medimg.data.registry import MEDMNIST_SIZES, DatasetSpec


def open_medmnist(spec: DatasetSpec, base: Path, *, size: int = 28, download: bool = True) -> DatasetSource:
    if spec.task == "multilabel":
        raise MedimgError(f"{spec.name} is multi-label; medimg's study handles single-label classification: "
                          f"choose another dataset")
    path = find_medmnist_file(base, spec.location, size)
    if path is None:
        name = medmnist_filename(spec.location, size)
        path = base / spec.location / name if (base / spec.location).is_dir() else base / name
        if download and not offline():
            download_medmnist(spec.location, size, path)
        else:
            raise MedimgError(f"{name} is missing from {base}: put the official file at {path} "
                              f"(https://zenodo.org/records/10519652/files/{name}), or go online and rerun")
    counts = check_medmnist_npz(path)
    raw = read_npz_members(path, [f"{s}_labels" for s in SPLITS], flag=spec.location, size=size)
    labels = {s: raw[f"{s}_labels"].reshape(counts[s], -1)[:, 0].astype(np.int64) for s in SPLITS}
    n_classes = len(spec.classes)
    for split in SPLITS:
        bad = labels[split][(labels[split] < 0) | (labels[split] >= n_classes)]
        if bad.size:
            raise MedimgError(f"{path} has the label {int(bad[0])} in {split}_labels, outside 0..{n_classes - 1}: "
                              f"replace it with the official MedMNIST file")
    records = tuple(ImageRecord(id=f"{s}/{i}", label=int(lab), official_split=s)
                    for s in SPLITS for i, lab in enumerate(labels[s]))
    fingerprint = content_fingerprint({path.name: path})
    return DatasetSource(spec=spec, root=path, classes=spec.classes, records=records,
                         fingerprint=fingerprint, source_size=size)


def find_medmnist_file(base: Path, flag: str, size: int) -> Path | None:
    """``{flag}.npz`` / ``{flag}_{size}.npz`` directly in the data dir or in its ``{flag}/`` folder."""
    name = medmnist_filename(flag, size)
    return next((p for p in (base / name, base / flag / name) if p.is_file()), None)


def read_medmnist_images(source: DatasetSource) -> np.ndarray:
    """All images of an opened MedMNIST file in record order, as (N, H, W, C) uint8.

    A member that cannot be decompressed, or images that are not uint8, raise :class:`MedimgError`.
    """
    keys = [f"{s}_images" for s in SPLITS]
    arrays = read_npz_members(source.root, keys, flag=source.spec.location, size=source.source_size)
    images = np.concatenate([arrays[k] for k in keys])
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise MedimgError(f"{source.root} holds images of shape {images.shape} and type {images.dtype}, "
                          f"not uint8 (N,H,W[,C]): replace it with the official MedMNIST file")
    return images


# what numpy and zipfile raise for a member whose bytes are damaged (bad CRC, broken deflate stream, short data)
DAMAGED_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError)


def read_npz_members(path: Path, keys, *, flag: str, size: int) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the MedMNIST file ``path`` (``flag`` at ``size`` px), read whole.

    Raises :class:`MedimgError` naming the file, the official URL and medmnist's MD5 when a member
    cannot be read (a full-length file with corrupted bytes inside).
    """
    arrays, key = {}, None
    try:
        with np.load(path) as npz:
            for key in keys:
                arrays[key] = np.asarray(npz[key])
    except DAMAGED_MEMBER_ERRORS as err:
        url, md5 = official_medmnist_file(flag, size)
        what = " ".join(f"{type(err).__name__}: {err}".split())  # one line, whatever the library wrote
        raise MedimgError(f"{path} is damaged ({key}: {what}): re-download it from {url} and check that its MD5 "
                          f"is {md5} (medmnist's), then replace the file") from None
    return arrays


def official_medmnist_file(flag: str, size: int) -> tuple[str, str]:
    """(URL, MD5) of the official ``flag`` file at ``size`` px, as the installed medmnist package lists them."""
    from medmnist.info import INFO

    suffix = "" if size == 28 else f"_{size}"
    return INFO[flag][f"url{suffix}"], INFO[flag][f"MD5{suffix}"]


def download_medmnist(flag: str, size: int, dest: Path) -> None:
    """Download one official file, checking medmnist's MD5, writing it only when complete."""
    url, md5 = official_medmnist_file(flag, size)
    digest = hashlib.md5()
    try:
        from tqdm.auto import tqdm

        with atomic_path(dest) as tmp:  # dest appears only complete and with the right MD5
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            if digest.hexdigest() != md5:
                raise MedimgError(f"the download of {url} has MD5 {digest.hexdigest()}, not {md5}: rerun, "
                                  f"or put the official file at {dest}")
    except OSError as err:
        raise MedimgError(f"cannot download {url} ({err}): put the official {dest.name} in {dest.parent}") from None


# --- the file format --------------------------------------------------------------------------

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
