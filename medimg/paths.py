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
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as err:
        raise MedimgError(f"{what} cannot be read ({err.strerror}): {fix}") from None


def cache_dir() -> Path:
    """Decoded-image caches and split files: ``$MEDIMG_CACHE_DIR`` or ``~/.cache/medimg``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or _xdg_cache() / "medimg").expanduser()


def check_cache_writable() -> Path:
    """The cache folder (:func:`cache_dir`), made if missing and checked writable (by making and removing a
    temporary folder in it) before anything is decoded into it: an unwritable, read-only, unreachable or misplaced
    ``$MEDIMG_CACHE_DIR`` is a one-line error naming it and the fix (:func:`medimg.errors.environment_error`)."""
    import tempfile

    path = cache_dir()
    with writing_cache("write the image cache"):
        path.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=".medimg-write-check-", dir=path))
    return path


def writing_cache(what: str, needed_bytes: int | None = None):
    """``with writing_cache("write the image cache", needed_bytes=n):``: an :class:`OSError` inside (a full disk, a
    read-only or unreachable folder) becomes the user's error naming the cache folder and ``$MEDIMG_CACHE_DIR``."""
    from medimg.errors import environment_errors

    return environment_errors(cache_dir(), what=what, variable=CACHE_DIR_ENV, needed_bytes=needed_bytes)


def runs_dir() -> Path:
    """Training runs: ``$MEDIMG_RUNS_DIR`` or ``./runs``."""
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs").expanduser()


def offline() -> bool:
    """True when downloads must not be tried (``MEDIMG_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("MEDIMG_OFFLINE", "HF_HUB_OFFLINE"))


# --- the paths a command is given, checked before it reads or writes anything -------------------

PATH_KINDS = ("input-dir", "input-file", "input-dir-or-name", "output-dir", "output-file")


def check_path(path: str | os.PathLike, kind: str, option: str) -> None:
    """Refuse a path that cannot serve as ``kind`` for ``option`` (e.g. ``--out``), in one line naming the path and
    the fix, before anything is read or written.

    ``input-dir`` / ``input-file``: must exist and be a folder / a file. ``input-dir-or-name``: a registered name
    passes; a path (it holds a separator or exists) must be a folder. ``output-dir`` / ``output-file``: may exist
    (as a folder / a file) or not; what lies above it must be folders, the nearest existing one writable (tried by
    making and removing a temporary folder there: nothing is left behind).
    """
    p = Path(path).expanduser()
    shown = f"{option} {path}"
    if kind == "input-dir-or-name":
        if not (os.sep in str(path) or p.exists()):
            return  # a registered name: the registry checks it
        kind = "input-dir"
    if kind in ("input-dir", "input-file"):
        want_dir = kind == "input-dir"
        if not p.exists():
            _below_a_file(p, shown)
            raise MedimgError(f"{shown} does not exist: give an existing {'folder' if want_dir else 'file'}")
        if want_dir and not p.is_dir():
            raise MedimgError(f"{shown} is a file, not a folder: give the folder that holds it ({p.parent})")
        if not want_dir and p.is_dir():
            raise MedimgError(f"{shown} is a folder, not a file: give the file itself")
        try:
            if want_dir:
                with os.scandir(p) as entries:
                    next(entries, None)
            else:
                open(p, "rb").close()
        except OSError as err:
            raise MedimgError(f"{shown} cannot be read ({err.strerror}): make it readable") from None
        return
    if kind not in ("output-dir", "output-file"):
        raise ValueError(f"unknown path kind {kind!r}: one of {PATH_KINDS}")
    if kind == "output-dir" and p.exists() and not p.is_dir():
        raise MedimgError(f"{shown} is an existing file, not a folder: choose a folder to write into")
    if kind == "output-file" and p.is_dir():
        raise MedimgError(f"{shown} is a folder: give the file to write, e.g. {p / 'out'}")
    _below_a_file(p, shown)
    existing = next(a for a in (p, *p.absolute().parents) if a.exists())
    if existing == p and kind == "output-file":
        existing = p.absolute().parent
    try:
        import tempfile

        os.rmdir(tempfile.mkdtemp(prefix=".medimg-write-check-", dir=existing))
    except OSError as err:
        raise MedimgError(f"{shown} cannot be written: {existing} is not writable ({err.strerror}); choose another "
                          f"place or make it writable") from None


def _below_a_file(p: Path, shown: str) -> None:
    """Refuse a path some part of which above it is a file (``results.csv/run1``)."""
    for above in p.absolute().parents:
        if above.exists():
            if not above.is_dir():
                raise MedimgError(f"{shown} lies below {above}, which is a file: choose a path that is not inside a file")
            return
