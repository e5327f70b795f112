"""The study driver: study.yml -> papermill-executed chapters in book/PROFILE/ -> _toc.yml -> jupyter-book.

Only this module knows about papermill and the book. A chapter is a notebook template from
``notebooks/`` executed with explicit parameters (everything that decides its runs), so a
committed chapter can be checked against the study file. Chapters whose output exists are
reused unless ``force``; a failing chapter is reported with its failing cell and the rest go on.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MedimgError
from .experiments import STUDY_FILE, ssl_pool, study_root

TEMPLATES = ("dataset_card", "ssl_pretraining", "finetune", "comparison", "summary", "reproducibility")


@dataclass(frozen=True)
class Chapter:
    path: str  # relative to the study root, e.g. book/quick/breastmnist/tl.ipynb
    template: str
    title: str
    parameters: dict
    sections: tuple["Chapter", ...] = ()
    part: str = ""


@dataclass
class StudyReport:
    executed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # existing chapters re-executed: their parameters changed
    failed: dict[str, str] = field(default_factory=dict)  # path -> "cell N: error"
    seconds: dict[str, float] = field(default_factory=dict)


def load_profile(profile: str, study_file=None) -> dict:
    import yaml

    path = Path(study_file) if study_file else study_root() / STUDY_FILE
    try:
        profiles = yaml.safe_load(path.read_text())["profiles"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise MedimgError(f"cannot read the profiles of {path} ({err}): fix the file (see the repository's study.yml)")
    if profile not in profiles:
        raise MedimgError(f"{path} has no profile {profile!r}: choose one of {', '.join(profiles)}")
    return dict(profiles[profile], name=profile)


def _arm(p: dict, dataset: str, method: str, **variant) -> dict:
    """Everything that decides one arm's runs: the parameters of its chapters."""
    finetune = dict(p["finetune"])
    for key, by_method in (("arch", p.get("arch_by_method", {})), ("size", p.get("size_by_method", {}))):
        if method in by_method:
            finetune[key] = by_method[method]
    finetune.update(variant)
    modality = _modality(dataset)
    return dict(dataset=dataset, method=method, seeds=list(p["seeds"]), finetune=finetune,
                ssl=dict(p["ssl"]) if method in ("ssl", "tl+ssl") else None,
                ssl_candidates=list(p["ssl_candidates"][modality]) if method in ("ssl", "tl+ssl") else [],
                tl_weights=p.get("tl_weights", "auto"), results_dir=p["results_dir"], trainer=dict(p["trainer"]))


def _modality(dataset: str) -> str:
    from .data.registry import get_spec

    return get_spec(dataset).modality


def available(dataset: str) -> bool:
    """Here already, or a MedMNIST set on a machine that may download it."""
    from .data.registry import get_spec
    from .data.summary import dataset_table
    from .paths import offline

    if next(r["available"] for r in dataset_table() if r["name"] == dataset) != "missing":
        return True
    return get_spec(dataset).kind == "medmnist" and not offline()


