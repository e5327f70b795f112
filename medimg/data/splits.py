"""Train/validation/test splits: official where a dataset has one, else stratified from a seed.

Images that must not be separated form one group, and a group goes to one split: exact
duplicates (declared in labels.csv or with equal content hashes), rows sharing a patient or
lesion id, and near-duplicates — images whose 256-bit difference hashes (imagehash's ``dhash``
at 64 px, computed when decoding) differ in at most ``near_duplicate_distance`` bits, such as
neighbouring CT slices or repeated ultrasound frames of one patient. Groups are closed under
these links (a chain of near-duplicates is one group). An official split (MedMNIST) is kept as
published; :func:`near_duplicate_report` says how many near-duplicate pairs straddle it.

A generated split is saved to a split file that records the grouping threshold and that later
runs reuse, so adding a file to a folder can never quietly move a test image into training.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medimg.atomic import write_text
from medimg.errors import MedimgError, warn
from medimg.paths import cache_dir
from medimg.data.cache import HASH_IMAGE_SIZE, HASH_SIZE, DecodedImages
from medimg.data.records import SPLITS, DatasetSource

DEFAULT_RATIOS = (0.7, 0.1, 0.2)  # MedMNIST's proportions
# Hamming distance (of 256 bits) up to which two images count as near-duplicates; None: exact duplicates only
DEFAULT_NEAR_DUPLICATE_DISTANCE = 8
NEAR_DUPLICATE_HASH = f"imagehash.dhash, {HASH_SIZE}x{HASH_SIZE} = {HASH_SIZE ** 2} bits, at {HASH_IMAGE_SIZE} px"


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
    near_duplicate_distance: int | None = None  # the grouping threshold of a generated split

    def indices(self, split: str, ids) -> np.ndarray:
        """Positions in ``ids`` (record order) of the images of ``split`` that are used."""
        return np.array([i for i, id_ in enumerate(ids) if self.assignment[id_] == split and id_ not in self.excluded],
                        dtype=np.int64)

    def counts(self) -> dict[str, int]:
        c = Counter(self.assignment.values())
        return {s: c.get(s, 0) for s in SPLITS}

    def to_dict(self) -> dict:
        return dict(method=self.method, seed=self.seed, ratios=self.ratios, path=str(self.path) if self.path else None,
                    excluded=sorted(self.excluded), near_duplicates=near_duplicate_setting(self.near_duplicate_distance))


def near_duplicate_setting(distance: int | None) -> dict:
    """How near-duplicates are grouped, as recorded in split files and runs."""
    return dict(hash=NEAR_DUPLICATE_HASH, max_distance=distance)


def check_near_duplicate_distance(distance: int | None) -> None:
    if distance is not None and not 0 <= distance < HASH_SIZE ** 2 // 2:
        raise MedimgError(f"near-duplicate distance {distance} is out of range: use 0 to {HASH_SIZE ** 2 // 2 - 1} "
                          f"bits of {HASH_SIZE ** 2} (default {DEFAULT_NEAR_DUPLICATE_DISTANCE}), or none")


def _hash_words(dhash) -> np.ndarray:
    """(N, 4) uint64 words of N 256-bit hashes given as 64 hex digits each."""
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in dhash), dtype=np.uint64).reshape(len(dhash), -1)


def near_duplicate_pairs(decoded: DecodedImages, max_distance: int, *, progress: bool = False) -> np.ndarray:
    """Pairs of images whose difference hashes differ in at most ``max_distance`` bits.

    Returns an int array (P, 3) of ``(i, j, distance)`` with ``i < j`` positions in ``decoded``, sorted; byte-identical
    files (equal ``sha256``) are left out: they are exact duplicates. Found with an index (multi-index hashing,
    :func:`indexed_pairs`): seconds for 100k images where all N^2/2 distances would take minutes. Computed once per
    set of hashes and threshold, and kept in ``$MEDIMG_CACHE_DIR/near-duplicates/`` when ``decoded`` is cached.
    """
    if not decoded.dhash:
        raise MedimgError(f"{decoded.path or 'these images'} were decoded without perceptual hashes: delete the "
                          f"cache entry (or the cache directory) to decode them again")
    if decoded.path is None:
        return _without_copies(indexed_pairs(_hash_words(decoded.dhash), max_distance, progress=progress), decoded)
    from medimg.identity import identity
    from medimg.paths import cache_dir, writing_cache

    key = identity(dict(hashes=decoded.dhash, sha256=decoded.sha256, max_distance=max_distance, version=1), digits=16)
    path = cache_dir() / "near-duplicates" / f"{decoded.path.name}-{key}.npy"
    if path.is_file():
        return np.load(path)
    pairs = _without_copies(indexed_pairs(_hash_words(decoded.dhash), max_distance, progress=progress), decoded)
    from medimg.atomic import atomic_path

    with writing_cache("write the near-duplicate pairs", needed_bytes=pairs.nbytes), atomic_path(path) as tmp, \
            open(tmp, "wb") as fh:
        np.save(fh, pairs)
    return pairs


def _without_copies(pairs: np.ndarray, decoded: DecodedImages) -> np.ndarray:
    sha = np.asarray(decoded.sha256)
    return pairs[sha[pairs[:, 0]] != sha[pairs[:, 1]]] if len(pairs) else pairs


def indexed_pairs(words: np.ndarray, max_distance: int, *, progress: bool = False) -> np.ndarray:
    """Every pair of rows of ``words`` ((N, W) uint64: N hashes of 64·W bits) within ``max_distance`` bits, as an
    int64 array (P, 3) of ``(i, j, distance)``, ``i < j``, sorted.

    Multi-index hashing (Norouzi, Punjani and Fleet, "Fast search in Hamming space with multi-index hashing", CVPR
    2012): cut the bits into ``max_distance + 1`` disjoint ranges; two hashes within ``max_distance`` bits agree
    exactly on at least one range (pigeonhole). So the pairs that share a range's value are the only candidates;
    each is then checked by its full distance. Equal to :func:`brute_force_pairs` (tested, and by
    ``benchmarks/bench_describe.py``)."""
    n, bits = len(words), words.shape[1] * 64
    if n < 2:
        return np.zeros((0, 3), np.int64)
    if (max_distance + 1) * 2.0 ** -(bits // (max_distance + 1)) > 1e-3:
        # ranges so short that unrelated hashes share them often: the index would check most pairs anyway
        return _sorted(brute_force_pairs(words, max_distance))
    unpacked = np.unpackbits(words.view(np.uint8), axis=1)  # (N, bits): the bits in a fixed order
    cuts = np.linspace(0, bits, min(max_distance + 1, bits) + 1).astype(int)
    candidates = []
    from tqdm.auto import tqdm

    for a, b in tqdm(list(zip(cuts[:-1], cuts[1:])), desc="near-duplicate index", leave=False,
                     disable=not progress):
        keys = np.packbits(unpacked[:, a:b], axis=1)  # the range's bits as bytes
        keys = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1]))).ravel()
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        sizes = np.diff(np.r_[starts, n])
        for start, size in zip(starts[sizes > 1], sizes[sizes > 1]):
            members = np.sort(order[start:start + size])
            i, j = np.triu_indices(size, k=1)
            candidates.append(np.stack([members[i], members[j]], axis=1))
    if not candidates:
        return np.zeros((0, 3), np.int64)
    pairs = np.unique(np.concatenate(candidates), axis=0)
    distance = np.bitwise_count(words[pairs[:, 0]] ^ words[pairs[:, 1]]).sum(-1)
    keep = distance <= max_distance
    return np.concatenate([pairs[keep], distance[keep, None]], axis=1).astype(np.int64)


def brute_force_pairs(words: np.ndarray, max_distance: int, *, chunk_bytes: int = 1 << 26) -> np.ndarray:
    """:func:`indexed_pairs` by all N^2/2 distances, in row blocks of about ``chunk_bytes`` (the reference the index
    is checked against)."""
    n = len(words)
    step = max(1, chunk_bytes // max(1, n * words.shape[1] * 8))
    found = []
    for start in range(0, n, step):
        block = words[start:start + step]
        distance = np.bitwise_count(block[:, None, :] ^ words[None, :, :]).sum(-1)
        i, j = np.nonzero(distance <= max_distance)
        i += start
        keep = j > i
        found.append(np.stack([i[keep], j[keep], distance[i[keep] - start, j[keep]]], axis=1))
    return np.concatenate(found).astype(np.int64) if found else np.zeros((0, 3), np.int64)


def _sorted(pairs: np.ndarray) -> np.ndarray:
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


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
               split_file: Path | None = None,
               near_duplicate_distance: int | None = DEFAULT_NEAR_DUPLICATE_DISTANCE) -> Split:
    """The split of ``source``: the official one if it has one (and ``official``), else generated.

    A generated split keeps exact duplicates, patient/lesion groups and near-duplicates (hashes
    within ``near_duplicate_distance`` bits; None: exact duplicates only) together. It is read from
    ``split_file`` (default: under the cache directory, named by seed, ratios and threshold) if it
    exists — after checking it covers exactly these images with the same threshold — and written
    there otherwise. Warns (:class:`~medimg.errors.MedimgWarning`) when a class has no validation
    or test image.
    """
    check_near_duplicate_distance(near_duplicate_distance)
    if official and source.has_official_split:
        assignment = {r.id: r.official_split for r in source.records}
        split = Split(method="official", assignment=assignment,
                      excluded=_cross_split_copies(duplicate_groups(source, decoded), assignment))
        _warn_missing_classes(source, decoded, split)
        return split
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or min(ratios) <= 0 or abs(sum(ratios) - 1) > 1e-6:
        raise MedimgError(f"split ratios {ratios} must be three positive numbers (train, val, test) summing to 1")
    # splits made before near-duplicates were grouped keep their file name
    grouping = "" if near_duplicate_distance is None else f"-nd{near_duplicate_distance}"
    path = split_file or (cache_dir() / "splits" /
                          f"{source.name}-seed{seed}-{'-'.join(f'{r:g}' for r in ratios)}{grouping}.json")
    ids = [r.id for r in source.records]
    common = dict(method="stratified-group", seed=seed, ratios=ratios, near_duplicate_distance=near_duplicate_distance)
    if source.spec.kind == "synthetic":  # regenerated exactly from its seed; nothing to keep
        split = Split(assignment=_stratified_group_split(source, decoded, seed, ratios, near_duplicate_distance),
                      **common)
    elif path.is_file() and (_same_contents(path, decoded) or (split_file and _recorded_contents(path) is None)):
        split = _read_split(path, set(ids), near_duplicate_distance, common)
    else:  # new, or made from other contents under the same names: split again
        assignment = _stratified_group_split(source, decoded, seed, ratios, near_duplicate_distance)
        if path.is_file() and not split_file:
            old = _read_split(path, set(ids), near_duplicate_distance, common).assignment
            if old != assignment:  # the files changed since (or the split predates the contents check)
                warn(f"{source.name}: the images under the names in {path} changed since it was made, so the split "
                     f"was made again from what the files hold now (runs trained on the old split keep their record)")
        elif path.is_file():
            raise MedimgError(f"split file {path} was made from other contents of {source.name}'s images than the "
                              f"files hold now: delete it to split again, or restore the images it was made from")
        _write_split(path, source, assignment, seed, ratios, near_duplicate_distance, decoded)
        split = Split(assignment=assignment, path=path, **common)
    _warn_missing_classes(source, decoded, split)
    return split


def _warn_missing_classes(source: DatasetSource, decoded: DecodedImages, split: Split) -> None:
    """Warn, per class, when a split that scores the model (val, test) has none of its images."""
    label_of = dict(zip(decoded.ids, decoded.labels.tolist()))
    counts = Counter((split.assignment[i], label_of[i]) for i in decoded.ids)
    for k, name in enumerate(source.classes):
        empty = [s for s in ("val", "test") if counts[(s, k)] == 0]
        total = sum(counts[(s, k)] for s in SPLITS)
        if not empty or total == 0:
            continue
        if split.method == "official":
            fix = "its metrics there are undefined"
        else:
            fix = (f"with ratios {'/'.join(f'{r:g}' for r in split.ratios)} a class needs at least "
                   f"{images_for_every_split(split.ratios)} images (more if they form groups) for one in every split")
        warn(f"{source.name}: class {name!r} has {total} image(s) and none in {' or '.join(empty)}: {fix}")


def images_for_every_split(ratios) -> int:
    """The fewest images of one class for which the stratified split gives every split at least one (singletons)."""
    for n in range(1, 10_000):
        target, filled = np.array(ratios) * n, np.zeros(3)
        for _ in range(n):
            filled[int(np.argmax(target - filled))] += 1
        if filled.min() >= 1:
            return n
    raise MedimgError(f"split ratios {ratios} leave a split empty for any class size: make every ratio larger")


def _cross_split_copies(groups: list[list[str]], assignment: dict[str, str]) -> frozenset[str]:
    """Ids to leave out so no image is in two splits: a group keeps only its copies in its last split."""
    order = {s: i for i, s in enumerate(SPLITS)}
    out = set()
    for group in groups:
        last = max((assignment[i] for i in group), key=order.get)
        out.update(i for i in group if assignment[i] != last)
    return frozenset(out)


def _stratified_group_split(source, decoded, seed, ratios, near_duplicate_distance: int | None) -> dict[str, str]:
    links = _UnionFind(decoded.ids)
    for group in duplicate_groups(source, decoded):
        for other in group[1:]:
            links.union(group[0], other)
    if near_duplicate_distance is not None:
        for i, j, _ in near_duplicate_pairs(decoded, near_duplicate_distance):
            links.union(decoded.ids[i], decoded.ids[j])
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


def contents_digest(decoded: DecodedImages) -> str:
    """What a split was made from: one identity of every image's name and content hash (``sha256`` of its bytes)."""
    from medimg.identity import identity

    return identity(dict(zip(decoded.ids, decoded.sha256)), digits=16)


