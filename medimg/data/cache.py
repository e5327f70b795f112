"""Decode once: every image decoded, converted and resized a single time, then read from disk.

A cache entry is a folder ``<cache dir>/images/<dataset>-<size>px-<fingerprint>-<intensity>/``
holding ``images.npy`` (uint8, N x H x W x C, memory-mapped on read) and ``meta.json`` (ids,
labels, content hashes, displayed sizes, stored modes, EXIF orientations, perceptual hashes and the
dataset's intensity mapping). The fingerprint covers every file's name and bytes (:mod:`medimg.data.fingerprint`), and
the key holds every decoding setting a user can choose, so a changed folder or setting gets a new
entry. An entry is built in a temporary folder and renamed into place only when complete: a
failure leaves nothing behind.

What is decoded is what a viewer shows: the EXIF orientation is applied (a phone photo stored
sideways is turned upright), and images stored beyond 8 bits go through one intensity mapping for
the whole dataset (:mod:`medimg.data.intensity`), never a per-image stretch unless asked for.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from medimg.errors import MedimgError, warn
from medimg.paths import cache_dir, check_cache_writable, writing_cache
from medimg.data import intensity as intensity_rules
from medimg.data.intensity import HIGH_DEPTH_MODES, IntensityMapping
from medimg.data.image_file import STORED_AS, read_image
from medimg.data.medmnist_files import read_medmnist_images
from medimg.data.records import DatasetSource, ImageRecord
from medimg.data.synthetic import synthetic_images

CACHE_VERSION = 4  # bump when decoding changes, so old entries are not reused (2: EXIF, intensity, dhash; 3: 16-bit RGB
# PNG, DICOM; 4: which images carried transparency and which are blank, recorded)
GREY_TOLERANCE = 3  # max channel difference still counted as grey (JPEG chroma noise)
EXIF_ORIENTATION = 0x0112
# near-duplicate hashing: imagehash's difference hash with 16 x 16 = 256 bits, of the image at 64 px
HASH_SIZE = 16
HASH_IMAGE_SIZE = 64


@dataclass(frozen=True)
class DecodedImages:
    """A dataset's images at one size, in the order of ``source.records``."""

    images: np.ndarray  # (N, size, size, channels) uint8
    ids: tuple[str, ...]
    labels: np.ndarray
    sha256: tuple[str, ...]  # of the file's bytes (folders) or the pixel array (npz, generated)
    original_sizes: tuple[tuple[int, int], ...]  # (width, height) as displayed (EXIF applied), before resizing
    modes: tuple[str, ...]  # PIL mode as stored
    size: int
    path: Path | None = None  # the cache entry, when cached
    orientations: tuple[int, ...] = ()  # EXIF orientation tag applied to each image (1: stored upright)
    dhash: tuple[str, ...] = ()  # 256-bit difference hash (64 hex digits) of each displayed image at 64 px
    intensity: dict = field(default_factory=dict)  # the dataset's IntensityMapping, as a dict
    transparent: tuple[bool, ...] = ()  # whether each image carried transparency (alpha below opaque), laid on black
    blank: tuple[int, ...] = ()  # positions of images that are one flat value as decoded (nothing to learn from)

    @property
    def channels(self) -> int:
        return self.images.shape[-1]

    @property
    def modality(self) -> str:
        return "grey" if self.channels == 1 else "colour"

    @property
    def rotated(self) -> int:
        """How many images carried an EXIF orientation other than upright (and were turned)."""
        return sum(o not in (0, 1) for o in self.orientations)

    @property
    def transparent_count(self) -> int:
        """How many images carried transparency (an alpha channel or palette transparency below opaque somewhere)."""
        return sum(self.transparent)


def requested_intensity(source: DatasetSource, intensity: str = "auto") -> str:
    """The mapping asked for: ``intensity`` unless "auto", then the registered dataset's choice."""
    chosen = intensity if intensity != "auto" else source.spec.intensity
    intensity_rules.parse(chosen)  # a bad setting fails before anything is decoded
    return chosen


