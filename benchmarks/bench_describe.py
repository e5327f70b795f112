"""``medimg describe`` of a large folder: seconds and peak memory, cold and cached, and the near-duplicate index
against the brute-force pairs on the same hashes.

    python benchmarks/bench_describe.py [--sizes 20000 100000] [--image-size 28] [--brute-max 20000] [--keep DIR]

For each size N, a folder of N generated grey PNGs in two class folders (one image in ten a near copy of another:
a few pixels changed) is described twice by ``medimg describe`` in its own process, as a user runs it: cold (every
image decoded) and cached (everything read from the cache). Each prints its wall seconds and the process's peak
resident memory, and whether it imported torch (``describe`` should not). Then the near-duplicate pairs of the
folder's cached hashes are found by the index (:func:`medimg.data.splits.indexed_pairs`) and, up to
``--brute-max`` images, by all N^2/2 distances (:func:`medimg.data.splits.brute_force_pairs`): their seconds, and
whether the pairs are identical. Target: a cached describe of 100k images under 10 s on a two-core machine.
Exits 0 either way: the figures are the result (1 only if the index and brute force disagree).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_folder(root: Path, n: int, size: int, seed: int = 0) -> None:
    """``n`` grey PNGs of ``size`` px under ``root/images/{a,b}/``; one in ten a near copy of an earlier one."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in ("a", "b"):
        (root / "images" / c).mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 256, (min(n, 4096), size, size), dtype=np.uint8)
    for i in range(n):
        image = base[i % len(base)].copy()
        image = np.roll(image, (i // len(base)) * 3, axis=(0, 1))  # each round of the base set shifted: new images
        if i % 10 == 9:  # a near copy: a few pixels of an earlier image changed
            image = np.roll(base[(i - 1) % len(base)], ((i - 1) // len(base)) * 3, axis=(0, 1)).copy()
            image[rng.integers(0, size, 3), rng.integers(0, size, 3)] ^= 8
        Image.fromarray(image).save(root / "images" / ("a" if i % 2 else "b") / f"{i:06d}.png")


def describe(folder: Path, env: dict) -> dict:
    """``medimg describe FOLDER --json`` in a fresh process: seconds, peak memory (MB), whether torch was imported."""
    code = ("import runpy, sys, resource; sys.argv = ['medimg', 'describe', sys.argv[1], '--json']\n"
            "try:\n    runpy.run_module('medimg', run_name='__main__')\n"
            "except SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
            "print('BENCH', 'torch' in sys.modules, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code,"
            " file=sys.stderr)\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - start
    line = next((l for l in done.stderr.splitlines() if l.startswith("BENCH")), None)
    if line is None:
        raise SystemExit(f"describe failed: {done.stderr[-2000:]}")
    _, torch, rss_kb, code = line.split()
    return dict(seconds=seconds, peak_mb=int(rss_kb) / 1024, imported_torch=torch == "True", exit=code,
                info=json.loads(done.stdout) if done.stdout.strip().startswith("{") else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--brute-max", type=int, default=20000, help="brute-force pairs only up to this many images")
    parser.add_argument("--keep", type=Path, help="make the folders and cache here and keep them (default: a "
                        "temporary folder)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from medimg.data.splits import DEFAULT_NEAR_DUPLICATE_DISTANCE, _hash_words, brute_force_pairs, indexed_pairs

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-describe-"))
    agree = True
    print(f"machine: {os.cpu_count()} cores; images {args.image_size} px grey PNG")
    for n in args.sizes:
        folder, cache = work / f"folder-{n}", work / f"cache-{n}"
        if not folder.is_dir():
            start = time.perf_counter()
            write_folder(folder, n, args.image_size)
            print(f"{n:>7} images: written in {time.perf_counter() - start:.0f} s")
        env = dict(os.environ, MEDIMG_CACHE_DIR=str(cache), PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1",
                   MEDIMG_OFFLINE="1")
        cold, cached = describe(folder, env), describe(folder, env)
        for name, r in (("cold", cold), ("cached", cached)):
            print(f"{n:>7} images: describe {name:<6} {r['seconds']:6.1f} s, peak {r['peak_mb']:6.0f} MB, "
                  f"torch imported: {'yes' if r['imported_torch'] else 'no'}, exit {r['exit']}")
        entry = next((cache / "images").glob("*/meta.json"))
        words = _hash_words(json.loads(entry.read_text())["dhash"])
        start = time.perf_counter()
        index = indexed_pairs(words, DEFAULT_NEAR_DUPLICATE_DISTANCE)
        index_s = time.perf_counter() - start
        line = f"{n:>7} images: near-duplicate pairs within {DEFAULT_NEAR_DUPLICATE_DISTANCE} bits: {len(index)} " \
               f"by the index in {index_s:.2f} s"
        if n <= args.brute_max:
            start = time.perf_counter()
            brute = brute_force_pairs(words, DEFAULT_NEAR_DUPLICATE_DISTANCE)
            brute = brute[np.lexsort((brute[:, 1], brute[:, 0]))]
            same = np.array_equal(index, brute)
            agree &= same
            line += f", by brute force in {time.perf_counter() - start:.1f} s: {'identical' if same else 'DIFFERENT'}"
        print(line)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
