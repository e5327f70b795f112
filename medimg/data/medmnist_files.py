"""MedMNIST 2D subsets from the official npz files: find, download when online, check, read."""
from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import MedimgError
from ..paths import offline
from .registry import DatasetSpec
from .sources import SPLITS, DatasetSource, ImageRecord, check_medmnist_npz, medmnist_filename


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
    with np.load(path) as npz:
        labels = {s: np.asarray(npz[f"{s}_labels"]).reshape(counts[s], -1)[:, 0].astype(np.int64) for s in SPLITS}
    n_classes = len(spec.classes)
    for split in SPLITS:
        bad = labels[split][(labels[split] < 0) | (labels[split] >= n_classes)]
        if bad.size:
            raise MedimgError(f"{path} has the label {int(bad[0])} in {split}_labels, outside 0..{n_classes - 1}: "
                              f"replace it with the official MedMNIST file")
    records = tuple(ImageRecord(id=f"{s}/{i}", label=int(lab), official_split=s)
                    for s in SPLITS for i, lab in enumerate(labels[s]))
    st = path.stat()
    fingerprint = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    return DatasetSource(spec=spec, root=path, classes=spec.classes, records=records,
                         fingerprint=fingerprint, source_size=size)


def find_medmnist_file(base: Path, flag: str, size: int) -> Path | None:
    """``{flag}.npz`` / ``{flag}_{size}.npz`` directly in the data dir or in its ``{flag}/`` folder."""
    name = medmnist_filename(flag, size)
    return next((p for p in (base / name, base / flag / name) if p.is_file()), None)


def read_medmnist_images(source: DatasetSource) -> np.ndarray:
    """All images of an opened MedMNIST file in record order, as (N, H, W, C) uint8."""
    with np.load(source.root) as npz:
        arrays = [np.asarray(npz[f"{s}_images"]) for s in SPLITS]
    images = np.concatenate(arrays)
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise MedimgError(f"{source.root} holds images of shape {images.shape} and type {images.dtype}, "
                          f"not uint8 (N,H,W[,C]): replace it with the official MedMNIST file")
    return images


def download_medmnist(flag: str, size: int, dest: Path) -> None:
    """Download one official file, checking medmnist's MD5, writing it only when complete."""
    from medmnist.info import INFO

    info = INFO[flag]
    suffix = "" if size == 28 else f"_{size}"
    url, md5 = info[f"url{suffix}"], info[f"MD5{suffix}"]
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
