"""Refuse to pool or chain datasets that share images, unless the user says so explicitly.

SSL pretraining on, or first-stage fine-tuning with, a dataset that holds the target's test
images would leak them. Declared lineage (the registry) catches known overlaps such as
BreastMNIST, which is made from BUSI; equal content hashes catch the rest when known.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from medimg.errors import MedimgError
from medimg.data.records import DatasetSource


@dataclass(frozen=True)
class LineageCheck:
    """What was checked, what overlapped, and whether the user overrode it (saved with a run)."""

    datasets: tuple[str, ...]
    overlaps: tuple[str, ...] = ()
    overridden: bool = False

    def to_dict(self) -> dict:
        return dict(datasets=list(self.datasets), overlaps=list(self.overlaps), overridden=self.overridden)


def check_lineage(sources: list[DatasetSource], *, purpose: str, allow_overlap: bool = False,
                  hashes: dict[str, set[str]] | None = None) -> LineageCheck:
    """Check every pair of ``sources`` for shared images.

    ``purpose`` words the error ("SSL pretraining for breastmnist"); ``hashes`` maps dataset
    names to content hashes of their images, compared between folder datasets. With
    ``allow_overlap`` the overlap is recorded instead of refused.
    """
    overlaps = []
    for a, b in combinations(sources, 2):
        shared = [f"{la}" for la in a.spec.lineage for lb in b.spec.lineage if la.overlaps(lb)]
        if shared:
            overlaps.append(f"{a.name} and {b.name} share images from {', '.join(sorted(set(shared)))}")
        elif hashes and a.name in hashes and b.name in hashes and a.spec.kind == b.spec.kind == "folder":
            common = hashes[a.name] & hashes[b.name]
            if common:
                overlaps.append(f"{a.name} and {b.name} have {len(common)} identical image files")
    names = tuple(s.name for s in sources)
    if overlaps and not allow_overlap:
        raise MedimgError(f"{purpose} refused: {'; '.join(overlaps)}, so test images would leak; choose datasets "
                          f"that share no images, or pass --allow-overlap to record the leak and go on")
    return LineageCheck(datasets=names, overlaps=tuple(overlaps), overridden=bool(overlaps))
