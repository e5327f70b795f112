"""The study driver: study.yml -> papermill-executed chapters in book/PROFILE/ -> _toc.yml -> jupyter-book.

Only this module knows about papermill and the book. A chapter is a notebook template from
``notebooks/`` executed with explicit parameters (everything that decides its runs), so a
committed chapter can be checked against the study file. Chapters whose output exists are
reused unless ``force``; a failing chapter is reported with its failing cell and the rest go on.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .configs import Arm
from .profiles import (ABLATION_BY, STUDY_FILE, ablation_arms, available, double_groups, load_profile, main_arms,
                       ssl_pool, study_root, targets)

TEMPLATES = ("dataset_card", "ssl_budget", "ssl_pretraining", "finetune", "comparison", "summary", "reproducibility")


@dataclass(frozen=True)
class Chapter:
    """One executed notebook of the book.

    ``parameters`` are what papermill passes and a person types (``profile``, ``dataset``, ``method``,
    a variant's settings); ``resolved`` is what they mean through study.yml (the arms, or the data, the
    chapter runs), recorded in the notebook so that a change of the study file makes it stale.
    """

    path: str  # relative to the study root, e.g. book/quick/breastmnist/tl.ipynb
    template: str
    title: str
    parameters: dict
    resolved: dict
    sections: tuple["Chapter", ...] = ()
    part: str = ""


@dataclass
class StudyReport:
    executed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # existing chapters re-executed: their parameters changed
    failed: dict[str, str] = field(default_factory=dict)  # path -> "cell N: error"
    seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0  # executing the chapters, from the first to the last


def _dicts(arms: list[Arm]) -> list[dict]:
    return [a.to_dict() for a in arms]


def _variant(p: dict, arm: Arm) -> dict:
    """The fine-tuning settings (and TL weights) in which ``arm`` differs from the profile's plain arm (an
    ablation's setting)."""
    plain = Arm.from_profile(p, arm.dataset, arm.method)
    weights = {"tl_weights": arm.tl_weights} if arm.method == "tl" and arm.tl_weights != plain.tl_weights else {}
    return {k: v for k, v in arm.finetune.items() if plain.finetune.get(k) != v} | weights


def _finetune_chapter(p: dict, path: str, title: str, arm: Arm) -> Chapter:
    return Chapter(path, "finetune", title, dict(profile=p["name"], dataset=arm.dataset, method=arm.method,
                                                 **_variant(p, arm)), dict(arm=arm.to_dict()))


def plan(p: dict, *, every_dataset: bool = False) -> tuple[list[Chapter], list[str]]:
    """The chapters of profile ``p`` in reading (and execution) order, and the targets skipped as missing
    (``every_dataset``: none skipped, as if every dataset were here: what ``medimg study --plan`` shows)."""
    book, name = f"book/{p['name']}", p["name"]
    skipped = [] if every_dataset else [d for _, d in targets(p) if not available(d)]
    present = [(m, d) for m, d in targets(p) if d not in skipped]
    names = [d for _, d in present]
    ablations = _ablations(p, book, names, every_dataset) if present else []
    chapters = _budget(p, book) + _pretraining(p, book, main_arms(p, names) + [Arm.from_dict(a) for c in ablations
                                                                             for a in c.resolved["arms"]])
    for modality, dataset in present:
        arms = main_arms(p, [dataset])
        sections = [_finetune_chapter(p, f"{book}/{dataset}/{a.slug}.ipynb", f"{dataset}: {a.method}", a) for a in arms]
        sections.append(Chapter(f"{book}/{dataset}/comparison.ipynb", "comparison", f"{dataset}: comparison",
                                dict(profile=name, datasets=[dataset]),
                                dict(arms=_dicts(arms), by="method", gallery=list(p.get("gallery", [])),
                                     title=f"{dataset}: TL vs SSL vs scratch")))
        chapters.append(Chapter(f"{book}/{dataset}/card.ipynb", "dataset_card", dataset, dict(profile=name, dataset=dataset),
                                dict(dataset=dataset, size=p["finetune"]["size"],
                                     medmnist_size=p["finetune"].get("medmnist_size", 28)),
                                tuple(sections), part=f"{modality.capitalize()} datasets"))
    if not present:  # nothing to study here: the book is the datasets page, saying how to get them
        return chapters, skipped
    chapters += ablations
    main = _dicts(main_arms(p, names))
    doubles = double_groups(p, names, every_dataset=every_dataset)
    chapters.append(Chapter(f"{book}/summary.ipynb", "summary", "Summary: the paper's claims", dict(profile=name),
                            dict(arms=main, double=[_dicts(g) for g in doubles], skipped=skipped),
                            part="Conclusions"))
    chapters.append(Chapter(f"{book}/reproducibility.ipynb", "reproducibility", "Reproducibility", dict(profile=name),
                            dict(arms=main, profile=name), part="Appendix"))
    return chapters, skipped


