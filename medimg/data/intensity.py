"""How stored intensities beyond 8 bits become the 8-bit pixels a model sees: one recorded choice per dataset.

A 12-bit DICOM export saved as a 16-bit PNG, or a CT slice in signed Hounsfield units, carries its
class signal in absolute intensity. Stretching each image to its own minimum and maximum erases it
(two classes around 800 and 3000 of 4095 both come out with a mean near 127), so the mapping is one
linear rule for the whole dataset, chosen here and recorded with the decoded images and every run:

``auto``
    ``bit-depth`` for unsigned integer images, ``dataset-range`` for signed or floating-point ones.
``bit-depth``
    ``0 .. 2**b - 1`` onto ``0 .. 255``, where ``b`` is the smallest of 8, 10, 12, 14 and 16 bits
    that holds the dataset's largest value (what a DICOM viewer does with *Bits Stored*). Ratios of
    intensities are kept.
``dataset-range``
    the dataset's smallest to largest stored value onto ``0 .. 255``.
``window:LEVEL,WIDTH``
    a CT-style window: ``LEVEL - WIDTH/2 .. LEVEL + WIDTH/2`` onto ``0 .. 255``, clipped outside
    (``window:40,400`` is a soft-tissue window in Hounsfield units).
``per-image``
    each image's own minimum to maximum: the old behaviour, only on request.

8-bit images (L, RGB, palette) are shown as stored under every rule: they already are what a viewer
shows. Only images stored with more than 8 bits per pixel (Pillow modes ``I;16*``, ``I`` and ``F``)
are mapped.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from medimg.errors import MedimgError

HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "I;16S", "F")
BIT_DEPTHS = (8, 10, 12, 14, 16)
CHOICES = ("auto", "bit-depth", "dataset-range", "per-image", "window:LEVEL,WIDTH")


@dataclass(frozen=True)
class IntensityMapping:
    """The resolved rule of a dataset: stored values ``low .. high`` become ``0 .. 255``.

    ``rule`` is ``bit-depth``, ``dataset-range``, ``window``, ``per-image`` or ``none`` (no image
    of the dataset is stored beyond 8 bits). ``low``/``high`` are in stored units (None for
    ``per-image`` and ``none``); ``bits`` is the detected depth for ``bit-depth``.
    """

    requested: str
    rule: str
    low: float | None = None
    high: float | None = None
    bits: int | None = None
    high_depth_images: int = 0  # how many images were stored beyond 8 bits
    stored_low: float | None = None  # the dataset's smallest and largest stored value (images beyond 8 bits)
    stored_high: float | None = None
    warning: str | None = None  # a window that clips most of the dataset (:meth:`saturation_warning`)

    def apply(self, a: np.ndarray) -> np.ndarray:
        """A stored high-depth array (H, W) -> uint8 (H, W) under this rule."""
        a = np.asarray(a, dtype=np.float64)
        if self.rule == "per-image" or self.low is None:
            low, high = float(a.min()), float(a.max())
        else:
            low, high = self.low, self.high
        if high <= low:
            return np.zeros(a.shape, np.uint8)
        return np.round(np.clip((a - low) * (255.0 / (high - low)), 0, 255)).astype(np.uint8)

    def describe(self) -> str:
        """One line for ``describe`` and the dataset card."""
        if self.rule == "none":
            return "8-bit images, shown as stored"
        what = {"bit-depth": f"{self.bits}-bit depth", "dataset-range": "the dataset's range",
                "window": "the window", "per-image": "each image's own range (per-image stretch)"}[self.rule]
        span = "" if self.low is None else f" {self.low:g}..{self.high:g}"
        stored = "" if self.stored_low is None else f" (stored values {self.stored_low:g}..{self.stored_high:g})"
        return f"{self.high_depth_images} image(s) stored beyond 8 bits{stored} mapped by {what}{span} onto 0..255"

    def saturation_warning(self, mapped: list[np.ndarray], where: str) -> str | None:
        """A warning when a window clips most of the dataset: ``mapped`` are the dataset's images stored beyond 8 bits
        after this mapping (uint8). More than half their pixels at white, or nearly all at black, means the window
        and the stored values are in different units (CT stored as HU + 1024, read with a window in HU)."""
        if self.rule != "window" or not mapped:
            return None
        pixels = sum(a.size for a in mapped)
        white = sum(int((a == 255).sum()) for a in mapped) / pixels
        black = sum(int((a == 0).sum()) for a in mapped) / pixels
        if white <= 0.5 and black <= 0.95:
            return None
        side = f"{white:.0%} of their pixels to white" if white > 0.5 else f"{black:.0%} of their pixels to black"
        level, width = (self.low + self.high) / 2, self.high - self.low
        hint = ""
        if self.stored_low is not None and self.stored_low >= 0 and level < self.stored_low + width:
            hint = (f"; if the files store HU + 1024 (unsigned CT exports do), use --intensity "
                    f"window:{level + 1024:g},{width:g}")
        return (f"{where}: the intensity window {self.low:g}..{self.high:g} maps {side} (stored values "
                f"{self.stored_low:g}..{self.stored_high:g}): windows are in stored units{hint}")

    def to_dict(self) -> dict:
        return asdict(self)


def parse(text: str) -> tuple[str, tuple[float, float] | None]:
    """Check an ``intensity`` setting; return its rule and, for a window, (level, width).

    Raises :class:`MedimgError` naming the accepted forms.
    """
    text = str(text).strip()
    if text in ("auto", "bit-depth", "dataset-range", "per-image"):
        return text, None
    if text.startswith("window:"):
        try:
            level, width = (float(v) for v in text.removeprefix("window:").split(","))
        except ValueError:
            level, width = math.nan, math.nan
        if math.isfinite(level) and math.isfinite(width) and width > 0:
            return "window", (level, width)
        if math.isfinite(width) and width <= 0:
            raise MedimgError(f"intensity window {text!r} has width {width:g}: the width must be positive, "
                              f"e.g. window:40,400")
    raise MedimgError(f"unknown intensity mapping {text!r}: choose one of {', '.join(CHOICES)} "
                      f"(for example window:40,400 for a soft-tissue CT window)")


def needs_statistics(requested: str) -> bool:
    """Whether resolving ``requested`` needs the dataset's stored minimum and maximum."""
    return parse(requested)[0] in ("auto", "bit-depth", "dataset-range")


