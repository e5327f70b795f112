"""README's "rerun one chapter" commands run as written, in a fresh copy of the study."""
import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def readme_commands() -> list[str]:
    """The lines of the bash block after README's ``<!-- readme-commands -->`` marker."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- readme-commands -->\n```bash\n(.*?)```", text, re.S)
    assert block, "README.md lost its <!-- readme-commands --> block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_rerun_commands_run_as_written(tmp_path):
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("study.yml", "_config.yml", "references.bib", "notebooks"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, root / name)
    (root / "book").mkdir()
    for page in ("intro.md", "references.md"):
        shutil.copy(REPO / "book" / page, root / "book" / page)
    commands = readme_commands()
    # the first line activates the project's environment; this test runs inside it already, so it puts the
    # environment's bin first on PATH instead (the same effect) and runs every other line verbatim
    assert commands[0] == 'source "$(scripts/venv.sh)/bin/activate"'
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(REPO))
    env.pop("MEDIMG_STUDY_ROOT", None)
    for command in commands[1:]:
        result = subprocess.run(["bash", "-c", command], cwd=root, env=env, capture_output=True, text=True,
                                timeout=1200)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-3000:])
    papermill_out = root / commands[1].split()[2]
    chapter = nbformat.read(papermill_out, as_version=4)
    assert chapter.metadata.papermill.parameters == dict(profile="smoke", dataset="synthetic_grey", method="tl",
                                                          seeds="0,1", size=32)
    shown = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for c in chapter.cells
                    for o in c.get("outputs", []))
    assert "synthetic_grey" in shown and "seed" in shown
    runs = sorted((root / "results" / "smoke" / "runs" / "synthetic_grey" / "tl").iterdir())
    assert len(runs) == 2  # seeds 0 and 1, made by papermill and reused by the study driver
    assert (root / "book" / "smoke" / "synthetic_grey" / "tl.ipynb").is_file()
    assert (root / "_build" / "html" / "book" / "smoke" / "synthetic_grey" / "tl.html").is_file()