def _pretraining(p: dict, book: str, arms: list[Arm]) -> list[Chapter]:
    """One notebook per distinct SimCLR checkpoint the arms need, in a part before the runs."""
    pretraining, seen_pools = [], set()
    for arm in arms:
        if arm.uses_ssl and not arm.ssl_checkpoint:  # the stage's checkpoints are the budget chapter's
            key = _pool_key(arm)
            if key not in seen_pools:
                seen_pools.add(key)
                # another network than the profile's SimCLR one (the architecture ablation) is named in the path
                arch = {"arch": arm.ssl["arch"]} if arm.ssl["arch"] != p["ssl"].get("arch") else {}
                suffix = f"-{arch['arch']}" if arch else ""
                pretraining.append(Chapter(f"{book}/ssl/{arm.slug}-{arm.dataset}{suffix}.ipynb", "ssl_pretraining",
                                           f"SimCLR pool for {arm.dataset} ({arm.method}{suffix.replace('-', ', ')})",
                                           dict(profile=p["name"], dataset=arm.dataset, method=arm.method, **arch),
                                           dict(arm=arm.to_dict())))
    if not pretraining:
        return []
    first = pretraining[0]
    return [Chapter(f"{book}/ssl/index.ipynb", "ssl_pretraining", "SimCLR pretraining", first.parameters,
                    first.resolved, tuple(pretraining[1:]), part="Pretraining")]


def _budget(p: dict, book: str) -> list[Chapter]:
    """The chapter that reads the pretraining stage's committed learning curves (profiles with a ``pretraining``
    section): it trains nothing, so it waits for no other chapter."""
    from .ssl.stage import pretraining_runs

    if not p.get("pretraining"):
        return []
    # the finished checkpoints are part of what it shows: one that lands later makes the chapter stale
    finished = [r.path.name for r in pretraining_runs(p) if r.path.is_file()]
    return [Chapter(f"{book}/ssl/budget.ipynb", "ssl_budget", "How much pretraining does self-supervision need?",
                    dict(profile=p["name"]), dict(pretraining=p["pretraining"], finished=finished),
                    part="Pretraining")]


def _pool_key(arm: Arm) -> tuple:
    """What makes two arms' SimCLR checkpoints one: the initialisation, the settings and the pool."""
    if arm.ssl_checkpoint:  # the pretraining stage's: made before the study, by no chapter
        return arm.method, arm.ssl_checkpoint
    return arm.method, tuple(sorted(arm.ssl.items(), key=str)), tuple(ssl_pool(arm.dataset, list(arm.ssl_candidates)))


ABLATION_TITLES = {"augmentation": "Ablation: augmentation", "balance": "Ablation: balance",
                   "imagenet_then_simclr": "Ablation: SimCLR after ImageNet (TL+SSL)",
                   "double": "Ablation: double fine-tuning", "architecture": "Ablation: the network"}


def _ablations(p: dict, book: str, names: list[str], every_dataset: bool = False) -> list[Chapter]:
    """One comparison chapter per ablation of the profile on the targets here, with a fine-tuning section for
    each arm no earlier chapter runs."""
    chapters = []
    for key, title in ABLATION_TITLES.items():
        spec = p.get("ablations", {}).get(key)
        if not spec:
            continue
        arms = ablation_arms(p, key, names, every_dataset=every_dataset)
        if not arms:
            continue
        new = [a for a in arms if _variant(p, a) or a.method not in p["methods"]]
        sections = tuple(_finetune_chapter(p, f"{book}/ablations/{key}/{a.dataset}-{a.slug}.ipynb",
                                           f"{a.dataset}: {_label(key, a)}", a) for a in new)
        chapters.append(Chapter(f"{book}/ablations/{key}.ipynb", "comparison", title,
                                dict(profile=p["name"], ablation=key),
                                dict(arms=_dicts(arms), by=ABLATION_BY[key], gallery=[], title=title),
                                sections, part="Ablations"))
    return chapters


