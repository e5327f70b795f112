"""Publishing: `make publish` builds the committed chapters into the site and pushes it to a gh-pages branch
(here of a local bare repository standing in for GitHub); the workflow that does the same on GitHub is valid YAML
that never runs the study."""
from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from conftest import REPO


@pytest.mark.slow
def test_make_publish_puts_the_built_book_on_the_gh_pages_branch(tmp_path):
    bare = tmp_path / "site.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--local", str(REPO), str(clone)], check=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(["make", "publish", f"REMOTE={bare}"], cwd=clone, capture_output=True, text=True, env=env,
                          timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", "gh-pages"], cwd=bare, capture_output=True,
                           text=True, check=True).stdout.split()
    assert "index.html" in files and ".nojekyll" in files
    assert "book/references.html" in files and any(f.startswith("book/quick/") and f.endswith(".html") for f in files)
    index = subprocess.run(["git", "show", "gh-pages:index.html"], cwd=bare, capture_output=True, text=True).stdout
    assert "intro.html" in index  # the site's front page leads into the book


def test_the_workflow_builds_committed_chapters_only():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "publish.yml").read_text())
    steps = workflow["jobs"]["publish"]["steps"]
    commands = " ".join(s.get("run", "") for s in steps)
    assert workflow[True]["push"]["branches"] == ["main"]  # YAML reads the key `on` as True
    assert "jupyter-book build --warningiserror" in commands and "ghp-import" in commands
    assert "medimg study" not in commands and "papermill" not in commands and "pretrain" not in commands


def actionlint(*files):
    return subprocess.run(["bash", str(REPO / "scripts" / "actionlint.sh"), *map(str, files)], capture_output=True,
                          text=True, timeout=300)


def test_actionlint_passes_the_workflow_and_finds_a_broken_one(tmp_path):
    """The check `make test` runs first (scripts/actionlint.sh): clean on the committed workflow; a misspelt runner
    label and an expression reading an undefined context property are each found."""
    clean = actionlint()
    assert clean.returncode == 0 and "1 workflow(s) clean" in clean.stdout, clean.stdout + clean.stderr
    text = (REPO / ".github" / "workflows" / "publish.yml").read_text()
    assert "runs-on: ubuntu-latest" in text and "${GITHUB_SHA::7}" in text
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latst").replace(
        "${GITHUB_SHA::7}", "${{ github.sah }}"))
    found = actionlint(broken)
    assert found.returncode == 1, found.stdout + found.stderr
    lines = [x for x in found.stdout.splitlines() if x.startswith(f"{broken}:")]
    label = next(i + 1 for i, x in enumerate(broken.read_text().splitlines()) if "ubuntu-latst" in x)
    assert any(f":{label}:" in x and '"ubuntu-latst" is unknown' in x and "[runner-label]" in x for x in lines), lines
    # (inside a `run: |` block this build names the block's first line, so only the finding itself is checked)
    assert any('property "sah" is not defined' in x and "[expression]" in x for x in lines), lines