def _recorded_contents(path: Path) -> str | None:
    """The contents a split file records it was made from; None for one written before they were recorded."""
    try:
        return json.loads(path.read_text()).get("contents")
    except (OSError, ValueError, AttributeError):
        return None


def _same_contents(path: Path, decoded: DecodedImages) -> bool:
    """Whether the split file at ``path`` was made from the images ``decoded`` holds (a cached file written before
    the contents were recorded counts as made from other ones: it is checked by making it again)."""
    return _recorded_contents(path) == contents_digest(decoded)


def _write_split(path: Path, source: DatasetSource, assignment: dict, seed: int, ratios,
                 near_duplicate_distance: int | None, decoded: DecodedImages) -> None:
    body = dict(dataset=source.name, root=str(source.root), method="stratified-group", seed=seed, ratios=list(ratios),
                near_duplicates=near_duplicate_setting(near_duplicate_distance), contents=contents_digest(decoded),
                ids={s: sorted(i for i, v in assignment.items() if v == s) for s in SPLITS})
    from medimg.errors import environment_errors
    from medimg.paths import CACHE_DIR_ENV, cache_dir

    in_cache = path.is_relative_to(cache_dir())
    with environment_errors(path.parent, what="write the split file",
                            variable=CACHE_DIR_ENV if in_cache else None):
        write_text(path, json.dumps(body, indent=1))  # 0644, whatever the umask (atomic_path)