def _label(key: str, arm: Arm) -> str:
    if key == "double":
        return f"{arm.method} after {arm.finetune['intermediate']}"
    if key == "architecture":
        return f"{arm.method} on {arm.finetune['arch']}"
    return arm.method if key == "imagenet_then_simclr" else f"{arm.method} with {key}"


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
        if not _differences(out, chapter):
            report.reused.append(chapter.path)
            return
        report.stale.append(chapter.path)  # made with other parameters or arms: the study file changed since
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial.ipynb")
    start = time.perf_counter()
    try:
        # no cwd=: papermill would chdir the whole process around each chapter, which concurrent chapters
        # (--jobs) would interleave; run_study works in the study root instead, and kernels start there
        pm.execute_notebook(str(root / "notebooks" / f"{chapter.template}.ipynb"), str(partial),
                            parameters=_passed(chapter), kernel_name="python3", progress_bar=False, log_output=False,
                            kernel_manager_class=quiet_kernel_manager())
        _finish(partial, chapter)
        partial.replace(out)
        report.executed.append(chapter.path)
    except pm.PapermillExecutionError as err:
        report.failed[chapter.path] = f"cell {err.exec_count}: {err.ename}: {err.evalue}"[:400]
    except Exception as err:  # a kernel that died, a template that is missing: report and go on
        report.failed[chapter.path] = f"{type(err).__name__}: {err}"[:400]
    finally:
        report.seconds[chapter.path] = time.perf_counter() - start


def quiet_kernel_manager(log: Path | None = None):
    """The kernel manager papermill starts each chapter's kernel with: IPC transport (sockets in a temporary folder
    of each kernel's own, not TCP on localhost, so ipykernel has no unencrypted-TCP warning to print), and the kernel process's own stdout and stderr (its log lines, such as the KeyboardInterrupt it logs when shut
    down) appended to ``log`` (default: ``medimg-kernels.log`` in the system's temporary folder) instead of the
    terminal. What a cell prints or raises still reaches the notebook, and a failing chapter's error the report."""
    import tempfile

    from jupyter_client.manager import AsyncKernelManager

    path = log or Path(tempfile.gettempdir()) / "medimg-kernels.log"

    class QuietKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"
            # a folder of its own for the sockets: two kernels started at once (--jobs) must not pick the same
            # socket names, which jupyter_client numbers from one fixed prefix by default
            self._sockets = tempfile.mkdtemp(prefix="medimg-kernel-")
            self.ip = str(Path(self._sockets) / "ipc")

        async def cleanup_resources(self, restart: bool = False):
            await AsyncKernelManager._async_cleanup_resources(self, restart=restart)
            if not restart:
                import shutil

                shutil.rmtree(self._sockets, ignore_errors=True)

        async def start_kernel(self, **kwargs):
            kwargs.setdefault("env", kernel_environment())
            with open(path, "ab") as err:  # the child keeps its own handle
                kwargs.setdefault("stdout", err)
                kwargs.setdefault("stderr", err)
                return await AsyncKernelManager._async_start_kernel(self, **kwargs)

    return QuietKernelManager


def kernel_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a chapter's kernel starts with: this process's, with the folder this ``medimg`` was imported
    from first on ``PYTHONPATH``, so the kernel runs the same code as the driver. The shared venv's editable install
    points at whichever checkout last ran ``scripts/venv.sh``; without this, two checkouts sharing the venv (a clone
    under test beside the working one) could run each other's code, or none if that clone is gone."""
    import medimg

    env = dict(os.environ if environ is None else environ)
    here = str(Path(medimg.__file__).resolve().parent.parent)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    env["PYTHONPATH"] = os.pathsep.join([here, *rest])
    return env


