"""The book's answer: the summary chapter records it, and the study driver puts it on the book's first page.

The summary chapter decides the paper's claims (:mod:`medimg.compare.claims`) and writes their three lines
(:func:`medimg.compare.answer.answer_lines`) to ``results/PROFILE/answer.json`` with the self-supervised budget
behind them and the provenance of the run (:func:`record_answer`). After the chapters, ``medimg study`` writes
``book/intro.md`` from the template ``notebooks/intro.md``, whose line :data:`ANSWER_MARKER` becomes the answer of
the profile just built, linked to its summary (:func:`write_intro`); no line of the answer is typed by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

from medimg.atomic import write_text

ANSWER_FILE = "answer.json"  # under the profile's results_dir
INTRO_TEMPLATE = Path("notebooks") / "intro.md"
INTRO_PAGE = Path("book") / "intro.md"
ANSWER_MARKER = "<!-- the answer: written here by medimg study from the summary chapter -->"


def modality_budgets(arms) -> dict[str, str]:
    """The self-supervised budget behind each modality's SSL arms, ``{"grey" | "colour": words}``: the checkpoints
    the profile's ``ssl`` arms start from (:func:`medimg.study.arm_runs.arm_ssl_checkpoint`, never pretrained
    here), each as :func:`medimg.study.pretraining.budget_phrase` (short), joined where a modality reads several."""
    from medimg.data.registry import get_spec
    from medimg.finetune.arms import arm_kind
    from medimg.study.arm_runs import arm_ssl_checkpoint
    from medimg.study.pretraining import budget_phrase

    by_modality: dict[str, dict[str, None]] = {}
    for arm in arms:
        if arm_kind(arm.method).ssl_only:
            phrase = budget_phrase(arm_ssl_checkpoint(arm, create=False), short=True)
            by_modality.setdefault(get_spec(arm.dataset).modality, {})[phrase] = None
    return {modality: "; ".join(phrases) for modality, phrases in by_modality.items()}


def answer_path(p: dict, root: Path | None = None) -> Path:
    """``results/PROFILE/answer.json`` of profile ``p`` under the study root."""
    from medimg.study.profiles import study_root

    return Path(root or study_root()) / p["results_dir"] / ANSWER_FILE


def record_answer(p: dict, lines: list[str], budgets: dict[str, str], chapter_path: str | None) -> Path:
    """Write the answer of profile ``p`` (its ``lines``, the ``budgets`` by modality they were decided at, and the
    summary chapter's path ``chapter_path``, e.g. ``book/quick/summary.ipynb``) with the provenance of this run
    (versions, commit, machine); returns the file. Written atomically: a reader sees the old answer or the new."""
    from medimg.identity import provenance

    path = answer_path(p)
    record = dict(profile=p["name"], lines=list(lines), budgets=budgets, summary=chapter_path,
                  provenance=provenance())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def read_answer(p: dict, root: Path) -> dict | None:
    """The recorded answer of profile ``p`` under ``root``; None where its summary has not run."""
    path = answer_path(p, root)
    return json.loads(path.read_text()) if path.is_file() else None


def answer_block(answer: dict | None, profile: str) -> str:
    """The Markdown that replaces :data:`ANSWER_MARKER`: the three lines, numbered, and a link to the summary
    that decides them; where the summary has not run, a line saying how to make it."""
    if not answer:
        return (f"*The answer appears here once the `{profile}` profile's summary chapter has run: "
                f"`medimg study --profile {profile}`.*")
    lines = [f"**The answer** (the `{answer['profile']}` profile; a claim *holds* when its winner is significantly "
             "better on most datasets of its kind and never worse, after Holm's correction):", ""]
    lines += [f"{i}. {line}" for i, line in enumerate(answer["lines"], 1)]
    if answer.get("summary"):
        target = str(Path(answer["summary"]).relative_to(INTRO_PAGE.parent).with_suffix(""))
        lines += ["", f"Each line is decided, with its evidence and tests, in {{doc}}`the summary <{target}>`."]
    return "\n".join(lines)


def write_intro(p: dict, root: Path) -> bool:
    """``book/intro.md`` from ``notebooks/intro.md`` with the answer of profile ``p``; False (nothing written)
    where the study has no intro template."""
    template = root / INTRO_TEMPLATE
    if not template.is_file():
        return False
    text = template.read_text()
    if ANSWER_MARKER not in text:
        from medimg.errors import MedimgError

        raise MedimgError(f"{template} has lost the line {ANSWER_MARKER!r}: put it back where the answer goes")
    write_text(root / INTRO_PAGE, text.replace(ANSWER_MARKER, answer_block(read_answer(p, root), p["name"])))
    return True
