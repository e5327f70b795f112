"""Where medimg reads data and writes caches and runs: one place, each overridable by environment."""
from __future__ import annotations

import os
from pathlib import Path

from medimg.errors import MedimgError

DATA_DIR_ENV = "MEDIMG_DATA_DIR"
CACHE_DIR_ENV = "MEDIMG_CACHE_DIR"
RUNS_DIR_ENV = "MEDIMG_RUNS_DIR"


def _xdg_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def data_dir(override: str | os.PathLike | None = None, *, must_exist: bool = True) -> Path:
    """The data directory: ``override``, else ``$MEDIMG_DATA_DIR``, else ``~/.cache/medimg/data``.

    The default lives in the user's cache so a MedMNIST download has somewhere to go on a
    fresh machine. It is checked to be a readable directory when ``must_exist``.
    """
    if override is not None:
        path, origin = Path(override), "the data directory given"
    elif os.environ.get(DATA_DIR_ENV):
        path, origin = Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    else:
        path, origin = _xdg_cache() / "medimg" / "data", "the default data directory"
    path = path.expanduser()
    if must_exist:
        check_readable_dir(path, f"{origin} ({path})", fix=f"set {DATA_DIR_ENV} to a readable folder of datasets")
    return path


def check_readable_dir(path: Path, what: str, *, fix: str) -> None:
    if not path.exists():
        raise MedimgError(f"{what} does not exist: {fix}")
    if not path.is_dir():
        raise MedimgError(f"{what} is not a directory: {fix}")
    try:
        next(os.scandir(path), None)
    except OSError as err:
        raise MedimgError(f"{what} cannot be read ({err.strerror}): {fix}") from None


def cache_dir() -> Path:
    """Decoded-image caches and split files: ``$MEDIMG_CACHE_DIR`` or ``~/.cache/medimg``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or _xdg_cache() / "medimg").expanduser()


def runs_dir() -> Path:
    """Training runs: ``$MEDIMG_RUNS_DIR`` or ``./runs``."""
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs").expanduser()


def offline() -> bool:
    """True when downloads must not be tried (``MEDIMG_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("MEDIMG_OFFLINE", "HF_HUB_OFFLINE"))