def _finish(path: Path, chapter: Chapter) -> None:
    """The template's generic heading becomes the chapter's title (the book's navigation shows it), the
    parameter cells are folded away, and what the parameters resolved to is recorded (``medimg.resolved``)."""
    import nbformat

    book = nbformat.read(path, as_version=4)
    title = chapter.title
    first = next(c for c in book.cells if c.cell_type == "markdown")
    first.source = f"# {title}" + first.source[first.source.find("\n"):] if "\n" in first.source else f"# {title}"
    book.metadata["medimg"] = {"resolved": _as_json(chapter.resolved)}
    for cell in book.cells:  # the book shows the parameters the chapter ran with, folded; not the template's
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags:
            tags.append("remove-cell")
        elif "injected-parameters" in tags:
            tags.append("hide-input")
    nbformat.write(book, path)


def write_toc(chapters: list[Chapter], root: Path, datasets: str) -> None:
    """_toc.yml: the introduction, the datasets page, then the profile's chapters in parts; only chapters
    that have been executed, so a profile run in part (``--only``) still builds."""
    from .atomic import write_text

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
    write_text(root / "_toc.yml", "\n".join(lines) + "\n")


def chapter_line(path: str, report: StudyReport) -> str:
    """The console's one line for a finished chapter: reused, executed (and why) with its seconds, or failed with
    its cell and error."""
    if path in report.failed:
        return f"FAILED   {path}: {report.failed[path]}"
    if path in report.reused:
        return f"reused   {path}"
    why = " (its parameters changed)" if path in report.stale else ""
    return f"executed {path} in {report.seconds.get(path, 0.0):.0f} s{why}"


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


def _passed(chapter: Chapter) -> dict:
    """The parameters papermill passes to ``chapter``: its own, its title and where it is written."""
    return dict(chapter.parameters, chapter_title=chapter.title, chapter_path=chapter.path)


def rerun_markdown(template: str, parameters: dict, chapter_path: str | None = None) -> str:
    """A chapter's "Rerun this chapter" commands, as Markdown: papermill with the chapter's own parameters
    (None ones left to the template), and, for a chapter of the book, ``medimg study`` re-executing it."""
    import shlex

    args = []
    for key, value in parameters.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):  # read back by the templates: "0,1" is seeds [0, 1]
            value = ",".join(map(str, value))
        args.append(f"-p {key} {shlex.quote(str(value))}")
    # book/quick/busi_256/tl.ipynb -> busi_256-tl.ipynb, beside the book rather than in it
    out = "-".join(Path(chapter_path).with_suffix("").parts[2:]) + ".ipynb" if chapter_path else f"{template}-out.ipynb"
    # three parameters to a line, so the command fits the page and still pastes as one
    rows = [f"papermill notebooks/{template}.ipynb {out}"] + ["    " + " ".join(args[i:i + 3])
                                                               for i in range(0, len(args), 3)]
    lines = ["```bash", " \\\n".join(rows)]
    if chapter_path and parameters.get("profile"):
        lines.append(f"medimg study --profile {parameters['profile']} --force --only {chapter_path}")
    return "\n".join(lines + ["```"])


