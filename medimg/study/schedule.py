"""Running the study: one scheduling loop for every executor. Each chapter of the plan is started once what it reads
is finished (:func:`~medimg.study.plan.dependencies`), a failed chapter stops the chapters after it, the study's
time is kept beside the results (:mod:`medimg.study.study_time`), then the toc and the book are written.

The executors differ only in how a chapter's job is started and watched (a :class:`Starter`): ``local``
(:class:`LocalStarter`, this module) runs each job in a thread of this process, at most ``--jobs`` at once, each
chapter's kernel a process of its own; ``submitit-local`` and ``slurm`` (:mod:`medimg.study.cluster`) submit the
very same job function (:func:`~medimg.study.execute.run_chapter`) through submitit.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from medimg.study.chapter import Chapter
from medimg.study.execute import (StudyReport, chapter_line, finished, kernel_environment, run_chapter,
                                  thread_settings)
from medimg.study.profiles import STUDY_FILE, load_profile, study_root


@dataclass
class JobsOutcome:
    """What :func:`run_jobs` saw: ``results`` (path -> what the job returned), ``failed`` (path -> its one line),
    ``not_run`` (path -> the failed chapter it waited for) and ``running`` (path -> job, when it did not wait)."""

    results: dict = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    not_run: dict[str, str] = field(default_factory=dict)
    running: dict = field(default_factory=dict)


def job_failure(job, err: Exception) -> str:
    """The one line of a job that raised ``err``: its message (a chapter's failing cell and error)."""
    from medimg.study.execute import ChapterFailed

    return str(err) if isinstance(err, ChapterFailed) else f"{type(err).__name__}: {err}"


def run_jobs(order: list[str], deps: dict[str, tuple[str, ...]], submit: Callable, *, chained: bool,
             wait: bool = True, limit: int | None = None, adopted: dict | None = None, poll_s: float = 1.0,
             on_end: Callable = lambda path, outcome: None, failure: Callable = job_failure) -> JobsOutcome:
    """Submit a job for every chapter path of ``order`` (reading order), each once it is ready, and gather them.

    ``deps`` gives each path the paths it waits for; those not in ``order`` (finished, or not selected) count as
    done. ``submit(path, after)`` submits one and returns its job (``job_id``, ``done()``, ``result()``,
    ``cancel(check=False)``: a submitit ``Job`` or a :class:`ThreadJob`), ``after`` being the jobs of its
    dependencies still to finish. ``chained`` (SLURM): a chapter is ready once its dependencies are submitted, and
    the cluster starts it after them; else once they have finished, at most ``limit`` jobs running at once.
    ``adopted``: path -> job already submitted (by an earlier run), not submitted again. Without ``wait``, returns
    once everything is submitted, the jobs in ``running``. A chapter after a failed one is not submitted (or,
    submitted, is cancelled) and is reported in ``not_run`` with the failed chapter; ``failure(job, err)`` gives the
    line of a job whose ``result()`` raised. ``on_end(path, outcome)`` is called as each chapter's entry joins
    ``outcome``. Raises RuntimeError when chapters wait on each other in a circle; a KeyboardInterrupt while waiting
    cancels the jobs not yet running on this machine (not SLURM's, which run on)."""
    outcome = JobsOutcome(running=dict(adopted or {}))
    todo = [path for path in order if path not in outcome.running]
    ended: set[str] = set()
    pending = set(order)

    def blocked(path):  # the failed chapter it waits for, through any others
        for dep in deps[path]:
            if dep in outcome.failed:
                return dep
            if dep in outcome.not_run:
                return outcome.not_run[dep]
        return None

    def drop_after_failures():
        changed = True
        while changed:
            changed = False
            for path in [*todo, *outcome.running]:
                if (failed := blocked(path)) is not None:
                    if path in outcome.running:
                        outcome.running.pop(path).cancel(check=False)  # SLURM cancels it too (kill-on-invalid-dep)
                    else:
                        todo.remove(path)
                    outcome.not_run[path] = failed
                    on_end(path, outcome)
                    changed = True

    def submit_ready():
        progress = True
        while progress:
            progress = False
            for path in list(todo):
                waits = [d for d in deps[path] if d in pending and d not in ended]
                ready = all(d in outcome.running for d in waits) if chained else not waits
                if ready and (chained or limit is None or len(outcome.running) < limit):
                    todo.remove(path)
                    job = submit(path, [outcome.running[d] for d in waits])
                    outcome.running[path] = job
                    progress = True

    try:
        while True:
            drop_after_failures()
            submit_ready()
            if todo and (chained or not outcome.running):
                raise RuntimeError(f"chapters wait on each other: {todo}")
            if not outcome.running:
                return outcome
            if not wait and not todo:
                return outcome
            ended_now = [path for path, job in outcome.running.items() if job.done()]
            for path in ended_now:
                job = outcome.running.pop(path)
                ended.add(path)
                try:
                    outcome.results[path] = job.result()
                except Exception as err:  # the chapter failed, or its job ended without a result
                    outcome.failed[path] = failure(job, err)
                on_end(path, outcome)
            if not ended_now:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        if not chained:
            for job in outcome.running.values():
                job.cancel(check=False)
        raise


class Starter(Protocol):
    """How an executor starts and watches a chapter's job; everything else is :func:`run_plan`'s.

    ``executor``: its name (the study time record's); ``chained``: jobs submitted at once, the cluster starting each
    after what it waits for (SLURM), else each once they have finished; ``limit``: jobs at once (None: the
    cluster's say); ``local_jobs``: how many share this machine's cores (their kernels' threads), None on a cluster;
    ``poll_s``: seconds between looks; ``benchmark``: whether this machine's figure describes the study's time."""

    executor: str
    chained: bool
    limit: int | None
    local_jobs: int | None
    poll_s: float
    benchmark: bool
    log_folder: Path | None

    def open(self, order: list[str]) -> dict:
        """Before anything is submitted: check the executor can run (a one-line :class:`MedimgError` if not) and
        return the jobs an earlier run submitted that are still live (path -> job), adopted, not submitted again."""

    def submit(self, chapter: Chapter, after: list, job: tuple) -> object:
        """Start ``job`` (:func:`~medimg.study.execute.run_chapter` and its arguments) for ``chapter`` after the
        jobs ``after``; return the job."""

    def failure(self, job, err: Exception) -> str:
        """The one line of a job whose result raised ``err``."""

    def close(self) -> None:
        """After the loop (also when it was interrupted)."""


class ThreadJob:
    """A chapter's job run in a thread of this process (:class:`LocalStarter`), watched as a submitit job is."""

    def __init__(self, future, path: str):
        self.future, self.job_id = future, path

    def done(self) -> bool:
        return self.future.done()

    def result(self):
        return self.future.result()

    def cancel(self, check: bool = False) -> None:
        self.future.cancel()  # a job not yet started; a running chapter finishes


class LocalStarter:
    """``--executor local``: each chapter's job in a thread of this process, at most ``jobs`` at once, in the study
    root (the kernels start there; the process's working folder is changed once, for every thread)."""

    executor, chained, poll_s, benchmark, log_folder = "local", False, 0.05, True, None

    def __init__(self, jobs: int, root: Path):
        from concurrent.futures import ThreadPoolExecutor

        self.limit = self.local_jobs = jobs
        self._pool = ThreadPoolExecutor(jobs)
        self._here = contextlib.chdir(root)

    def open(self, order: list[str]) -> dict:
        self._here.__enter__()
        return {}

    def submit(self, chapter: Chapter, after: list, job: tuple) -> ThreadJob:
        return ThreadJob(self._pool.submit(*job), chapter.path)

    def failure(self, job, err: Exception) -> str:
        return job_failure(job, err)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._here.__exit__(None, None, None)


@contextlib.contextmanager
def job_environment(local_jobs: int | None):
    """While jobs are started: this ``medimg`` first on the jobs' ``PYTHONPATH`` (as for a kernel:
    :func:`~medimg.study.execute.kernel_environment`) and, with ``local_jobs`` > 1 sharing this machine, cores/jobs
    threads each (:func:`~medimg.study.execute.thread_settings`); restored afterwards. Kernels, submitit's local
    jobs and SLURM's (sbatch exports the environment) inherit it."""
    values = {"PYTHONPATH": kernel_environment()["PYTHONPATH"]}
    if local_jobs and local_jobs > 1:
        values.update(thread_settings((os.cpu_count() or 1) // local_jobs))
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_plan(profile: str, starter: Starter, *, force: bool = False, build: bool = True, only: str | None = None,
             benchmark: bool = True, wait: bool = True) -> StudyReport:
    """Execute ``profile``'s chapters (those whose path contains ``only``) as jobs of ``starter``, then write the
    toc and build the book (:func:`finish_book`) once none is still queued.

    Finished chapters (``force``: none) are reused, not started. A new study (nothing adopted, no ``only``) begins
    RESULTS/study_time.json, with this machine's benchmark figure (``benchmark``, where the starter runs the
    chapters here), and each chapter's job adds its seconds. A failure is one line in ``failed``, and every chapter
    after it ``not run``. Without ``wait`` (SLURM), returns once everything is submitted, the jobs in ``running``."""
    from medimg.study.plan import dependencies, flatten, plan
    from medimg.study.study_time import begin_study_time

    root = study_root()
    p = load_profile(profile, root / STUDY_FILE)
    chapters, skipped = plan(p)
    by_path = {c.path: c for c in flatten(chapters) if only is None or only in c.path}
    report = StudyReport(log_folder=starter.log_folder)
    results = root / p["results_dir"]
    order, count = [], len(by_path)
    for path, chapter in by_path.items():
        if not force and finished(root, chapter):
            report.reused.append(path)
            print(f"[{len(report.reused)}/{count}] {chapter_line(path, report)}", flush=True)
        else:
            order.append(path)
    adopted = starter.open(order) if order else {}
    try:
        for path, job in adopted.items():
            print(f"waiting  {path}: job {job.job_id}, submitted before, is {job.state}", flush=True)
        to_submit = [path for path in order if path not in adopted]
        start = time.perf_counter()
        if to_submit and not adopted and only is None:  # a new study's time (a rerun of some chapters keeps it)
            figure = machine_figure(root) if benchmark and starter.benchmark else None  # before anything competes
            begin_study_time(results, profile=profile, executor=starter.executor,
                             jobs=len(to_submit) if starter.limit is None else starter.limit, only=only,
                             benchmark=figure)

        def submit(path, after):
            job = (run_chapter, str(root), by_path[path], p["results_dir"], force, only is None)
            return starter.submit(by_path[path], after, job)

        def on_end(path, outcome):
            if path in outcome.results:
                report.add(outcome.results[path])
            elif path in outcome.failed:
                report.failed[path] = outcome.failed[path]
            else:
                report.failed[path] = f"not run: {outcome.not_run[path]} failed"
            done = len(report.reused) + len(report.executed) + len(report.failed)
            print(f"[{done}/{count}] {chapter_line(path, report)}", flush=True)

        with job_environment(starter.local_jobs):
            outcome = run_jobs(order, dependencies(chapters), submit, chained=starter.chained, wait=wait,
                               limit=starter.limit, adopted=adopted, poll_s=starter.poll_s, on_end=on_end,
                               failure=starter.failure)
    finally:
        if order:
            starter.close()
    report.wall_seconds = time.perf_counter() - start
    report.running = {path: job.job_id for path, job in outcome.running.items()}
    if not report.running:
        finish_book(p, chapters, skipped, root, report, build=build)
    return report


def run_study(profile: str, *, force: bool = False, build: bool = True, only: str | None = None,
              jobs: int = 1, benchmark: bool = True) -> StudyReport:
    """Execute ``profile``'s chapters here (those whose path contains ``only``), write the toc and build the book:
    :func:`run_plan` with :class:`LocalStarter`. ``jobs`` > 1 runs independent chapters at once, each kernel with
    ``cores // jobs`` threads (``OMP_NUM_THREADS``, read by PyTorch and the BLAS), so that they do not oversubscribe
    the cores."""
    return run_plan(profile, LocalStarter(jobs, study_root()), force=force, build=build, only=only,
                    benchmark=benchmark)


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


def finish_book(p: dict, chapters: list[Chapter], skipped: list[str], root: Path, report: StudyReport, *,
                build: bool) -> None:
    """What follows the chapters of profile ``p`` (planned as ``chapters``, ``skipped`` the targets missing here),
    whichever executor ran them: book/PROFILE/datasets.md, ``_toc.yml`` of the chapters executed so far, the first
    page ``book/intro.md`` leading with the profile's answer (:func:`medimg.study.answer.write_intro`), a line for
    each skipped target and, with ``build`` and nothing in ``report.failed``, the book built; a build that fails
    adds ``report.failed["book"]``."""
    from medimg.atomic import write_text
    from medimg.study.answer import write_intro
    from medimg.study.book import build_book, datasets_page, write_toc

    datasets = f"book/{p['name']}/datasets"
    write_text(root / f"{datasets}.md", datasets_page(p))
    write_toc(chapters, root, datasets)
    write_intro(p, root)
    for name in skipped:
        print(f"skipped {name}: not in the data directory ('medimg describe {name}' says how to get it)")
    if build and not report.failed:
        if build_book(root) != 0:
            report.failed["book"] = "jupyter-book build failed (warnings are errors): see its output above"
