"""Adding a template or a protocol is a row in its table plus its own code: in a temporary copy of the study, a dummy
template (its notebook and the function that plans its chapters) and a dummy protocol join their tables, and the
study plans the template, schedules it after what it reads and before the conclusions, prices it, gives its job the
resources of its key, reruns it with its own parameters and executes it, while its comparisons read the arms under
the new protocol too (what the protocol's consumers then do with it: tests/probe/test_protocols.py)."""
from __future__ import annotations

import nbformat
import pytest

from conftest import smoke_study_copy
from medimg.probe.linear_knn import KNNProbe
from medimg.probe.protocols import PROTOCOLS, Protocol
from medimg.study.chapter import Chapter
from medimg.study.templates import TEMPLATES, Template

ATLAS = "atlas"


def atlas_chapters(p: dict, book: str) -> list[Chapter]:
    """The dummy template's own planning: one chapter on the profile's first grey target."""
    dataset = p["targets"]["grey"][0]
    return [Chapter(f"{book}/atlas.ipynb", ATLAS, f"Atlas of {dataset}", dict(profile=p["name"], dataset=dataset),
                    dict(dataset=dataset), part="Atlas")]


def atlas_notebook(path) -> None:
    """A template as the study wants one: a title, one parameters cell, then its own work."""
    book = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Atlas"),
        nbformat.v4.new_code_cell('profile = "smoke"\ndataset = "synthetic_grey"\nchapter_title = "Atlas"\n'
                                  'chapter_path = None', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('print(f"atlas of {dataset} in profile {profile}")')])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, path)


@pytest.fixture
def atlas(tmp_path, monkeypatch):
    """A copy of the study with the dummy template's notebook, and its row in the table (for this test only)."""
    root = smoke_study_copy(tmp_path)
    atlas_notebook(root / "notebooks" / f"{ATLAS}.ipynb")
    row = Template(ATLAS, ("profile", "dataset"), record="data", plan=atlas_chapters, place="end",
                   waits_for=lambda c, parent: (("card", c.parameters["dataset"]),),
                   cost=lambda c, size_of: dict(network="atlas", passes=123.0), resources="summary")
    monkeypatch.setitem(TEMPLATES, ATLAS, row)
    monkeypatch.setitem(PROTOCOLS, "knn-3", Protocol("knn-3", "3-NN", KNNProbe, False, False, False, ":", "tab:green",
                                                     "three nearest neighbours"))
    monkeypatch.setenv("MEDIMG_STUDY_ROOT", str(root))
    return root


def test_a_new_template_and_protocol_are_rows_and_their_own_code_and_the_study_plans_runs_and_prices_them(atlas):
    from medimg.study.cluster import chapter_resources
    from medimg.study.cost import cost_plan
    from medimg.probe.protocols import probes
    from medimg.study.parameters import TEMPLATE_PARAMETERS, rerun_markdown
    from medimg.study.plan import dependencies, flatten, plan
    from medimg.study.profiles import load_profile
    from medimg.study.schedule import run_study

    p = load_profile("smoke", atlas / "study.yml")
    chapters, _ = plan(p)
    order = [c.path for c in flatten(chapters)]
    path = "book/smoke/atlas.ipynb"
    # planned before the conclusions, after every dataset and ablation
    assert order[-3:] == [path, "book/smoke/summary.ipynb", "book/smoke/reproducibility.ipynb"]
    deps = dependencies(chapters)
    assert deps[path] == ("book/smoke/synthetic_grey/card.ipynb",)
    assert path in deps["book/smoke/summary.ipynb"] and path in deps["book/smoke/reproducibility.ipynb"]
    assert [r["passes"] for r in cost_plan(p) if r["chapter"] == path] == [123.0]
    chapter = next(c for c in flatten(chapters) if c.path == path)
    cpus = dict(p, slurm=dict(by_template=dict(summary=dict(cpus_per_task=7))))
    assert chapter_resources(cpus, chapter).cpus_per_task == 7  # its key in study.yml's slurm table
    assert TEMPLATE_PARAMETERS[ATLAS] == ("profile", "dataset")
    # every comparison chapter reads its arms under each probe of the table (study.arm_runs.protocol_comparisons)
    assert [p.display for p in probes()] == ["linear probe", "kNN", "3-NN"]
    assert "-p profile smoke -p dataset synthetic_grey" in rerun_markdown(ATLAS, dict(profile="smoke",
                                                                                     dataset="synthetic_grey"))
    # executed by the study driver like any chapter (what it reads is a dataset card: run first, here)
    report = run_study("smoke", build=False, only="atlas", benchmark=False)
    assert report.failed == {} and report.executed == [path]
    outputs = [o.get("text", "") for c in nbformat.read(atlas / path, as_version=4).cells if c.cell_type == "code"
               for o in c.get("outputs", [])]
    assert "atlas of synthetic_grey in profile smoke\n" in outputs
    toc = (atlas / "_toc.yml").read_text()
    assert "Atlas" in toc and "book/smoke/atlas" in toc


def test_a_template_row_names_its_place():
    with pytest.raises(ValueError, match="place is 'start' or 'end'"):
        Template(ATLAS, ("profile",), place="middle")