def cache_key(source: DatasetSource, size: int, intensity: str = "auto") -> str:
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", intensity)
    return f"{source.name}-{size}px-{source.fingerprint[:16]}-{slug}-v{CACHE_VERSION}"


def load_images(source: DatasetSource, size: int, *, intensity: str = "auto", use_cache: bool = True,
                workers: int | None = None, progress: bool = True) -> DecodedImages:
    """Images of ``source`` at ``size`` x ``size`` pixels, decoding only on the first call.

    ``intensity`` is the mapping of images stored beyond 8 bits (:mod:`medimg.data.intensity`);
    "auto" takes the registered dataset's choice. Raises :class:`MedimgError` for a file that
    cannot be decoded, naming it.
    """
    if size < 8:
        raise MedimgError(f"image size {size} is too small: use at least 8 pixels")
    intensity = requested_intensity(source, intensity)
    if source.spec.kind == "synthetic":
        use_cache = False  # generated in memory, cheaper than a disk round trip
    entry = cache_dir() / "images" / cache_key(source, size, intensity)
    if use_cache and (entry / "meta.json").is_file():
        cached = _read_entry(entry)
        if cached.ids == tuple(r.id for r in source.records):
            return _said(_check_declared_modality(source, cached))
    if use_cache:
        check_cache_writable()  # before anything is decoded, as --out is checked
    decoded = _check_declared_modality(source, _decode_all(source, size, intensity, workers=workers, progress=progress))
    if not use_cache:
        return _said(decoded)
    _write_entry(entry, decoded)
    return _said(_read_entry(entry))


def _said(decoded: DecodedImages) -> DecodedImages:
    """``decoded``, its warnings issued (the intensity mapping's; blank images): on every read, not only the first
    decoding."""
    if (decoded.intensity or {}).get("warning"):
        warn(decoded.intensity["warning"])
    if decoded.blank:
        names = ", ".join(decoded.ids[i] + (" (it carried transparency)" if decoded.transparent
                                            and decoded.transparent[i] else "") for i in decoded.blank[:5])
        warn(f"{len(decoded.blank)} image(s) are one flat value as decoded (transparency is laid on black), so they "
             f"hold nothing to learn from and identical copies may carry different labels: {names}"
             f"{', ...' if len(decoded.blank) > 5 else ''} (remove them, or save them without transparency)")
    return decoded


def blank_positions(images: np.ndarray) -> tuple[int, ...]:
    """Positions of the images of ``images`` ``(N, H, W, C)`` whose every pixel and channel holds one value."""
    flat = images.reshape(len(images), -1)
    return tuple(int(i) for i in np.flatnonzero(flat.min(1) == flat.max(1))) if len(flat) else ()


def _check_declared_modality(source: DatasetSource, decoded: DecodedImages) -> DecodedImages:
    """A study file's folder is declared grey or colour; images of the other kind are refused, not converted."""
    declared = source.spec.extra.get("declared_modality")
    if declared is not None and declared != decoded.modality:
        raise MedimgError(f"{source.root}: {source.spec.extra.get('where') or 'the study file'} says {source.name} is "
                          f"{declared} but its images are {decoded.modality}: write modality: {decoded.modality} for it")
    return decoded


# --- decoding ----------------------------------------------------------------------------------

def _decode_all(source: DatasetSource, size: int, intensity: str, *, workers: int | None,
                progress: bool) -> DecodedImages:
    kind = source.spec.kind
    if kind == "folder":
        return _decode_folder(source, size, intensity, workers=workers, progress=progress)
    arrays = read_medmnist_images(source) if kind == "medmnist" else synthetic_images(source)
    mode = "L" if arrays.shape[-1] == 1 else "RGB"
    h, w = arrays.shape[1:3]
    resized = arrays if (h, w) == (size, size) else np.stack([_resize_array(a, size) for a in arrays])
    return DecodedImages(
        images=resized, ids=tuple(r.id for r in source.records), labels=source.labels,
        sha256=tuple(hashlib.sha256(a.tobytes()).hexdigest() for a in arrays),
        original_sizes=((w, h),) * len(arrays), modes=(mode,) * len(arrays), size=size,
        orientations=(1,) * len(arrays), dhash=tuple(difference_hash(_as_image(a)) for a in arrays),
        intensity=IntensityMapping(requested=intensity, rule="none").to_dict(),
        transparent=(False,) * len(arrays), blank=blank_positions(resized),
    )


