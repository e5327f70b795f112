"""Content fingerprints of a dataset's files: the same bytes under the same names give the same fingerprint on
every machine, wherever the data directory lies and whenever its files were copied.

A fingerprint is what a run records of the data it saw (``config.json``: ``data.target.fingerprint``, with
``fingerprint_of: content``); reading a run back on the same data (Grad-CAM, a rerun chapter) checks it, and the
image and feature caches are keyed by it. Hashing reads every file once per process (SHA-256, about 0.05 s for
BUSI's 40 MB here), so a fresh clone beside a fresh copy of the data reuses what the committed runs recorded.
Runs written before fingerprints covered content recorded one of paths, sizes and modification times, which a
copy changes: :meth:`medimg.finetune.runs.RunResult.prepared_data` checks those by their split and test predictions.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

FINGERPRINT_OF = "content"  # recorded beside each fingerprint: what it covers


def file_sha256(path: Path) -> str:
    """SHA-256 of one file's bytes, hex, read in 1 MiB blocks (also how weight files are identified:
    :mod:`medimg.models.backbones`, :mod:`medimg.probe.features`)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


PROGRESS_FROM = 5000  # files: a fingerprint of more shows a progress bar on a terminal (100k files: seconds)


def content_fingerprint(files: dict[str, Path], *, desc: str = "fingerprint") -> str:
    """SHA-256 over each file's name (as the dataset knows it, relative to its root) and the SHA-256 of its
    bytes, in name order: it changes when a file is added, removed, renamed or changed, and with nothing else.
    From :data:`PROGRESS_FROM` files on, a progress bar on stderr when it is a terminal."""
    from tqdm import tqdm

    h = hashlib.sha256()
    for name in tqdm(sorted(files), desc=desc, leave=False, disable=None if len(files) >= PROGRESS_FROM else True):
        h.update(f"{name}\0{file_sha256(files[name])}\n".encode())
    return h.hexdigest()
