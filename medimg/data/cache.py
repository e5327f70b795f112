"""Decode once: every image decoded, converted and resized a single time, then read from disk.

A cache entry is a folder ``<cache dir>/images/<dataset>-<size>px-<fingerprint>/`` holding
``images.npy`` (uint8, N x H x W x C, memory-mapped on read) and ``meta.json`` (ids, labels,
content hashes, original sizes and modes). The fingerprint covers every file's size and
modification time, so a changed folder gets a new entry. An entry is built in a temporary
folder and renamed into place only when complete: a failure leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import MedimgError
from ..paths import cache_dir
from .sources import DatasetSource, ImageRecord

CACHE_VERSION = 1  # bump when decoding changes, so old entries are not reused
GREY_TOLERANCE = 3  # max channel difference still counted as grey (JPEG chroma noise)


@dataclass(frozen=True)
class DecodedImages:
    """A dataset's images at one size, in the order of ``source.records``."""

    images: np.ndarray  # (N, size, size, channels) uint8
    ids: tuple[str, ...]
    labels: np.ndarray
    sha256: tuple[str, ...]  # of the file's bytes (folders) or the pixel array (npz, generated)
    original_sizes: tuple[tuple[int, int], ...]  # (width, height) before resizing
    modes: tuple[str, ...]  # PIL mode as stored
    size: int
    path: Path | None = None  # the cache entry, when cached

    @property
    def channels(self) -> int:
        return self.images.shape[-1]

    @property
    def modality(self) -> str:
        return "grey" if self.channels == 1 else "colour"


def cache_key(source: DatasetSource, size: int) -> str:
    return f"{source.name}-{size}px-{source.fingerprint[:16]}-v{CACHE_VERSION}"


def load_images(source: DatasetSource, size: int, *, use_cache: bool = True, workers: int | None = None,
                progress: bool = True) -> DecodedImages:
    """Images of ``source`` at ``size`` x ``size`` pixels, decoding only on the first call."""
    if size < 8:
        raise MedimgError(f"image size {size} is too small: use at least 8 pixels")
    if source.spec.kind == "synthetic":
        use_cache = False  # generated in memory, cheaper than a disk round trip
    entry = cache_dir() / "images" / cache_key(source, size)
    if use_cache and (entry / "meta.json").is_file():
        cached = _read_entry(entry)
        if cached.ids == tuple(r.id for r in source.records):
            return cached
    decoded = _decode_all(source, size, workers=workers, progress=progress)
    if not use_cache:
        return decoded
    _write_entry(entry, decoded)
    return _read_entry(entry)


# --- decoding ----------------------------------------------------------------------------------

def _decode_all(source: DatasetSource, size: int, *, workers: int | None, progress: bool) -> DecodedImages:
    kind = source.spec.kind
    if kind == "folder":
        return _decode_folder(source, size, workers=workers, progress=progress)
    if kind == "medmnist":
        from .medmnist_files import read_medmnist_images

        arrays = read_medmnist_images(source)
    else:
        from .synthetic import synthetic_images

        arrays = synthetic_images(source)
    mode = "L" if arrays.shape[-1] == 1 else "RGB"
    h, w = arrays.shape[1:3]
    resized = arrays if (h, w) == (size, size) else np.stack([_resize_array(a, size) for a in arrays])
    return DecodedImages(
        images=resized, ids=tuple(r.id for r in source.records), labels=source.labels,
        sha256=tuple(hashlib.sha256(a.tobytes()).hexdigest() for a in arrays),
        original_sizes=((w, h),) * len(arrays), modes=(mode,) * len(arrays), size=size,
    )


def _resize_array(a: np.ndarray, size: int) -> np.ndarray:
    im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    out = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC))
    return out[..., None] if out.ndim == 2 else out