def _as_json(value):
    """``value`` as it reads back from a notebook's JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def _differences(path: Path, chapter: Chapter) -> list[str]:
    """What differs between the executed chapter at ``path`` and what study.yml now says it should be: the
    names of the parameters (or resolved settings) that changed; empty when it is current."""
    import nbformat

    metadata = nbformat.read(path, as_version=4).metadata
    recorded = metadata.get("papermill", {}).get("parameters", {})
    expected = _as_json(_passed(chapter))
    if "medimg" not in metadata:
        # executed before chapters took flat parameters (issue #11): its parameters were what they resolve to
        expected = _as_json(dict(chapter.resolved, chapter_title=chapter.title))
    else:
        resolved, want = metadata["medimg"].get("resolved", {}), _as_json(chapter.resolved)
        recorded = dict(recorded, **{f"resolved.{k}": v for k, v in resolved.items()})
        expected = dict(expected, **{f"resolved.{k}": v for k, v in want.items()})
    return sorted(k for k in set(recorded) | set(expected) if recorded.get(k) != expected.get(k))


def committed_parameter_mismatches(profile: str, root: Path | None = None) -> list[str]:
    """Chapters in book/PROFILE whose recorded parameters (or the arms they ran) differ from what study.yml says."""
    root = root or study_root()
    chapters, _ = plan(load_profile(profile, root / STUDY_FILE))
    problems = []
    for c in flatten(chapters):
        path = root / c.path
        if not path.is_file():
            problems.append(f"{c.path}: missing")
        elif changed := _differences(path, c):
            problems.append(f"{c.path}: parameters differ from study.yml ({', '.join(changed)})")
    return problems


def dependencies(chapters: list[Chapter]) -> dict[str, tuple[str, ...]]:
    """Every chapter's path -> the chapters it must wait for: what ``--jobs`` schedules by.

    A chapter starts as soon as what it reads is finished, not when a whole stage is (the waves of
    earlier versions left slots idle). A SimCLR chapter and a dataset card wait for nothing; a fine-tuning
    chapter waits for its dataset's card (which prepares the data) and, for an SSL arm, the chapter that
    pretrains its checkpoint; a dataset's comparison waits for its card and its arms; an ablation waits for
    its own new arms and for the comparison of every dataset whose arms it reads (that chapter extracts
    their probe features); the summary waits for every other chapter, and the reproducibility appendix
    for the summary too. So no two chapters running at once write the same run, checkpoint or feature file.
    """
    everything = flatten(chapters)
    ssl = {_pool_key(Arm.from_dict(c.resolved["arm"])): c.path for c in everything if c.template == "ssl_pretraining"}
    cards = {c.parameters["dataset"]: c.path for c in everything if c.template == "dataset_card"}
    comparisons = {c.resolved["arms"][0]["dataset"]: c.path for chapter in chapters if chapter.template == "dataset_card"
                   for c in chapter.sections if c.template == "comparison"}
    deps: dict[str, tuple[str, ...]] = {}
    for chapter in chapters:
        for c in (chapter, *chapter.sections):
            if c.template == "finetune":
                arm = Arm.from_dict(c.resolved["arm"])
                wait = [cards.get(arm.dataset)] + ([ssl.get(_pool_key(arm))] if arm.uses_ssl else [])
            elif c.template == "comparison" and chapter.template == "dataset_card":
                wait = [chapter.path] + [s.path for s in chapter.sections if s.template == "finetune"]
            elif c.template == "comparison":  # an ablation
                wait = [s.path for s in chapter.sections] + [comparisons.get(a["dataset"]) for a in c.resolved["arms"]]
            elif c.template in ("summary", "reproducibility"):
                wait = [x.path for x in everything if x.template not in ("summary", "reproducibility")]
                wait += [x.path for x in everything if c.template == "reproducibility" and x.template == "summary"]
            else:  # SimCLR chapters, dataset cards
                wait = []
            deps[c.path] = tuple(dict.fromkeys(w for w in wait if w and w != c.path))
    return deps


def run_in_order(chapters: list[Chapter], run, jobs: int) -> None:
    """Call ``run(chapter)`` for every chapter of ``chapters`` (flattened), at most ``jobs`` at once, each once
    everything it depends on (:func:`dependencies`) has returned, in reading order among those ready."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    deps = dependencies(chapters)
    todo = [c for c in flatten(chapters)]
    done: set[str] = set()
    with ThreadPoolExecutor(jobs) as pool:  # each chapter's kernel is its own process
        running = {}
        while todo or running:
            ready = [c for c in todo if set(deps[c.path]) <= done]
            for c in ready[:jobs - len(running)]:
                todo.remove(c)
                running[pool.submit(run, c)] = c.path
            if not running:
                raise RuntimeError(f"chapters wait on each other: {[c.path for c in todo]}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()
                done.add(running.pop(future))


BENCHMARK = ("benchmarks/bench_train_step.py", "--epochs", "1", "--repeats", "1", "--precision", "32-true")


def machine_figure(root: Path) -> dict | None:
    """This machine's training speed, from the project's benchmark (``BENCHMARK``, about half a minute): the
    figure that makes a wall time comparable across machines. None when the script or its data is missing."""
    import re

    script = root / BENCHMARK[0]
    if not script.is_file():
        return None
    done = subprocess.run([sys.executable, str(script), *BENCHMARK[1:]], capture_output=True, text=True, cwd=root)
    plain = re.search(r"plain PyTorch loop:\s+([\d.]+) img/s", done.stdout)
    ours = re.search(r"medimg \(Lightning\):\s+([\d.]+) img/s", done.stdout)
    if not (plain and ours):
        return None
    return dict(plain_img_per_s=float(plain[1]), medimg_img_per_s=float(ours[1]), command="python " + " ".join(BENCHMARK),
                setting=done.stdout.splitlines()[0])


def compute_seconds(results: Path, since: float) -> dict:
    """Seconds of real work in what was written under ``results`` after ``since`` (a ``time.time()``):
    fine-tuning (each stage's training, evaluation and, for LP-FT, its linear-probe stage, from metrics.json),
    SimCLR pretraining (from each checkpoint's metadata) and feature extraction of the probes."""
    parts = dict(finetune=0.0, simclr=0.0, features=0.0)
    for path in results.glob("runs/*/*/*/metrics.json"):
        if path.stat().st_mtime >= since:
            for stage in json.loads(path.read_text()).get("timing", {}).values():
                parts["finetune"] += sum(stage.get(k, 0.0) for k in ("probe_seconds", "train_seconds", "eval_seconds"))
    for path in results.glob("probes/*/*/*/metrics.json"):
        if path.stat().st_mtime >= since:
            parts["features"] += json.loads(path.read_text()).get("timing", {}).get("feature_seconds", 0.0)
    from .models.backbones import read_ssl_meta

    for path in results.glob("ssl/*.safetensors"):
        if path.stat().st_mtime >= since:
            parts["simclr"] += read_ssl_meta(path).get("timing", {}).get("train_seconds", 0.0)
    return parts


def run_study(profile: str, *, force: bool = False, build: bool = True, only: str | None = None,
              jobs: int = 1, benchmark: bool = True) -> StudyReport:
    """Execute ``profile``'s chapters (those whose path contains ``only``), write the toc and build the book.
    ``jobs`` > 1 runs independent chapters at once (:func:`dependencies`), each kernel with ``cores // jobs`` threads
    (``OMP_NUM_THREADS``, read by PyTorch and the BLAS), so that they do not oversubscribe the cores."""
    import contextlib
    import os
    from tqdm.auto import tqdm

    root = study_root()
    p = load_profile(profile, root / STUDY_FILE)
    chapters, skipped = plan(p)
    report = StudyReport()
    selected = {c.path for c in flatten(chapters) if only is None or only in c.path}
    bar = tqdm(total=len(selected), desc=f"study {profile}", unit="chapter")

    import threading
    from datetime import datetime, timezone

    from .atomic import write_text

    results = root / p["results_dir"]
    log_path = results / "study_time.json"
    lock = threading.Lock()
    start, started = time.perf_counter(), time.time()
    log = dict(profile=profile, jobs=jobs, only=only, started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
               benchmark=None, chapters={})
    pending = [c for c in flatten(chapters) if c.path in selected
               and (force or not (root / c.path).is_file() or _differences(root / c.path, c))]
    if benchmark and pending and only is None:  # measured before any chapter runs, so nothing competes with it
        log["benchmark"] = machine_figure(root)

    def record(chapter: Chapter) -> None:
        """The study's time so far, kept in RESULTS/study_time.json (the reproducibility chapter reads it)."""
        with lock:
            log["chapters"][chapter.path] = round(report.seconds.get(chapter.path, 0.0), 1)
            log["wall_seconds"] = round(time.perf_counter() - start, 1)
            log["compute_seconds"] = {k: round(v, 1) for k, v in compute_seconds(results, started).items()}
            results.mkdir(parents=True, exist_ok=True)
            write_text(log_path, json.dumps(log, indent=1) + "\n")

    def run(chapter: Chapter) -> None:
        if chapter.path in selected:
            execute(chapter, root, force=force, report=report)
            if chapter.path not in report.reused and only is None:  # a rerun of one chapter keeps the log
                record(chapter)
            bar.write(chapter_line(chapter.path, report))
            bar.update()

    if jobs > 1:
        threads = str(max(1, (os.cpu_count() or 1) // jobs))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = threads  # the kernels papermill starts inherit these
    with contextlib.chdir(root):  # every chapter's kernel starts in the study root (once, for all threads)
        run_in_order(chapters, run, jobs)
    bar.close()
    report.wall_seconds = time.perf_counter() - start

    datasets = f"book/{profile}/datasets"
    write_text(root / f"{datasets}.md", datasets_page(p))
    write_toc(chapters, root, datasets)
    for name in skipped:
        print(f"skipped {name}: not in the data directory ('medimg describe {name}' says how to get it)")
    if build and not report.failed:
        if build_book(root) != 0:
            report.failed["book"] = "jupyter-book build failed (warnings are errors): see its output above"
    return report
