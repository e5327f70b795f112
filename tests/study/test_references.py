"""Citations the Jupyter Book way: every key the book cites is in references.bib, the References page lists the
cited works, and a misspelt key fails the build with warnings as errors."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", (REPO / "references.bib").read_text(), flags=re.M))


def cited_in(text: str) -> set[str]:
    return {k.strip() for group in CITE.findall(text) for k in group.split(",")}


def test_every_key_the_book_and_the_registry_cite_is_in_references_bib():
    from medimg.data.registry import BIBKEYS, REGISTRY, cite_role

    sources = [(REPO / "book" / "intro.md").read_text()]
    sources += ["\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"])
                for p in (REPO / "notebooks").glob("*.ipynb")]
    sources += [cite_role(name) for name in REGISTRY]
    cited = set().union(*map(cited_in, sources))
    assert {"zhao2024transfer", "yang2023medmnist", "holm1979", "mcnemar1947", "chen2020simclr"} <= cited
    assert cited - bib_keys() == set()
    assert {k for keys in BIBKEYS.values() for k in keys} <= bib_keys()
    assert "{cite}`yang2023medmnist,aldhabyani2020busi`" in cite_role("breastmnist") and cite_role("synthetic_grey") == ""


def _tiny_book(root: Path, citing: str) -> subprocess.CompletedProcess:
    """A two-page book with the project's _config.yml and references.bib: an intro citing ``citing``, and the
    References page."""
    root.mkdir()
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    shutil.copy(REPO / "references.bib", root / "references.bib")
    (root / "book").mkdir()
    (root / "book" / "intro.md").write_text(f"# A page\n\nAs shown by {{cite}}`{citing}`.\n")
    shutil.copy(REPO / "book" / "references.md", root / "book" / "references.md")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/references\n")
    exe = Path(sys.executable).with_name("jupyter-book")
    return subprocess.run([str(exe), "build", "--warningiserror", str(root)], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_a_cited_key_is_listed_and_a_misspelt_one_fails_the_build(tmp_path):
    good = _tiny_book(tmp_path / "good", "holm1979")
    assert good.returncode == 0, good.stdout[-2000:] + good.stderr[-2000:]
    references = (tmp_path / "good" / "_build" / "html" / "book" / "references.html").read_text()
    assert "Sture Holm" in references and "sequentially rejective" in references
    bad = _tiny_book(tmp_path / "bad", "holm1997")
    assert bad.returncode != 0
    assert "holm1997" in bad.stdout + bad.stderr
