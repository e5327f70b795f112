import os

import numpy as np

from medimg.data import cache, load_images, open_dataset
from medimg.data.synthetic import write_image_folder


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "d", n_per_class=4, size=24, formats=("jpg",))
    first = load_images(open_dataset(root), 16, progress=False)
    assert first.path is not None and (first.path / "images.npy").is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache, "decode_file", no_decoding)
    second = load_images(open_dataset(root), 16, progress=False)
    assert second.path == first.path
    assert np.array_equal(np.asarray(second.images), np.asarray(first.images))
    assert second.sha256 == first.sha256


def test_changed_folder_invalidates_the_cache(tmp_path):
    root = write_image_folder(tmp_path / "d", n_per_class=4, size=24)
    first = load_images(open_dataset(root), 16, progress=False)
    victim = root / "images" / "disc" / "img0000.png"
    victim.write_bytes((root / "images" / "square" / "img0001.png").read_bytes())
    os.utime(victim, ns=(1, 1))  # a different mtime even on coarse clocks
    second = load_images(open_dataset(root), 16, progress=False)
    assert second.path != first.path
    i = second.ids.index("images/disc/img0000.png")
    assert not np.array_equal(second.images[i], first.images[i])


def test_sizes_are_cached_separately(tmp_path):
    root = write_image_folder(tmp_path / "d", n_per_class=2, size=24)
    a = load_images(open_dataset(root), 16, progress=False)
    b = load_images(open_dataset(root), 20, progress=False)
    assert a.path != b.path and b.images.shape[1:3] == (20, 20)
