"""One image file read as a viewer shows it, or refused in one line naming the file and the fix.

Pillow reads most formats; three things it gets wrong or cannot read are handled here:

- **16-bit colour PNG** (a DICOM export with 12-bit data in R = G = B): Pillow keeps only the high byte of each
  sample. Its header says 16 bits, so it is read at full depth with OpenCV; equal channels become one 16-bit grey
  image that goes through the dataset's intensity mapping (:mod:`medimg.data.intensity`), channels that differ
  are refused (medimg maps beyond-8-bit intensities of grey images only).
- **Several pages or frames** (multi-page TIFF, animated GIF, multi-frame DICOM): refused, since a model takes
  one image per file and silently taking the first page would drop the rest; the message says how to split them.
- **DICOM** (``.dcm``, or the ``DICM`` mark at byte 128), read with pydicom (Mason et al., pydicom): the modality
  LUT (rescale slope and intercept: CT in Hounsfield units) is applied, MONOCHROME1 is inverted so that higher is
  brighter, and, under ``--intensity auto``, the header's window (Window Center/Width) or VOI LUT is used, as a
  viewer would; without one, or with any other ``--intensity``, the rescaled values go through the dataset's
  mapping (windows are then in the rescaled units: Hounsfield units for CT).

Images larger than the pixel limit (Pillow's guard against decompression bombs, 89,478,485 pixels by default)
are refused naming the file and the option that raises the limit (``medimg --max-image-pixels N`` or
``$MEDIMG_MAX_IMAGE_PIXELS``); Pillow's own warning never reaches the user.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from medimg.errors import MedimgError

MAX_PIXELS_ENV = "MEDIMG_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DICOM_SUFFIXES = (".dcm", ".dicom")
STORED_AS = "medimg_stored_as"  # Image.info key: how a file was stored when its pixels were read into another mode


def max_pixels() -> int:
    """The pixel limit: ``$MEDIMG_MAX_IMAGE_PIXELS`` (set by ``medimg --max-image-pixels``), else Pillow's default."""
    text = os.environ.get(MAX_PIXELS_ENV)
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise MedimgError(f"${MAX_PIXELS_ENV}={text!r} is not a positive whole number of pixels: set it to e.g. "
                          f"200000000, or unset it for Pillow's limit of {DEFAULT_MAX_PIXELS:,}")
    return value


