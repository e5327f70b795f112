"""Every test runs offline, with its own empty cache, against ../shared/data unless told otherwise."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDIMG_DATA_DIR") or REPO.parent / "shared" / "data").resolve()

# Offline before anything imports huggingface_hub or timm: a hub miss then fails at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MEDIMG_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MEDIMG_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("MEDIMG_DATA_DIR", str(SHARED_DATA))
    monkeypatch.setenv("MEDIMG_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))


@pytest.fixture(scope="module")
def module_env(tmp_path_factory):
    """The isolation of ``_isolated`` for module-scoped fixtures, which are set up before it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDIMG_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("MEDIMG_DATA_DIR", str(SHARED_DATA))
        mp.setenv("MEDIMG_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
        yield


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is not here")
    return SHARED_DATA


@pytest.fixture
def cache_dir() -> Path:
    return Path(os.environ["MEDIMG_CACHE_DIR"])


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``medimg ARGS`` in a fresh interpreter, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "medimg", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=REPO, timeout=600)


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def assert_one_line_error(result: subprocess.CompletedProcess, *must_mention: str) -> None:
    """Exit code 2 and one ``medimg: error:`` line on stderr holding every text in ``must_mention``."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medimg: error: "), result.stderr
    for text in must_mention:
        assert text in lines[0], lines[0]
    assert "Traceback" not in result.stderr


# --- the smoke study, executed once per session: the driver's end-to-end test (tests/study/test_study.py) reads it,
# and the cluster executor's study is compared with it (tests/study/test_cluster.py) ---------------------------------

STUDY_FILES = ("study.yml", "_config.yml", "references.bib", "_static", "notebooks", "book")


def write_user_folder(root: Path) -> None:
    """Generated grey images in images/<class>/: the synthetic shapes, as a user's PNG files."""
    from PIL import Image

    from medimg.data.synthetic import SHAPES, make_synthetic

    images, labels = make_synthetic(40, 32, seed=7, colour=False)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / "images" / SHAPES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(folder / f"scan_{i:03d}.png")


def smoke_study_copy(base: Path) -> Path:
    """A copy of the files a study reads at ``base/study`` (no executed books). Returns the study root."""
    root = base / "study"
    root.mkdir(parents=True)
    for name in STUDY_FILES:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, root / name)
    for old in root.glob("book/*/"):
        shutil.rmtree(old)
    return root


def add_user_folder(root: Path, scans: Path) -> None:
    """A user's folder of generated grey images at ``scans``, named in ``root``'s study file by its path as
    ``my_scans``, among the smoke profile's grey targets."""
    write_user_folder(scans)
    text = (root / "study.yml").read_text()
    smoke = text[text.index("  smoke:"):text.index("  paper:")]
    assert smoke.count("      grey: [synthetic_grey]\n") == 1
    (root / "study.yml").write_text(f"datasets:\n  my_scans: {{path: {scans}, modality: grey}}\n" + text.replace(
        smoke, smoke.replace("      grey: [synthetic_grey]\n", "      grey: [synthetic_grey, my_scans]\n")))


@dataclass
class StudyRun:
    """A smoke study executed by the ``medimg`` command in its own process: where, what it printed, how long."""

    root: Path
    done: subprocess.CompletedProcess
    seconds: float
    cache: Path  # its own MEDIMG_CACHE_DIR (the split files a run names are there)


def run_smoke_study(tmp_path_factory, name: str, *options: str) -> StudyRun:
    """``medimg study --profile smoke OPTIONS`` in a fresh copy (:func:`smoke_study_copy`) with a cache of its own.
    (Two at once are no quicker on two cores: each kernel's training threads then fight for them.)"""
    if not SHARED_DATA.is_dir():
        pytest.skip("the shared data folder is not here")
    root = smoke_study_copy(tmp_path_factory.mktemp(name))
    cache = tmp_path_factory.mktemp(f"{name}-cache")
    env = dict(os.environ, MEDIMG_STUDY_ROOT=str(root), MEDIMG_DATA_DIR=str(SHARED_DATA), MEDIMG_CACHE_DIR=str(cache),
               MEDIMG_RUNS_DIR=str(tmp_path_factory.mktemp(f"{name}-runs")))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "medimg", "study", "--profile", "smoke", *options],
                          capture_output=True, text=True, env=env, cwd=root, timeout=1800)
    return StudyRun(root, done, time.perf_counter() - start, cache)


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> StudyRun:
    """The smoke study by ``medimg study --jobs 2`` (the local scheduler, two independent chapters at a time: on two
    cores about 120 s against 150 s for one at a time, kernels mostly start and import), book built, no
    benchmark: once per session, read by the driver's end-to-end test."""
    return run_smoke_study(tmp_path_factory, "smoke-jobs2", "--jobs", "2", "--no-benchmark")


@pytest.fixture(scope="session")
def smoke_by_jobs_1(tmp_path_factory) -> StudyRun:
    """The smoke study by ``medimg study --jobs 1`` (one chapter at a time), book built, no benchmark: compared with
    the cluster executor's study to the bit (tests/study/test_cluster.py, make test-long)."""
    return run_smoke_study(tmp_path_factory, "smoke-jobs1", "--jobs", "1", "--no-benchmark")