def _as_image(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)


def _resize_array(a: np.ndarray, size: int) -> np.ndarray:
    out = np.asarray(_as_image(a).resize((size, size), Image.Resampling.BICUBIC))
    return out[..., None] if out.ndim == 2 else out


def difference_hash(im: Image.Image) -> str:
    """The 256-bit difference hash (imagehash.dhash, 16 x 16) of ``im`` resized to 64 px, as 64 hex digits.

    Near-identical images (neighbouring CT slices, repeated ultrasound frames, re-encoded copies)
    differ in a few bits; see :func:`medimg.data.splits.near_duplicate_pairs`.
    """
    import imagehash

    small = im.convert("L").resize((HASH_IMAGE_SIZE, HASH_IMAGE_SIZE), Image.Resampling.BICUBIC)
    return str(imagehash.dhash(small, hash_size=HASH_SIZE))


def _pool_map(fn, records, workers: int | None, desc: str, progress: bool) -> list:
    from tqdm.auto import tqdm

    pool = ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1))
    try:
        return list(tqdm(pool.map(fn, records), total=len(records), desc=desc, disable=not progress, leave=False))
    finally:
        pool.shutdown(cancel_futures=True)  # a bad file stops the rest at once


def _decode_folder(source: DatasetSource, size: int, intensity: str, *, workers: int | None,
                   progress: bool) -> DecodedImages:
    records = source.records
    # one mapping for the whole dataset, from the stored range of every image beyond 8 bits
    voi = str(intensity).strip() == "auto"  # a DICOM file's own window is what --intensity auto shows
    extrema = [e for e in _pool_map(lambda r: _stored_extrema(r, voi), records, workers, f"scan {source.name}",
                                    progress) if e]
    mapping = intensity_rules.resolve(intensity, extrema, where=str(source.root))
    # A registered dataset's modality is known; a user's folder is grey only if every image is.
    target = None if source.spec.extra.get("modality_from_images") else ("L" if source.spec.modality == "grey" else "RGB")
    decoded = _pool_map(lambda r: decode_file(r, size, target, mapping), records, workers,
                        f"decode {source.name} @{size}px", progress)
    arrays = [d.array for d in decoded]
    saturated = mapping.saturation_warning([a for a, d in zip(arrays, decoded) if d.mode.split()[0] in HIGH_DEPTH_MODES],
                                           str(source.root))
    if saturated:  # kept with the entry: said again whenever it is read
        mapping = replace(mapping, warning=saturated)
    if target is None:
        all_grey = all(a.ndim == 2 for a in arrays)
        arrays = [a if all_grey or a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in arrays]
    stack = np.stack(arrays)
    if stack.ndim == 3:
        stack = stack[..., None]
    return DecodedImages(
        images=stack, ids=tuple(r.id for r in records), labels=source.labels,
        sha256=tuple(d.sha256 for d in decoded), original_sizes=tuple(d.displayed_size for d in decoded),
        modes=tuple(d.mode for d in decoded), size=size, orientations=tuple(d.orientation for d in decoded),
        dhash=tuple(d.dhash for d in decoded), intensity=mapping.to_dict(),
        transparent=tuple(d.transparent for d in decoded), blank=blank_positions(stack),
    )


@dataclass(frozen=True)
class DecodedFile:
    """One file as a viewer shows it, at the cache size."""

    array: np.ndarray  # uint8 (size, size) grey or (size, size, 3) RGB
    sha256: str  # of the file's bytes
    displayed_size: tuple[int, int]  # (width, height) after the EXIF orientation
    mode: str  # PIL mode as stored
    orientation: int  # the EXIF orientation tag (1: upright, 6 and 8: turned by 90 degrees)
    dhash: str  # difference_hash of the displayed image
    transparent: bool = False  # it carried transparency (laid on black)


