"""The book's first page leads with the answer the summary chapter recorded, with the budget in views."""
import json

import pytest

from medimg.errors import MedimgError
from medimg.study.answer import ANSWER_MARKER, INTRO_PAGE, INTRO_TEMPLATE, record_answer, write_intro

from conftest import REPO

PROFILE = dict(name="quick", results_dir="results/quick")


def study(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / INTRO_TEMPLATE).write_text(f"# Title\n\n{ANSWER_MARKER}\n\nThe rest of the page.\n")
    (tmp_path / "book").mkdir()
    return tmp_path


def test_the_intro_leads_with_the_recorded_answer_and_links_to_its_summary(tmp_path, monkeypatch):
    root = study(tmp_path)
    monkeypatch.setenv("MEDIMG_STUDY_ROOT", str(root))
    assert write_intro(PROFILE, root)
    page = (root / INTRO_PAGE).read_text()
    # before the summary has run, the page says how to make the answer (and nothing is made up)
    assert page == ("# Title\n\n*The answer appears here once the `quick` profile's summary chapter has run: "
                    "`medimg study --profile quick`.*\n\nThe rest of the page.\n")
    path = record_answer(PROFILE, ["*claim one*: **holds**", "*claim two*: **contradicted**", "*claim three*: x"],
                         {"grey": "SimCLR, 2.05M views at 64 px (4.10 CPU core-hours)"}, "book/quick/summary.ipynb")
    record = json.loads(path.read_text())
    assert path == root / "results" / "quick" / "answer.json"
    assert record["budgets"] == {"grey": "SimCLR, 2.05M views at 64 px (4.10 CPU core-hours)"}
    assert {"versions", "git", "machine"} <= set(record["provenance"])
    write_intro(PROFILE, root)
    page = (root / INTRO_PAGE).read_text()
    head, rest = page.split("1. *claim one*", 1)
    assert head.startswith("# Title\n\n**The answer** (the `quick` profile;")
    assert rest.startswith(": **holds**\n2. *claim two*: **contradicted**\n3. *claim three*: x\n\n")
    assert "{doc}`the summary <quick/summary>`" in rest and rest.endswith("\n\nThe rest of the page.\n")


def test_a_template_without_its_marker_is_refused_and_the_page_is_left_alone(tmp_path):
    root = study(tmp_path)
    (root / INTRO_TEMPLATE).write_text("# Title\n\nNo marker.\n")
    (root / INTRO_PAGE).write_text("old page\n")
    with pytest.raises(MedimgError, match="intro.md has lost the line"):
        write_intro(PROFILE, root)
    assert (root / INTRO_PAGE).read_text() == "old page\n"


def test_the_committed_template_is_the_committed_intro_but_for_its_answer():
    template = (REPO / INTRO_TEMPLATE).read_text()
    before, after = template.split(ANSWER_MARKER)
    page = (REPO / INTRO_PAGE).read_text()
    assert page.startswith(before) and page.endswith(after) and ANSWER_MARKER not in page


def test_a_checkpoints_budget_is_stated_in_views_at_its_size_and_core_hours():
    from medimg.models.backbones import read_ssl_meta
    from medimg.study.pretraining import budget_phrase, core_hours

    path = REPO / "results" / "quick" / "ssl" / "simclr-imagenet-grey-e4f82babd8b3.safetensors"
    meta = read_ssl_meta(path)
    assert meta["pairs"] == 2000 * 128  # steps x batch on one process: two views each
    assert budget_phrase(path, short=True) == f"SimCLR, 0.51M views at 64 px ({core_hours(meta):.2f} CPU core-hours)"
    assert budget_phrase(path.with_name("missing.safetensors"), short=True) == "missing.safetensors (not here to read its budget)"
