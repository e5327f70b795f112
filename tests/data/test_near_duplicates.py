"""Near-duplicate pairs by an index (issue #31): the same pairs as all N^2/2 distances, computed once per hashes and
threshold, and a describe that imports no torch."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO, write_user_folder
from medimg.data import DataConfig, prepare
from medimg.data.splits import _sorted, brute_force_pairs, indexed_pairs, near_duplicate_pairs


def planted(n: int, distance: int, seed: int) -> np.ndarray:
    """``n`` random 256-bit hashes (``(n, 4)`` uint64), a fifth of them copies of others with up to ``distance + 2``
    bits flipped: pairs at, below and just beyond the threshold."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2 ** 63, (n, 4), dtype=np.uint64) | (rng.integers(0, 2, (n, 4), dtype=np.uint64) << 63)
    for dst in rng.choice(n, n // 5, replace=False):
        flip = np.zeros(256, bool)
        flip[rng.choice(256, rng.integers(0, distance + 3), replace=False)] = True
        words[dst] = words[rng.integers(0, n)] ^ np.packbits(flip).view(np.uint64)
    return words


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 300), distance=st.integers(0, 24), seed=st.integers(0, 2 ** 16))
def test_the_index_finds_exactly_the_brute_force_pairs(n, distance, seed):
    words = planted(n, distance, seed)
    found = indexed_pairs(words, distance)
    assert np.array_equal(found, _sorted(brute_force_pairs(words, distance)))
    assert found.dtype == np.int64 and found.shape[1] == 3 and (found[:, 0] < found[:, 1]).all()


def test_four_thousand_hashes_at_the_default_threshold_agree_with_brute_force():
    words = planted(4_000, 8, 0)
    found = indexed_pairs(words, 8)
    assert len(found) > 400 and np.array_equal(found, _sorted(brute_force_pairs(words, 8)))


def test_pairs_of_a_cached_dataset_are_computed_once(tmp_path, cache_dir, monkeypatch):
    write_user_folder(tmp_path / "scans")
    data = prepare(DataConfig(str(tmp_path / "scans"), size=16), progress=False)
    first = near_duplicate_pairs(data.decoded, 40)
    assert len(list((cache_dir / "near-duplicates").glob("*.npy"))) >= 1
    monkeypatch.setattr("medimg.data.splits.indexed_pairs", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert np.array_equal(near_duplicate_pairs(data.decoded, 40), first)  # read back, not searched again


def test_describe_datasets_evaluate_and_compare_import_no_torch(tmp_path):
    """Commands that train nothing start in a second, not the fifteen that torch, timm and Lightning take."""
    import shutil

    write_user_folder(tmp_path / "scans")
    runs = sorted(p.parent for p in (REPO / "results" / "quick" / "runs").rglob("metrics.json"))[:2]
    for i, run in enumerate(runs):  # two committed finished runs, copied (evaluate writes beside them)
        shutil.copytree(run, tmp_path / f"run{i}")
    code = ("import sys; from medimg.cli import main; code = main(sys.argv[1:]); "
            "print(sorted(m for m in ('torch', 'timm', 'pytorch_lightning', 'lightning') if m in sys.modules)); "
            "sys.exit(code)")
    for args in (["describe", str(tmp_path / "scans"), "--size", "16"], ["datasets"],
                 ["evaluate", str(tmp_path / "run0"), "--n-boot", "50"],
                 ["compare", str(tmp_path / "run0"), str(tmp_path / "run1"), "--out", str(tmp_path / "cmp")]):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "[]", (args, done.stdout[-500:])