def _stored_extrema(record: ImageRecord, voi: bool = True) -> tuple[float, float, bool] | None:
    """(min, max, is_integer) of an image stored beyond 8 bits; None for an 8-bit one."""
    _, header = read_image(record.path, load=False, voi=voi)  # the header says the mode
    header.close()
    if header.mode not in HIGH_DEPTH_MODES:
        return None
    _, im = read_image(record.path, voi=voi)
    low, high = im.getextrema()
    return float(low), float(high), im.mode != "F"


def decode_file(record: ImageRecord, size: int, target_mode: str | None,
                mapping: IntensityMapping | None = None) -> DecodedFile:
    """Decode one image file as a viewer shows it, to uint8 grey (H, W) or RGB (H, W, 3) at ``size``.

    The EXIF orientation is applied; an image stored beyond 8 bits goes through ``mapping`` (the
    dataset's, from :func:`medimg.data.intensity.resolve`; None: each image's own range).
    ``target_mode`` is ``"L"``, ``"RGB"`` or ``None`` (keep grey images grey and colour ones colour).
    """
    data, im = read_image(record.path, voi=mapping is None or mapping.requested == "auto")
    original_mode = im.info.get(STORED_AS, im.mode)  # e.g. "I;16 (16-bit RGB, channels equal)"
    orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
    im = ImageOps.exif_transpose(im)
    displayed_size = im.size
    transparent = _is_transparent(im)
    im = _to_8bit(im, mapping or IntensityMapping(requested="per-image", rule="per-image"))
    if target_mode is None:
        target_mode = "L" if im.mode == "L" or _looks_grey(im) else "RGB"
    im = im.convert(target_mode)
    dhash = difference_hash(im)
    im = im.resize((size, size), Image.Resampling.BICUBIC)
    return DecodedFile(np.asarray(im), hashlib.sha256(data).hexdigest(), displayed_size, original_mode,
                       orientation, dhash, transparent)


def _is_transparent(im: Image.Image) -> bool:
    """Whether ``im`` has an alpha channel (or palette transparency) below opaque anywhere."""
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode not in ("RGBA", "LA", "PA", "RGBa", "La"):
        return False
    return im.getchannel("A").getextrema()[0] < 255


def _to_8bit(im: Image.Image, mapping: IntensityMapping) -> Image.Image:
    """8-bit L or RGB: images beyond 8 bits through ``mapping``, alpha laid on black."""
    if im.mode in HIGH_DEPTH_MODES:
        return Image.fromarray(mapping.apply(np.asarray(im)), "L")
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
    """``decoded`` into ``entry``, made in a temporary folder beside it and renamed into place when whole; readable
    by others (0755 and 0644: a lab shares one ``$MEDIMG_CACHE_DIR``). A full disk or an unwritable folder is the
    user's error naming the room needed (:func:`medimg.paths.writing_cache`); nothing half-written is left."""
    with writing_cache("write the image cache", needed_bytes=decoded.images.nbytes + 200 * len(decoded.ids)):
        entry.parent.mkdir(parents=True, exist_ok=True)
        _write_entry_files(entry, decoded)


def _write_entry_files(entry: Path, decoded: DecodedImages) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        np.save(tmp / "images.npy", decoded.images)
        meta = dict(version=CACHE_VERSION, size=decoded.size, ids=decoded.ids, labels=decoded.labels.tolist(),
                    sha256=decoded.sha256, original_sizes=decoded.original_sizes, modes=decoded.modes,
                    orientations=decoded.orientations, dhash=decoded.dhash, intensity=decoded.intensity,
                    transparent=decoded.transparent, blank=decoded.blank)
        (tmp / "meta.json").write_text(json.dumps(meta))
        for name in ("images.npy", "meta.json"):
            os.chmod(tmp / name, 0o644)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700: another user of a shared cache could not read the entry
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
        size=meta["size"], path=entry, orientations=tuple(meta["orientations"]), dhash=tuple(meta["dhash"]),
        intensity=meta["intensity"], transparent=tuple(meta.get("transparent", ())), blank=tuple(meta.get("blank", ())),
    )