def is_dicom(path: Path, head: bytes | None = None) -> bool:
    """A DICOM file: by its suffix, or by the ``DICM`` mark after the 128-byte preamble (``head``: the file's first
    132 bytes, if the caller has them; an unreadable file is not DICOM here, and says why when it is read)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if head is None:
        try:
            head = _head(path)
        except MedimgError:
            return False
    return len(head) >= 132 and head[128:132] == b"DICM"


def _labels_hint(path: Path) -> str:
    return " and its labels.csv row" if (path.parent.parent / "labels.csv").exists() else ""


def _too_large(path: Path, size: str, limit: int) -> MedimgError:
    """The refusal of an image over the pixel limit (``size``: its pixel count and a comma, or "")."""
    return MedimgError(f"{path} is {size}larger than the limit of {limit:,} pixels (Pillow's guard against "
                       f"decompression bombs): if you trust the file, raise the limit with medimg --max-image-pixels N "
                       f"(or ${MAX_PIXELS_ENV}=N), or shrink the image")


def _several(path: Path, frames: int, what: str = "pages or frames") -> MedimgError:
    """The refusal of a file of several pages or frames (multi-page TIFF, animated GIF, multi-frame DICOM)."""
    return MedimgError(f"{path} holds {frames} {what}, and medimg takes one image per file: save each one as its own "
                       f"file, or save only the one you mean in its place{_labels_hint(path)}")


def _refuse_decompression_bombs() -> None:
    """Pillow's warning for an image over the pixel limit raised as an error, process-wide and for good: over the
    limit is refused, not warned. Set once and never undone, since ``warnings.catch_warnings`` around each read
    is not thread-safe (images are read by several threads: one thread leaving it restored the filters another
    was reading under, which then warned instead of refusing)."""
    if not any(action == "error" and category is Image.DecompressionBombWarning
               for action, _, category, _, _ in warnings.filters):
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def read_image(path: Path, *, load: bool = True, voi: bool = True) -> tuple[bytes, Image.Image]:
    """The file's bytes (empty unless ``load``) and its image, as a viewer shows it before any resizing.

    ``load=False`` reads only what the header says (the mode of a 16-bit colour PNG read as grey is ``I;16``).
    ``voi``: a DICOM file's own window or VOI LUT is applied (``--intensity auto``); else its rescaled values are
    returned as a float image (mode ``F``). Raises :class:`MedimgError` naming the file for an image that cannot
    be read, has several pages or frames, or exceeds :func:`max_pixels`.
    """
    try:
        data = path.read_bytes() if load else b""
    except OSError as err:
        raise MedimgError(f"cannot read {path} ({err.strerror}): make the file readable") from None
    head = data[:132] if load else _head(path)
    if is_dicom(path, head):
        return data, _read_dicom(path, data if load else None, voi=voi)
    limit = max_pixels()
    Image.MAX_IMAGE_PIXELS = limit
    _refuse_decompression_bombs()
    try:
        im = Image.open(io.BytesIO(data) if load else path)
        if load:
            im.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise _too_large(path, _stated_size(err), limit) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise MedimgError(f"cannot decode {path} ({err}): replace the file with a valid image or remove it"
                          f"{_labels_hint(path)}") from None
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        im.close()
        raise _several(path, frames)
    if head.startswith(PNG_SIGNATURE) and head[24:25] == b"\x10" and head[25:26] in (b"\x02", b"\x06"):
        stored = im
        im = _sixteen_bit_colour_png(path, stored, load=load)
        stored.close()
    return data, im


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)
    except OSError as err:
        raise MedimgError(f"cannot read {path} ({err.strerror}): make the file readable") from None


def _stated_size(err: Exception) -> str:
    import re

    found = re.search(r"\((\d+) pixels\)", str(err))
    return f"{int(found[1]):,} pixels, " if found else ""


def _sixteen_bit_colour_png(path: Path, im: Image.Image, *, load: bool) -> Image.Image:
    """A PNG whose header says 16-bit RGB(A), at full depth: one 16-bit grey image when R = G = B."""
    import cv2

    if not load:  # the header alone: what it will be if its channels agree (checked when it is read)
        return Image.new("I;16", im.size)
    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if stored is None or stored.dtype != np.uint16 or stored.ndim != 3:
        raise MedimgError(f"cannot decode {path} at 16 bits per sample: save it again as a PNG, or as 8-bit RGB")
    rgb = stored[..., :3]
    if (rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any():
        raise MedimgError(f"{path} is a 16-bit colour PNG whose channels differ: medimg maps intensities beyond 8 bits "
                          f"for grey images only; save it as 8-bit RGB (what a viewer shows) or, if it is grey, as a "
                          f"16-bit grey PNG{_labels_hint(path)}")
    grey = Image.fromarray(np.ascontiguousarray(rgb[..., 0]))  # mode I;16
    grey.info[STORED_AS] = "I;16 (16-bit RGB, channels equal)"
    return grey


def _read_dicom(path: Path, data: bytes | None, *, voi: bool) -> Image.Image:
    """A DICOM file's pixels as a viewer shows them (see the module's docstring); one frame only."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data) if data is not None else path, stop_before_pixels=data is None)
    except (InvalidDicomError, OSError, ValueError, EOFError) as err:
        raise MedimgError(f"cannot read {path} as DICOM ({err}): replace the file or remove it"
                          f"{_labels_hint(path)}") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise _several(path, frames, "frames (a multi-frame DICOM file)")
    rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    limit = max_pixels()
    if rows * columns > limit:
        raise _too_large(path, f"{rows * columns:,} pixels, ", limit)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    colour = not photometric.startswith("MONOCHROME")
    if data is None:  # the header alone: the mode it will have
        return Image.new("RGB" if colour else ("L" if voi and _has_window(ds) else "F"), (columns, rows))
    try:
        pixels = ds.pixel_array
    except Exception as err:  # a compressed transfer syntax without its decoder, a truncated pixel element
        raise MedimgError(f"cannot decode the pixels of {path} ({type(err).__name__}: {err}): save it uncompressed "
                          f"(e.g. with dcmconv +te) or install the decoder pydicom names") from None
    if colour:
        return _stored_as(Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("RGB"), photometric)
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)  # CT: Hounsfield units
    invert = photometric == "MONOCHROME1"  # higher stored values are darker
    if voi and _has_window(ds):
        if "WindowCenter" in ds and "WindowWidth" in ds:
            center, width = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
            # DICOM PS3.3 C.11.2.1.2.1, the linear window, onto 0 .. 1
            shown = np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)
        else:
            shown = np.asarray(apply_voi_lut(pixels, ds), dtype=np.float64)
            bits = int(ds.VOILUTSequence[0].LUTDescriptor[2]) or 16
            shown = np.clip(shown / (2**bits - 1), 0.0, 1.0)
        if invert:
            shown = 1.0 - shown
        return _stored_as(Image.fromarray(np.round(shown * 255).astype(np.uint8), "L"), f"{photometric}, its window")
    return _stored_as(Image.fromarray((-values if invert else values).astype(np.float32), "F"), photometric)


def _stored_as(im: Image.Image, what: str) -> Image.Image:
    im.info[STORED_AS] = f"{im.mode} (DICOM {what})"
    return im


def _has_window(ds) -> bool:
    return ("WindowCenter" in ds and "WindowWidth" in ds) or "VOILUTSequence" in ds


def _first(value) -> float:
    """A DICOM value that may hold several (Window Center 40\\400): its first."""
    try:
        return float(value[0])
    except (TypeError, IndexError):
        return float(value)
