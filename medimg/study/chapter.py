"""One chapter of the book as a record (:class:`Chapter`): what the plan makes, the driver executes and a job is
handed. Its own module, importing nothing heavy, so that a job process (:mod:`medimg.study.cluster`) unpickles it
without importing the network code the plan needs."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    """One executed notebook of the book.

    ``parameters`` are what papermill passes and a person types (``profile``, ``dataset``, ``method``,
    a variant's settings); ``resolved`` is what they mean through study.yml (the arms, or the data, the
    chapter runs), recorded in the notebook so that a change of the study file makes it stale.
    """

    path: str  # relative to the study root, e.g. book/quick/breastmnist/tl.ipynb
    template: str
    title: str
    parameters: dict
    resolved: dict
    sections: tuple["Chapter", ...] = ()
    part: str = ""
