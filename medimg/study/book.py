"""The book around the chapters: the datasets page, ``_toc.yml`` (only chapters that were executed) and the
jupyter-book build with warnings as errors.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from medimg.atomic import write_text
from medimg.data.registry import cite_role
from medimg.study.plan import Chapter, profile_datasets
from medimg.study.profiles import available


def datasets_page(p: dict) -> str:
    """book/PROFILE/datasets.md: every dataset of the profile with its citation, licence and caveats."""
    from medimg.data.registry import get_spec

    lines = ["# The datasets", "", f"The `{p['name']}` profile reads these datasets. Cite the original "
             "work when you use them; several licences forbid commercial use.", ""]
    for name in profile_datasets(p):
        spec = get_spec(name)
        here = available(name)
        lines += [f"## {name}", "", f"{spec.description} ({spec.modality}; {spec.task}).", "",
                  f"- **Cite**: {spec.citation}{cite_role(name)}", f"- **Licence**: {spec.licence}",
                  f"- **Here**: {'yes' if here else 'no, skipped: ' + (spec.obtain or 'see medimg describe')}"]
        lines += [f"- **Caveat**: {c}" for c in spec.caveats]
        lines.append("")
    return "\n".join(lines)


def write_toc(chapters: list[Chapter], root: Path, datasets: str) -> None:
    """_toc.yml: the introduction, the datasets page, then the profile's chapters in parts; only chapters
    that have been executed, so a profile run in part (``--only``) still builds."""
    lines = ["# Written by 'medimg study'; edit study.yml, not this file.", "format: jb-book", "root: book/intro",
             "parts:", '  - caption: "Data"', "    chapters:", f"      - file: {datasets}"]
    part = None
    for c in chapters:
        here = [s for s in c.sections if (root / s.path).is_file()]
        entries = [(c, here)] if (root / c.path).is_file() else [(s, []) for s in here]
        for chapter, sections in entries:
            if c.part != part:
                part = c.part
                lines += [f"  - caption: {json.dumps(part)}", "    chapters:"]
            lines.append(f"      - file: {chapter.path.removesuffix('.ipynb')}")
            if sections:
                lines.append("        sections:")
                lines += [f"          - file: {s.path.removesuffix('.ipynb')}" for s in sections]
    if (root / "book" / "references.md").is_file():  # the works cited (references.bib), last
        lines += ['  - caption: "References"', "    chapters:", "      - file: book/references"]
    write_text(root / "_toc.yml", "\n".join(lines) + "\n")


def build_book(root: Path) -> int:
    """jupyter-book build with warnings as errors; its exit code. Its output goes to ``_build/jupyter-book.log``;
    the console gets one line, and the warnings and errors when it fails."""
    exe = Path(sys.executable).with_name("jupyter-book")
    done = subprocess.run([str(exe), "build", "--warningiserror", "--keep-going", str(root)], capture_output=True,
                          text=True)
    log = root / "_build" / "jupyter-book.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(done.stdout + done.stderr)
    if done.returncode == 0:
        print(f"book built: {root / '_build' / 'html' / 'index.html'} (log: {log})")
    else:
        problems = [line for line in (done.stdout + done.stderr).splitlines()
                    if "WARNING" in line or "ERROR" in line or "Error" in line]
        print("\n".join(problems[-30:]) + f"\njupyter-book build failed: the whole output is in {log}", file=sys.stderr)
    return done.returncode


