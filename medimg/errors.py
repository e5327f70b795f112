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
