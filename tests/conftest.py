"""Every test runs offline, with its own empty cache, against ../shared/data unless told otherwise."""
from __future__ import annotations

import os
import subprocess
import sys
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
