"""Running the study: every chapter of the plan, at most ``--jobs`` at once, each once what it reads is finished;
the machine's benchmark figure and the study's time kept beside the results; then the toc and the book.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from medimg.study.book import build_book, datasets_page, write_toc
from medimg.study.plan import Chapter
from medimg.study.execute import StudyReport, chapter_line, execute, finished
from medimg.study.plan import dependencies, flatten, plan
from medimg.study.profiles import STUDY_FILE, load_profile, study_root
from medimg.study.study_time import compute_seconds  # noqa: F401 (the time record, kept here too)


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

    from medimg.atomic import write_text

    results = root / p["results_dir"]
    log_path = results / "study_time.json"
    lock = threading.Lock()
    start, started = time.perf_counter(), time.time()
    log = dict(profile=profile, jobs=jobs, only=only, started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
               benchmark=None, chapters={})
    pending = [c for c in flatten(chapters) if c.path in selected
               and (force or not finished(root, c))]
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

    finish_book(p, chapters, skipped, root, report, build=build)
    return report


def finish_book(p: dict, chapters: list[Chapter], skipped: list[str], root: Path, report: StudyReport, *,
                build: bool) -> None:
    """What follows the chapters of profile ``p`` (planned as ``chapters``, ``skipped`` the targets missing here),
    whichever executor ran them: book/PROFILE/datasets.md, ``_toc.yml`` of the chapters executed so far, a line for
    each skipped target and, with ``build`` and nothing in ``report.failed``, the book built; a build that fails
    adds ``report.failed["book"]``."""
    from medimg.atomic import write_text

    datasets = f"book/{p['name']}/datasets"
    write_text(root / f"{datasets}.md", datasets_page(p))
    write_toc(chapters, root, datasets)
    for name in skipped:
        print(f"skipped {name}: not in the data directory ('medimg describe {name}' says how to get it)")
    if build and not report.failed:
        if build_book(root) != 0:
            report.failed["book"] = "jupyter-book build failed (warnings are errors): see its output above"