def plan(p: dict) -> tuple[list[Chapter], list[str]]:
    """The chapters of profile ``p`` in reading (and execution) order, and the targets skipped as missing."""
    book = f"book/{p['name']}"
    targets = [(m, d) for m in ("grey", "colour") for d in p["targets"].get(m, [])]
    skipped = [d for _, d in targets if not available(d)]
    targets = [(m, d) for m, d in targets if d not in skipped]
    names = [d for _, d in targets]
    ablations = _ablations(p, book, names) if targets else []
    chapters = _pretraining(p, book, [_arm(p, d, m) for d in names for m in p["methods"]] +
                            [a for c in ablations for a in c.parameters["arms"]])
    for modality, dataset in targets:
        arms = [_arm(p, dataset, m) for m in p["methods"]]
        sections = [Chapter(f"{book}/{dataset}/{a['method'].replace('+', '_')}.ipynb", "finetune",
                            f"{dataset}: {a['method']}", dict(arm=a)) for a in arms]
        sections.append(Chapter(f"{book}/{dataset}/comparison.ipynb", "comparison", f"{dataset}: comparison",
                                dict(arms=arms, by="method", gallery=list(p.get("gallery", [])),
                                     title=f"{dataset}: TL vs SSL vs scratch")))
        chapters.append(Chapter(f"{book}/{dataset}/card.ipynb", "dataset_card", dataset,
                                dict(dataset=dataset, size=p["finetune"]["size"],
                                     medmnist_size=p["finetune"].get("medmnist_size", 28)),
                                tuple(sections), part=f"{modality.capitalize()} datasets"))
    if not targets:  # nothing to study here: the book is the datasets page, saying how to get them
        return chapters, skipped
    chapters += ablations
    main_arms = [_arm(p, d, m) for _, d in targets for m in p["methods"]]
    chapters.append(Chapter(f"{book}/summary.ipynb", "summary", "Summary: the paper's claims",
                            dict(arms=main_arms, double=[_double_arms(p, spec) for spec in _doubles(p, targets)],
                                 skipped=skipped), part="Conclusions"))
    chapters.append(Chapter(f"{book}/reproducibility.ipynb", "reproducibility", "Reproducibility",
                            dict(arms=main_arms, profile=p["name"]), part="Appendix"))
    return chapters, skipped


def _pretraining(p: dict, book: str, arms: list[dict]) -> list[Chapter]:
    """One notebook per distinct SimCLR checkpoint the arms need, in a part before the runs."""
    pretraining, seen_pools = [], set()
    for arm in arms:
        if arm["method"] in ("ssl", "tl+ssl"):
            key = (arm["method"], tuple(ssl_pool(arm["dataset"], arm["ssl_candidates"])))
            if key not in seen_pools:
                seen_pools.add(key)
                pretraining.append(Chapter(f"{book}/ssl/{arm['method'].replace('+', '_')}-{arm['dataset']}.ipynb",
                                           "ssl_pretraining", f"SimCLR pool for {arm['dataset']} ({arm['method']})",
                                           dict(arm=arm)))
    if not pretraining:
        return []
    return [Chapter(f"{book}/ssl/index.ipynb", "ssl_pretraining", "SimCLR pretraining",
                    pretraining[0].parameters, tuple(pretraining[1:]), part="Pretraining")]


def _doubles(p: dict, targets) -> list[dict]:
    names = {d for _, d in targets}
    return [s for s in p.get("ablations", {}).get("double", []) if s["target"] in names and available(s["intermediate"])]


def _double_arms(p: dict, spec: dict) -> list[dict]:
    stage1 = {"intermediate": spec["intermediate"], **spec.get("finetune", {})}  # stage 1's own settings
    return [_arm(p, spec["target"], m, **variant) for m in spec["methods"] for variant in ({}, stage1)]


def _ablations(p: dict, book: str, names: list[str]) -> list[Chapter]:
    ablations = p.get("ablations", {})
    chapters = []
    for key, setting, by in (("augmentation", {"augment": True}, "augment"), ("balance", None, "balance")):
        spec = ablations.get(key)
        if not spec:
            continue
        variant = setting or {"balance": spec.get("mode", "down")}
        arms = [_arm(p, d, m, **v) for d in spec["targets"] if d in names for m in spec["methods"]
                for v in ({}, variant)]
        chapters.append(_ablation(book, key, f"Ablation: {key}", arms, f"method,{by}",
                                  [(f"{a['method']} with {key}", a) for a in arms
                                   if a["finetune"].get(by, None) not in (None, False, "none")]))
    spec = ablations.get("imagenet_then_simclr")
    if spec:  # TL+SSL: SimCLR continued from the ImageNet weights, beside the arms it combines
        arms = [_arm(p, d, m) for d in spec["targets"] if d in names for m in spec["methods"]]
        chapters.append(_ablation(book, "imagenet_then_simclr", "Ablation: SimCLR after ImageNet (TL+SSL)", arms,
                                  "method", [(a["method"], a) for a in arms if a["method"] not in p["methods"]]))
    doubles = _doubles(p, [(None, n) for n in names])
    if doubles:
        arms = [a for spec in doubles for a in _double_arms(p, spec)]
        chapters.append(_ablation(book, "double", "Ablation: double fine-tuning", arms, "method,double",
                                  [(f"{a['method']} after {a['finetune']['intermediate']}", a)
                                   for a in arms if a["finetune"].get("intermediate")]))
    return chapters