def _read_split(path: Path, ids: set[str], near_duplicate_distance: int | None, common: dict) -> Split:
    try:
        body = json.loads(path.read_text())
        assignment = {i: s for s in SPLITS for i in body["ids"][s]}
    except (OSError, ValueError, KeyError) as err:
        raise MedimgError(f"split file {path} is unreadable ({err}): delete it to make the split again") from None
    if set(assignment) != ids:
        added, removed = len(ids - set(assignment)), len(set(assignment) - ids)
        raise MedimgError(f"split file {path} was made for other images ({added} now added, {removed} gone): "
                          f"restore the folder, or delete the split file to split again")
    saved = body.get("near_duplicates", near_duplicate_setting(None))["max_distance"]  # old files: exact only
    if saved != near_duplicate_distance:
        raise MedimgError(f"split file {path} groups near-duplicates within {saved} bits, not "
                          f"{near_duplicate_distance}: pass the same --near-duplicate-distance, or another split file")
    return Split(assignment=assignment, path=path, **common)


def near_duplicate_report(source: DatasetSource, decoded: DecodedImages, split: Split,
                          max_distance: int | None = None) -> dict:
    """Near-duplicate pairs and groups of ``decoded``, and how many pairs straddle splits.

    ``max_distance`` defaults to the split's threshold, or :data:`DEFAULT_NEAR_DUPLICATE_DISTANCE`
    for an official or exact-only split. ``across_splits`` counts pairs in different splits of
    ``split``; ``across_without_grouping`` the same for the split that grouping only exact
    duplicates would have made with the same seed (for an official split: the split itself).
    """
    distance = split.near_duplicate_distance if split.near_duplicate_distance is not None else max_distance
    distance = DEFAULT_NEAR_DUPLICATE_DISTANCE if distance is None else distance
    pairs = near_duplicate_pairs(decoded, distance)
    ids = decoded.ids
    links = _UnionFind(ids)
    for i, j, _ in pairs:
        links.union(ids[i], ids[j])
    groups = sorted((sorted(g) for g in links.groups() if len(g) > 1), key=lambda g: (-len(g), g))

    def straddling(assignment) -> int:
        return int(sum(assignment[ids[i]] != assignment[ids[j]] for i, j, _ in pairs))

    if split.method == "official" or split.near_duplicate_distance is None:
        ungrouped = split.assignment
    else:
        ungrouped = _stratified_group_split(source, decoded, split.seed, split.ratios, None)
    return dict(near_duplicate_setting(distance), pairs=len(pairs), groups=groups,
                largest_group=max(map(len, groups), default=0), across_splits=straddling(split.assignment),
                across_without_grouping=straddling(ungrouped), grouped=split.near_duplicate_distance is not None,
                examples=[dict(a=ids[i], b=ids[j], distance=int(d)) for i, j, d in pairs[:10]])


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
