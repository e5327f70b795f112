"""Train/validation/test splits: official where a dataset has one, else stratified from a seed.

Images that must not be separated — exact duplicates (declared in labels.csv or with equal
content hashes) and rows sharing a patient or lesion id — form one group, and a group goes
to one split. A generated split is saved to a split file that later runs reuse, so adding a
file to a folder can never quietly move a test image into training.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..errors import MedimgError
from ..paths import cache_dir
from .cache import DecodedImages
from .sources import SPLITS, DatasetSource

DEFAULT_RATIOS = (0.7, 0.1, 0.2)  # MedMNIST's proportions


@dataclass(frozen=True)
class Split:
    method: str  # "official" or "stratified-group"
    assignment: dict[str, str]  # image id -> "train" | "val" | "test"
    seed: int | None = None
    ratios: tuple[float, float, float] | None = None
    path: Path | None = None  # the split file, for generated splits
    # Copies of a test (or validation) image that an official split puts in an earlier split:
    # kept in the split's counts, left out of what training and validation use.
    excluded: frozenset[str] = frozenset()

    def indices(self, split: str, ids) -> np.ndarray:
        """Positions in ``ids`` (record order) of the images of ``split`` that are used."""
        return np.array([i for i, id_ in enumerate(ids) if self.assignment[id_] == split and id_ not in self.excluded],
                        dtype=np.int64)

    def counts(self) -> dict[str, int]:
        c = Counter(self.assignment.values())
        return {s: c.get(s, 0) for s in SPLITS}

    def to_dict(self) -> dict:
        return dict(method=self.method, seed=self.seed, ratios=self.ratios, path=str(self.path) if self.path else None,
                    excluded=sorted(self.excluded))


def duplicate_groups(source: DatasetSource, decoded: DecodedImages) -> list[list[str]]:
    """Groups (of two or more ids) of exact duplicates: declared ones and equal content hashes."""
    links = _UnionFind(decoded.ids)
    by_hash: dict[str, str] = {}
    for id_, h in zip(decoded.ids, decoded.sha256):
        links.union(id_, by_hash.setdefault(h, id_))
    for r in source.records:
        if r.duplicate_of is not None:
            if r.duplicate_of not in links.parent:
                raise MedimgError(f"{source.root / 'labels.csv'} marks {r.id} as a duplicate of {r.duplicate_of}, "
                                  f"which is not listed: fix its exact_duplicate_of")
            links.union(r.id, r.duplicate_of)
    return [sorted(g) for g in links.groups() if len(g) > 1]


def make_split(source: DatasetSource, decoded: DecodedImages, *, seed: int = 0,
               ratios: tuple[float, float, float] = DEFAULT_RATIOS, official: bool = True,
               split_file: Path | None = None) -> Split:
    """The split of ``source``: the official one if it has one (and ``official``), else generated.

    A generated split is read from ``split_file`` (default: under the cache directory) if it
    exists — after checking it covers exactly these images — and written there otherwise.
    """
    if official and source.has_official_split:
        assignment = {r.id: r.official_split for r in source.records}
        return Split(method="official", assignment=assignment,
                     excluded=_cross_split_copies(duplicate_groups(source, decoded), assignment))
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or min(ratios) <= 0 or abs(sum(ratios) - 1) > 1e-6:
        raise MedimgError(f"split ratios {ratios} must be three positive numbers (train, val, test) summing to 1")
    path = split_file or (cache_dir() / "splits" / f"{source.name}-seed{seed}-{'-'.join(f'{r:g}' for r in ratios)}.json")
    ids = [r.id for r in source.records]
    if source.spec.kind == "synthetic":  # regenerated exactly from its seed; nothing to keep
        return Split(method="stratified-group", assignment=_stratified_group_split(source, decoded, seed, ratios),
                     seed=seed, ratios=ratios)
    if path.is_file():
        return _read_split(path, set(ids), seed, ratios)
    assignment = _stratified_group_split(source, decoded, seed, ratios)
    _write_split(path, source, assignment, seed, ratios)
    return Split(method="stratified-group", assignment=assignment, seed=seed, ratios=ratios, path=path)


def _cross_split_copies(groups: list[list[str]], assignment: dict[str, str]) -> frozenset[str]:
    """Ids to leave out so no image is in two splits: a group keeps only its copies in its last split."""
    order = {s: i for i, s in enumerate(SPLITS)}
    out = set()
    for group in groups:
        last = max((assignment[i] for i in group), key=order.get)
        out.update(i for i in group if assignment[i] != last)
    return frozenset(out)


def _stratified_group_split(source, decoded, seed, ratios) -> dict[str, str]:
    links = _UnionFind(decoded.ids)
    for group in duplicate_groups(source, decoded):
        for other in group[1:]:
            links.union(group[0], other)
    first_in_group: dict[str, str] = {}
    for r in source.records:
        if r.group is not None:
            links.union(r.id, first_in_group.setdefault(r.group, r.id))
    label_of = dict(zip(decoded.ids, decoded.labels.tolist()))
    by_class: dict[int, list[list[str]]] = defaultdict(list)
    for group in sorted(links.groups(), key=lambda g: min(g)):
        # a group whose members disagree (a duplicate with two labels) is stratified by its commonest label
        majority = Counter(label_of[i] for i in group).most_common()
        by_class[min(k for k, n in majority if n == majority[0][1])].append(sorted(group))
    rng = np.random.default_rng(seed)
    assignment = {}
    for k in sorted(by_class):
        groups = by_class[k]
        order = rng.permutation(len(groups))
        n = sum(len(g) for g in groups)
        target = np.array(ratios) * n
        filled = np.zeros(3)
        for gi in order:
            # the split furthest below its share takes the next group
            s = int(np.argmax(target - filled))
            filled[s] += len(groups[gi])
            assignment.update({i: SPLITS[s] for i in groups[gi]})
    return assignment


def _write_split(path: Path, source: DatasetSource, assignment: dict, seed: int, ratios) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = dict(dataset=source.name, root=str(source.root), method="stratified-group", seed=seed, ratios=list(ratios),
                ids={s: sorted(i for i, v in assignment.items() if v == s) for s in SPLITS})
    write_text(path, json.dumps(body, indent=1))


def _read_split(path: Path, ids: set[str], seed: int, ratios) -> Split:
    try:
        body = json.loads(path.read_text())
        assignment = {i: s for s in SPLITS for i in body["ids"][s]}
    except (OSError, ValueError, KeyError) as err:
        raise MedimgError(f"split file {path} is unreadable ({err}): delete it to make the split again") from None
    if set(assignment) != ids:
        added, removed = len(ids - set(assignment)), len(set(assignment) - ids)
        raise MedimgError(f"split file {path} was made for other images ({added} now added, {removed} gone): "
                          f"restore the folder, or delete the split file to split again")
    return Split(method="stratified-group", assignment=assignment, seed=seed, ratios=ratios, path=path)


class _UnionFind:
    def __init__(self, items):
        self.parent = {i: i for i in items}

    def find(self, x):
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self):
        out = defaultdict(list)
        for i in self.parent:
            out[self.find(i)].append(i)
        return list(out.values())