def _ablation(book: str, key: str, title: str, arms: list[dict], by: str, new: list[tuple[str, dict]]) -> Chapter:
    """An ablation's comparison of ``arms`` by ``by``, with a fine-tuning section for each (label, arm) in
    ``new``: the arms no earlier chapter runs."""
    sections = tuple(Chapter(f"{book}/ablations/{key}/{a['dataset']}-{a['method'].replace('+', '_')}.ipynb",
                             "finetune", f"{a['dataset']}: {label}", dict(arm=a)) for label, a in new)
    return Chapter(f"{book}/ablations/{key}.ipynb", "comparison", title,
                   dict(arms=arms, by=by, gallery=[], title=title), sections, part="Ablations")


def profile_datasets(p: dict) -> list[str]:
    """Every dataset a profile reads: targets, SimCLR candidates and intermediates, in that order."""
    names = [d for m in ("grey", "colour") for d in p["targets"].get(m, [])]
    names += [d for m in ("grey", "colour") for d in p.get("ssl_candidates", {}).get(m, [])]
    names += [s["intermediate"] for s in p.get("ablations", {}).get("double", [])]
    return list(dict.fromkeys(names))


def datasets_page(p: dict) -> str:
    """book/PROFILE/datasets.md: every dataset of the profile with its citation, licence and caveats."""
    from .data.registry import get_spec

    lines = ["# The datasets", "", f"The `{p['name']}` profile reads these datasets. Cite the original "
             "work when you use them; several licences forbid commercial use.", ""]
    for name in profile_datasets(p):
        spec = get_spec(name)
        here = available(name)
        lines += [f"## {name}", "", f"{spec.description} ({spec.modality}; {spec.task}).", "",
                  f"- **Cite**: {spec.citation}", f"- **Licence**: {spec.licence}",
                  f"- **Here**: {'yes' if here else 'no, skipped: ' + (spec.obtain or 'see medimg describe')}"]
        lines += [f"- **Caveat**: {c}" for c in spec.caveats]
        lines.append("")
    return "\n".join(lines)


def flatten(chapters: list[Chapter]) -> list[Chapter]:
    return [c for chapter in chapters for c in (chapter, *chapter.sections)]


# --- execution ---------------------------------------------------------------------------------

def execute(chapter: Chapter, root: Path, *, force: bool, report: StudyReport) -> None:
    """Run one template with papermill into the book; the notebook appears only when it succeeded."""
    import papermill as pm

    out = root / chapter.path
    if out.is_file() and not force:
        if _recorded_parameters(out) == _expected_parameters(chapter):
            report.reused.append(chapter.path)
            return
        report.stale.append(chapter.path)  # made with other parameters: the study file changed since
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial.ipynb")
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(root / "notebooks" / f"{chapter.template}.ipynb"), str(partial),
                            parameters=dict(chapter.parameters, chapter_title=chapter.title),
                            cwd=str(root), kernel_name="python3", progress_bar=False, log_output=False)
        _set_title(partial, chapter.title)
        partial.replace(out)
        report.executed.append(chapter.path)
    except pm.PapermillExecutionError as err:
        report.failed[chapter.path] = f"cell {err.exec_count}: {err.ename}: {err.evalue}"[:400]
    except Exception as err:  # a kernel that died, a template that is missing: report and go on
        report.failed[chapter.path] = f"{type(err).__name__}: {err}"[:400]
    finally:
        report.seconds[chapter.path] = time.perf_counter() - start


