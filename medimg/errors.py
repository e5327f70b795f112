"""The one error type that reaches a user as a one-line message and exit code 2."""


class MedimgError(Exception):
    """A problem with the user's input or environment, worded as what is wrong and how to fix it.

    The CLI prints ``str(err)`` on one line and exits with :data:`EXIT_USAGE`; library callers
    can catch it. Anything else escaping the package is a bug, not bad input.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))  # always one line


EXIT_USAGE = 2


class MedimgWarning(UserWarning):
    """Something a user should know about their data that does not stop the run (files that are not
    images, a class without validation images). The CLI prints each as one ``medimg: warning:`` line."""


def warn(message: str) -> None:
    """Issue a :class:`MedimgWarning` (one line), attributed to the caller of the caller."""
    import warnings

    warnings.warn(" ".join(message.split()), MedimgWarning, stacklevel=3)


# --- the environment: an OSError where medimg writes, as a user's error -----------------------------------------

def _reason(err: OSError, needed_bytes: int | None) -> str:
    import errno
    import os

    if err.errno:
        reason = err.strerror or os.strerror(err.errno)
        reason = reason[:1].lower() + reason[1:]  # "No space left on device" inside a sentence
    else:
        reason = str(err) or type(err).__name__
    if err.errno == errno.ENOSPC and needed_bytes:
        reason = f"{reason}, {max(1, round(needed_bytes / 1e6))} MB needed"
    return reason


def _fix(err: OSError, variable: str | None) -> str:
    import errno

    elsewhere = f"set {variable} to another folder" if variable else "choose another folder"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"free space there or {elsewhere}"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"make it writable or {elsewhere}"
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"move the file or {elsewhere}"
    return f"check that it is reachable (a network mount may be down) or {elsewhere}"


def environment_error(err: OSError, where, *, what: str, variable: str | None = None,
                      needed_bytes: int | None = None) -> MedimgError:
    """``err`` (from writing or reading ``where``) as a user's error: what could not be done, where, the system's
    reason (with the room needed when the disk is full) and the fix, e.g. "cannot write the image cache in
    /data/cache (no space left on device, 120 MB needed): free space there or set MEDIMG_CACHE_DIR to another
    folder". ``variable``: the environment variable that moves ``where``."""
    import errno

    path = getattr(err, "filename", None)
    at = f"{path}: " if path and str(path) != str(where) else ""
    reason = _reason(err, needed_bytes)
    if err.errno in (errno.ENOTDIR, errno.EEXIST):  # name the file that stands where a folder must be
        from pathlib import Path

        blocking = next((p for p in (Path(path or where), *Path(path or where).parents) if p.is_file()), None)
        if blocking is not None:
            at, reason = "", f"{blocking} is a file, not a folder"
    return MedimgError(f"cannot {what} in {where} ({at}{reason}): {_fix(err, variable)}")


class environment_errors:
    """``with environment_errors(where, what=...):`` turns an :class:`OSError` raised inside into
    :func:`environment_error`'s :class:`MedimgError` (exit 2), leaving "internal error" for real bugs. The one place
    that does so for the cache and run folders."""

    def __init__(self, where, *, what: str, variable: str | None = None, needed_bytes: int | None = None):
        self.where, self.what, self.variable, self.needed_bytes = where, what, variable, needed_bytes

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if isinstance(err, OSError):
            raise environment_error(err, self.where, what=self.what, variable=self.variable,
                                    needed_bytes=self.needed_bytes) from None
        return False
