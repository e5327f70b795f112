"""Decode-once benchmark: time a first (decoding) and a second (cached) load of one image folder.

    python benchmarks/bench_cache.py [DATASET_OR_PATH] [--size N]

Uses a fresh temporary cache, so the first load really decodes. Prints both times and their ratio;
the target is a second load at least 5x faster than the first.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="ham10000_224_large")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MEDIMG_CACHE_DIR"] = cache
        from medimg.data import load_images, open_dataset

        times = []
        for _ in range(2):
            start = time.perf_counter()
            decoded = load_images(open_dataset(args.dataset), args.size, progress=False)
            images = decoded.images[:]  # touch every byte, as an epoch would
            float(images.mean())
            times.append(time.perf_counter() - start)
    n = len(decoded.ids)
    print(f"{args.dataset}: {n} images at {args.size} px, {os.cpu_count()} cores")
    print(f"first load (decode + cache): {times[0]:8.3f} s  ({n / times[0]:8.0f} img/s)")
    print(f"second load (cached):        {times[1]:8.3f} s  ({n / times[1]:8.0f} img/s)")
    print(f"speed-up: {times[0] / times[1]:.1f}x (target >= 5x)")
    return 0 if times[0] / times[1] >= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