def _set_title(path: Path, title: str) -> None:
    """The template's generic heading becomes the chapter's title (the book's navigation shows it),
    and the parameter cells are folded away."""
    import nbformat

    book = nbformat.read(path, as_version=4)
    first = next(c for c in book.cells if c.cell_type == "markdown")
    first.source = f"# {title}" + first.source[first.source.find("\n"):] if "\n" in first.source else f"# {title}"
    for cell in book.cells:  # the book shows the parameters the chapter ran with, folded; not the template's
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags:
            tags.append("remove-cell")
        elif "injected-parameters" in tags:
            tags.append("hide-input")
    nbformat.write(book, path)


def write_toc(chapters: list[Chapter], root: Path, datasets: str) -> None:
    """_toc.yml: the introduction, the datasets page, then the profile's chapters in parts."""
    from .atomic import write_text

    lines = ["# Written by 'medimg study'; edit study.yml, not this file.", "format: jb-book", "root: book/intro",
             "parts:", '  - caption: "Data"', "    chapters:", f"      - file: {datasets}"]
    part = None
    for c in chapters:
        if c.part != part:
            part = c.part
            lines += [f"  - caption: {json.dumps(part)}", "    chapters:"]
        lines.append(f"      - file: {c.path.removesuffix('.ipynb')}")
        if c.sections:
            lines.append("        sections:")
            lines += [f"          - file: {s.path.removesuffix('.ipynb')}" for s in c.sections]
    write_text(root / "_toc.yml", "\n".join(lines) + "\n")


def build_book(root: Path) -> int:
    """jupyter-book build with warnings as errors; its exit code."""
    exe = Path(sys.executable).with_name("jupyter-book")
    return subprocess.call([str(exe), "build", "--warningiserror", "--keep-going", str(root)])


def _recorded_parameters(path: Path) -> dict:
    import nbformat

    return nbformat.read(path, as_version=4).metadata.get("papermill", {}).get("parameters", {})


def _expected_parameters(chapter: Chapter) -> dict:
    """The parameters papermill records for ``chapter``, as they read back from the notebook's JSON."""
    return json.loads(json.dumps(dict(chapter.parameters, chapter_title=chapter.title)))


def committed_parameter_mismatches(profile: str, root: Path | None = None) -> list[str]:
    """Chapters in book/PROFILE whose recorded papermill parameters differ from what study.yml now says."""
    root = root or study_root()
    chapters, _ = plan(load_profile(profile, root / STUDY_FILE))
    problems = []
    for c in flatten(chapters):
        path = root / c.path
        if not path.is_file():
            problems.append(f"{c.path}: missing")
            continue
        recorded, expected = _recorded_parameters(path), _expected_parameters(c)
        if recorded != expected:
            changed = sorted(k for k in set(recorded) | set(expected) if recorded.get(k) != expected.get(k))
            problems.append(f"{c.path}: parameters differ from study.yml ({', '.join(changed)})")
    return problems


def run_study(profile: str, *, force: bool = False, build: bool = True, only: str | None = None) -> StudyReport:
    root = study_root()
    p = load_profile(profile, root / STUDY_FILE)
    chapters, skipped = plan(p)
    todo = [c for c in flatten(chapters) if only is None or only in c.path]
    from tqdm.auto import tqdm

    report = StudyReport()
    for chapter in tqdm(todo, desc=f"study {profile}", unit="chapter"):
        execute(chapter, root, force=force, report=report)
    from .atomic import write_text

    datasets = f"book/{profile}/datasets"
    write_text(root / f"{datasets}.md", datasets_page(p))
    write_toc(chapters, root, datasets)
    for name in skipped:
        print(f"skipped {name}: not in the data directory ('medimg describe {name}' says how to get it)")
    if build and not report.failed:
        if build_book(root) != 0:
            report.failed["book"] = "jupyter-book build failed (warnings are errors): see its output above"
    return report
