"""The committed book builds with warnings as errors, and every page renders in a real browser."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import check_book, chromium_path, toc_pages
from conftest import REPO

pytestmark = pytest.mark.slow
SCREENSHOTS = REPO / "_build" / "screenshots"


def require_chromium():
    if chromium_path() is None:
        pytest.fail("chromium is not installed: run scripts/system-packages.sh (make test does it)")


def assert_screenshot_shows_a_page(png: Path):
    image = np.asarray(Image.open(png).convert("L"), float)
    assert image.shape[1] == 1280 and image.shape[0] >= 600, png
    assert image.std() > 20 and (image < 100).mean() > 0.01, f"{png} looks blank"


def build(root: Path, out: Path) -> Path:
    exe = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(exe), "build", "--warningiserror", "--keep-going", "--path-output", str(out),
                             str(root)], capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / "_build" / "html"


def screenshot_targets(root: Path, directory: Path) -> dict[str, Path]:
    """A dataset chapter (its card), the first comparison chapter with a Grad-CAM gallery (a dataset's
    comparison) and the summary."""
    pages = toc_pages(root)
    wanted = [p for p in pages if p.endswith("/card")][:1]
    wanted += [p for p in pages if p.endswith("/comparison")][:1]
    wanted += [p for p in pages if p.endswith("/summary")][:1]
    return {p: directory / f"{p.replace('/', '_')}.png" for p in wanted or pages[:1]}


def test_committed_book_builds_and_renders(tmp_path):
    require_chromium()
    html = build(REPO, tmp_path / "site")
    # the References page lists the works cited: the paper (intro), the statistics (comparisons), a dataset's paper
    # (its card), the methods (the pretraining chapter)
    references = (html / "book" / "references.html").read_text()
    for author in ("Zehui Zhao", "Sture Holm", "Quinn McNemar", "Philipp Tschandl", "Walid Al-Dhabyani", "Ting Chen",
                   "Adrien Bardes", "Ananya Kumar"):
        assert author in references, author
    shots = screenshot_targets(REPO, SCREENSHOTS)
    assert check_book(REPO, html, shots) == []
    for png in shots.values():
        assert_screenshot_shows_a_page(png)
