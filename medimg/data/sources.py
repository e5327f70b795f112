"""Turn a dataset name or a folder path into records of images: the one entry point of the readers.

Opening is cheap (file listings, labels.csv, npz headers); nothing is decoded here. Decoding
happens once, in :mod:`medimg.data.cache`. The readers are :mod:`medimg.data.image_folder`,
:mod:`medimg.data.medmnist_files` and :mod:`medimg.data.synthetic`; each returns a
:class:`~medimg.data.records.DatasetSource`.
"""
from __future__ import annotations

import os
from pathlib import Path

from medimg.errors import MedimgError
from medimg.identity import identity
from medimg.paths import check_readable_dir, data_dir
from medimg.data.image_folder import open_image_folder
from medimg.data.medmnist_files import open_medmnist
from medimg.data.records import DatasetSource
from medimg.data.registry import REGISTRY, DatasetSpec, Lineage, get_spec
from medimg.data.synthetic import synthetic_source


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
        return synthetic_source(spec, n_per_class=synthetic_n_per_class, size=synthetic_size, seed=synthetic_seed)
    base = data_dir(data_dir_override)
    if spec.kind == "medmnist":
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
    digest = identity(dict(folder=str(resolved)), digits=8)  # where it is: two folders of one name differ
    return DatasetSpec(
        name=f"folder-{resolved.name}-{digest}", kind="folder", modality="colour", location=str(resolved),
        description=f"image folder {resolved}", citation="user-supplied folder", licence="unknown",
        lineage=(Lineage(f"folder:{resolved}"),), extra={"modality_from_images": True},
    )
