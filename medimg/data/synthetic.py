"""Generated images with a signal a small model can learn, deterministic from a seed.

Each image is smooth background plus noise with one faint shape whose kind is the class
(disc, square, cross) at a random place and scale. Colour images tint shape and background
differently, so a colour model has colour to use as well as shape.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from medimg.data.registry import DatasetSpec
from medimg.data.records import DatasetSource, ImageRecord

SHAPES = ("disc", "square", "cross")
_WRITABLE_MODES = {"png": {"L", "I;16", "P", "RGB", "RGBA"}, "jpg": {"L", "RGB", "CMYK"},
                   "jpeg": {"L", "RGB", "CMYK"}, "bmp": {"L", "P", "RGB"}}


def synthetic_image(shape: str, size: int, rng: np.random.Generator, colour: bool) -> np.ndarray:
    """One (size, size, 1|3) uint8 image showing ``shape``."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx = rng.uniform(0.3, 0.7, 2)
    r = rng.uniform(0.12, 0.25)
    dy, dx = np.abs(yy - cy), np.abs(xx - cx)
    mask = {
        "disc": (dy**2 + dx**2) <= r**2,
        "square": (dy <= r * 0.85) & (dx <= r * 0.85),
        "cross": ((dy <= r / 4) & (dx <= r)) | ((dx <= r / 4) & (dy <= r)),
    }[shape]
    gradient = rng.uniform(-0.2, 0.2) * (yy - 0.5) + rng.uniform(-0.2, 0.2) * (xx - 0.5)
    channels = 3 if colour else 1
    base = rng.uniform(0.3, 0.5, channels)
    tint = rng.uniform(0.25, 0.4, channels) * (np.array([1.0, 0.4, -0.2])[:channels] if colour else 1.0)
    img = base + gradient[..., None] + mask[..., None] * tint + rng.normal(0, 0.08, (size, size, channels))
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def make_synthetic(n_per_class: int, size: int, seed: int, colour: bool) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, size, size, C) uint8, labels (N,)), classes interleaved."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(len(SHAPES)), n_per_class)
    images = np.stack([synthetic_image(SHAPES[k], size, rng, colour) for k in labels])
    return images, labels


def synthetic_source(spec: DatasetSpec, *, n_per_class: int, size: int, seed: int) -> DatasetSource:
    labels = np.tile(np.arange(len(SHAPES)), n_per_class)
    records = tuple(ImageRecord(id=f"{i:05d}", label=int(k)) for i, k in enumerate(labels))
    params = dict(n_per_class=n_per_class, size=size, seed=seed)
    spec = replace(spec, extra={"synthetic": params})
    return DatasetSource(spec=spec, root=Path("<generated>"), classes=SHAPES, records=records,
                         fingerprint=f"synthetic-{spec.modality}-{n_per_class}-{size}-{seed}", source_size=size)


def synthetic_images(source: DatasetSource) -> np.ndarray:
    p = source.spec.extra["synthetic"]
    images, _ = make_synthetic(p["n_per_class"], p["size"], p["seed"], colour=source.spec.modality == "colour")
    return images


def write_image_folder(root: Path, *, n_per_class: int = 6, size: int = 48, seed: int = 0, colour: bool = True,
                       nested: bool = False, formats: tuple[str, ...] = ("png",), modes: tuple[str, ...] = ("RGB",),
                       labels_csv: bool = False) -> Path:
    """Write a synthetic dataset as an image folder, cycling through file formats and PIL modes.

    For tests and workshops: ``modes`` may mix ``L``, ``I;16``, ``RGB``, ``RGBA``, ``P`` and
    ``CMYK``; ``nested`` puts every other image one subfolder deeper.
    """
    from PIL import Image

    images, labels = make_synthetic(n_per_class, size, seed, colour)
    rows = []
    for i, (img, k) in enumerate(zip(images, labels)):
        fmt, mode = formats[i % len(formats)], modes[(i // len(formats)) % len(modes)]
        if mode not in _WRITABLE_MODES.get(fmt, {mode}):
            fmt = "tif"  # TIFF stores every mode; the other formats refuse some
        sub = Path("images") / SHAPES[k] / (f"batch{i % 3}" if nested and i % 2 else "")
        rel = sub / f"img{i:04d}.{fmt}"
        (root / sub).mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        if mode == "I;16":
            im = Image.fromarray(np.asarray(im.convert("L"), dtype=np.uint16) * 257)
        elif mode != im.mode:
            im = im.convert(mode)
        im.save(root / rel)
        rows.append((rel.as_posix(), SHAPES[k]))
    if labels_csv:
        (root / "labels.csv").write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    return root