def _decode_folder(source: DatasetSource, size: int, *, workers: int | None, progress: bool) -> DecodedImages:
    from tqdm.auto import tqdm

    records = source.records
    # A registered dataset's modality is known; a user's folder is grey only if every image is.
    target = None if source.spec.extra.get("modality_from_images") else ("L" if source.spec.modality == "grey" else "RGB")
    decoded = []
    pool = ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1))
    try:
        jobs = pool.map(lambda r: decode_file(r, size, target), records)
        decoded += tqdm(jobs, total=len(records), desc=f"decode {source.name} @{size}px", disable=not progress, leave=False)
    finally:
        pool.shutdown(cancel_futures=True)  # a bad file stops the rest at once
    arrays = [d[0] for d in decoded]
    if target is None:
        all_grey = all(a.ndim == 2 for a in arrays)
        arrays = [a if all_grey or a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in arrays]
    stack = np.stack(arrays)
    if stack.ndim == 3:
        stack = stack[..., None]
    return DecodedImages(
        images=stack, ids=tuple(r.id for r in records), labels=source.labels,
        sha256=tuple(d[1] for d in decoded), original_sizes=tuple(d[2] for d in decoded),
        modes=tuple(d[3] for d in decoded), size=size,
    )


def decode_file(record: ImageRecord, size: int, target_mode: str | None) -> tuple[np.ndarray, str, tuple[int, int], str]:
    """Decode one image file to uint8 grey (H, W) or RGB (H, W, 3) at ``size``.

    ``target_mode`` is ``"L"``, ``"RGB"`` or ``None`` (keep grey images grey and colour ones
    colour). Returns the array, the sha256 of the file's bytes, its original size and mode.
    """
    path = record.path
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MedimgError(f"cannot read {path} ({err.strerror}): make the file readable") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            original_size, original_mode = im.size, im.mode
            im = _to_8bit(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise MedimgError(f"cannot decode {path} ({err}): replace the file with a valid image or remove it"
                          f"{' and its labels.csv row' if (path.parent.parent / 'labels.csv').exists() else ''}") from None
    if target_mode is None:
        target_mode = "L" if im.mode == "L" or _looks_grey(im) else "RGB"
    im = im.convert(target_mode).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(im), hashlib.sha256(data).hexdigest(), original_size, original_mode


def _to_8bit(im: Image.Image) -> Image.Image:
    """8-bit L or RGB: 16-bit and float grey are stretched min-max, alpha is laid on black."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        scaled = np.zeros_like(a) if hi == lo else (a - lo) * (255.0 / (hi - lo))
        return Image.fromarray(np.round(scaled).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode == "1":
        return im.convert("L")
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    return im


def _looks_grey(im: Image.Image) -> bool:
    if im.mode == "L":
        return True
    a = np.asarray(im, dtype=np.int16)
    return int(np.abs(a[..., 0] - a[..., 1]).max()) <= GREY_TOLERANCE and int(np.abs(a[..., 1] - a[..., 2]).max()) <= GREY_TOLERANCE


# --- the cache entry ---------------------------------------------------------------------------

def _write_entry(entry: Path, decoded: DecodedImages) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        np.save(tmp / "images.npy", decoded.images)
        meta = dict(version=CACHE_VERSION, size=decoded.size, ids=decoded.ids, labels=decoded.labels.tolist(),
                    sha256=decoded.sha256, original_sizes=decoded.original_sizes, modes=decoded.modes)
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            os.rename(tmp, entry)
        except OSError:  # another process finished the same entry first: theirs is as good
            if not (entry / "meta.json").is_file():
                shutil.rmtree(entry, ignore_errors=True)
                os.rename(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_entry(entry: Path) -> DecodedImages:
    meta = json.loads((entry / "meta.json").read_text())
    return DecodedImages(
        images=np.load(entry / "images.npy", mmap_mode="r"), ids=tuple(meta["ids"]),
        labels=np.asarray(meta["labels"], dtype=np.int64), sha256=tuple(meta["sha256"]),
        original_sizes=tuple(tuple(s) for s in meta["original_sizes"]), modes=tuple(meta["modes"]),
        size=meta["size"], path=entry,
    )
