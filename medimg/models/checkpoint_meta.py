"""What a weights file says of itself, read without loading it or importing PyTorch: the safetensors header's
metadata, and the medimg record of a SimCLR checkpoint (:func:`read_ssl_meta`). Light, so that what only reads
records (the study's time, a job process) needs no network code."""
from __future__ import annotations

import json
from pathlib import Path

from medimg.errors import MedimgError

SSL_FORMAT = "medimg-simclr-backbone-v1"


def _safetensors_metadata(path: Path) -> dict:
    """The string metadata of a ``.safetensors`` file's header ({} for another file). Raises :class:`MedimgError`
    naming the file for a damaged header."""
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as fh:
            return dict(fh.metadata() or {})
    except Exception as err:  # safetensors raises its own error types for a damaged header
        raise MedimgError(f"{path} is not a readable safetensors file ({err}): replace it") from None


def read_ssl_meta(path) -> dict | None:
    """The medimg record of a SimCLR checkpoint, or None for any other weights file."""
    raw = _safetensors_metadata(Path(path)).get("medimg")
    meta = json.loads(raw) if raw else None
    return meta if meta and meta.get("format") == SSL_FORMAT else None
