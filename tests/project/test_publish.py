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