def resolve(requested: str, extrema: list[tuple[float, float, bool]], *, where: str = "the dataset") -> IntensityMapping:
    """The dataset's mapping from the (min, max, is_integer) of each image stored beyond 8 bits.

    An empty ``extrema`` means every image is 8-bit: nothing is mapped. ``bit-depth`` on signed or
    floating-point data is refused (there is no bit depth to read): use ``dataset-range`` or a window.
    """
    rule, window = parse(requested)
    n = len(extrema)
    if n == 0:
        return IntensityMapping(requested=requested, rule="none")
    low = min(e[0] for e in extrema)
    high = max(e[1] for e in extrema)
    stored = dict(stored_low=float(low), stored_high=float(high))
    unsigned_int = low >= 0 and all(e[2] for e in extrema)
    if rule == "auto":
        rule = "bit-depth" if unsigned_int else "dataset-range"
    if rule == "bit-depth":
        if not unsigned_int:
            raise MedimgError(f"{where} holds signed or floating-point images (values {low:g}..{high:g}), which have "
                              f"no bit depth: use --intensity dataset-range or a CT window such as window:40,400")
        bits = next((b for b in BIT_DEPTHS if high <= 2**b - 1), None)
        if bits is None:
            bits = int(math.ceil(math.log2(high + 1)))
        return IntensityMapping(requested, "bit-depth", 0.0, float(2**bits - 1), bits, n, **stored)
    if rule == "dataset-range":
        return IntensityMapping(requested, "dataset-range", float(low), float(high), None, n, **stored)
    if rule == "window":
        level, width = window
        return IntensityMapping(requested, "window", level - width / 2, level + width / 2, None, n, **stored)
    return IntensityMapping(requested, "per-image", None, None, None, n, **stored)
