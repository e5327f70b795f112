"""Executing one chapter: papermill runs its template into the book with a kernel of its own, and a chapter whose
recorded parameters (and what they resolved to) still match the plan is reused instead.

A chapter's notebook appears only when it succeeded; a failing chapter is reported with its failing cell and
the rest go on (:class:`StudyReport`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from medimg.study.chapter import Chapter
from medimg.study.profiles import STUDY_FILE, load_profile, study_root


@dataclass
class StudyReport:
    executed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # existing chapters re-executed: their parameters changed
    failed: dict[str, str] = field(default_factory=dict)  # path -> "cell N: error"
    seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0  # executing the chapters, from the first to the last
    running: dict[str, str] = field(default_factory=dict)  # path -> job id still queued or running (SLURM, no --wait)
    log_folder: Path | None = None  # where the jobs' logs are (the submitit executors)

    def add(self, part: "StudyReport") -> None:
        """One chapter's report (what its job returned) joined to this one."""
        for name in ("executed", "reused", "stale"):
            getattr(self, name).extend(getattr(part, name))
        self.seconds.update(part.seconds)


def chapter_line(path: str, report: StudyReport) -> str:
    """The console's one line for a finished chapter: reused, executed (and why) with its seconds, or failed with
    its cell and error."""
    if path in report.failed:
        return f"FAILED   {path}: {report.failed[path]}"
    if path in report.reused:
        return f"reused   {path}"
    why = " (its parameters changed)" if path in report.stale else ""
    return f"executed {path} in {report.seconds.get(path, 0.0):.0f} s{why}"


class ChapterFailed(Exception):
    """Raised by a job whose chapter failed: its message is the one line :class:`StudyReport` holds for it."""


def run_chapter(root: str, chapter: Chapter, results_dir: str, force: bool = False,
                record: bool = True) -> StudyReport:
    """What one job runs, whichever executor started it (a thread of ``medimg study``, a submitit job): ``chapter``,
    as planned when it was submitted, executed by :func:`execute` in the study root ``root`` (reused when it is
    already current, unless ``force``); with ``record``, its seconds join RESULTS/study_time.json (``results_dir``,
    relative to ``root``: :func:`~medimg.study.study_time.record_chapter`). The job imports no network code of its
    own (the chapter's kernel does): it is handed the chapter, not the plan. Inside a SLURM job, the kernel's threads
    are the job's CPUs unless ``OMP_NUM_THREADS`` is set. Returns the chapter's :class:`StudyReport`. Raises
    :class:`ChapterFailed` (its failing cell and error) when the chapter failed, so that the chapters after it are
    not started (SLURM: cancelled)."""
    import contextlib

    from medimg.study.study_time import record_chapter

    folder = Path(root)
    path = chapter.path
    with contextlib.chdir(folder):  # the kernel starts here (the local executor is there already, for all threads)
        if os.environ.get("SLURM_CPUS_PER_TASK"):
            for name, value in thread_settings(int(os.environ["SLURM_CPUS_PER_TASK"])).items():
                os.environ.setdefault(name, value)
        report = StudyReport()
        execute(chapter, folder, force=force, report=report)
    if path in report.failed:
        raise ChapterFailed(" ".join(report.failed[path].split()))
    if record and path not in report.reused:
        record_chapter(folder / results_dir, path, report.seconds[path])
    return report


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # PyTorch's and the BLAS'


def thread_settings(threads: int) -> dict[str, str]:
    """The environment that gives a chapter's kernel ``threads`` threads (at least one)."""
    return {name: str(max(1, threads)) for name in THREAD_VARIABLES}


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


def _passed(chapter: Chapter) -> dict:
    """The parameters papermill passes to ``chapter``: its own, its title and where it is written."""
    return dict(chapter.parameters, chapter_title=chapter.title, chapter_path=chapter.path)


def _as_json(value):
    """``value`` as it reads back from a notebook's JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def finished(root: Path, chapter: Chapter) -> bool:
    """Whether ``chapter`` is executed under ``root`` and current: what :func:`execute` reuses, and what the
    schedulers (:mod:`~medimg.study.schedule`, :mod:`~medimg.study.cluster`) neither benchmark for nor submit."""
    path = root / chapter.path
    return path.is_file() and not _differences(path, chapter)


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
    from medimg.study.plan import flatten, plan

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


