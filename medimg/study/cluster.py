"""Running the study's chapters as jobs: ``medimg study --executor slurm`` submits each chapter as a SLURM job
with submitit, ``--executor submitit-local`` runs the very same jobs as subprocesses of this machine (to try the
cluster's path on one machine, and in CI).

Each job runs one chapter (:func:`run_chapter`) with the resources its profile's ``slurm`` table gives it
(:func:`chapter_resources`). The chapters wait for each other as ``--jobs`` does (:func:`~medimg.study.plan.dependencies`):
on SLURM every job is submitted at once, each with ``afterok`` on the jobs of its unfinished dependencies; submitit's
local executor knows no dependencies, so there a chapter is submitted once its dependencies have finished
(:func:`run_jobs`). A chapter already executed with the same parameters is skipped, so running the same command
again resumes a half-finished study; a failed chapter is reported with its job's log, and the chapters after it are
not run. Once every chapter has finished, the book is built as :func:`~medimg.study.schedule.run_study` builds it.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from medimg.errors import MedimgError
from medimg.study.execute import StudyReport, chapter_line, execute, finished, kernel_environment
from medimg.study.chapter import Chapter
from medimg.study.profiles import STUDY_FILE, load_profile, study_root

# the plan imports the network code (seconds): a job process, which is handed its chapter, never does

EXECUTORS = ("local", "slurm", "submitit-local")  # local: medimg.study.schedule.run_study, kernels of this process
CLUSTERS = {"slurm": "slurm", "submitit-local": "local"}  # our executor -> submitit's cluster name
JOBS_FOLDER = "jobs"  # under the profile's results_dir: submitit's scripts, pickles and logs, and SUBMITTED
SUBMITTED = "submitted.json"  # chapter path -> the SLURM job last submitted for it (a rerun adopts live ones)
# SLURM states of a job that is still to finish (sacct); any other state is an end
ACTIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "PREEMPTED")
PARTITION_ENV, ACCOUNT_ENV = "MEDIMG_SLURM_PARTITION", "MEDIMG_SLURM_ACCOUNT"

RESOURCE_KEYS = ("gpus_per_node", "cpus_per_task", "mem_gb", "img_per_s", "min_minutes")
# a profile without a ``slurm`` section (smoke, quick: CPU profiles): every chapter on the CPU, at least an hour
DEFAULT_SLURM = dict(job=dict(gpus_per_node=0, cpus_per_task=2, mem_gb=8, img_per_s=100, min_minutes=60),
                     by_template={}, safety=3, max_minutes=1440)


@dataclass(frozen=True)
class Resources:
    """What one chapter's job asks for: GPUs and CPUs, memory in GB and a time limit in minutes; ``note`` says
    why the limit is the profile's ``max_minutes`` ("capped": the estimate times the safety factor was longer;
    "size unknown": the size of the chapter's data is), else it is empty."""

    gpus_per_node: int
    cpus_per_task: int
    mem_gb: float
    timeout_min: int
    note: str = ""

    @property
    def time_limit(self) -> str:
        """The time limit as SLURM writes it, H:MM:00, with the note."""
        hours, minutes = divmod(self.timeout_min, 60)
        return f"{hours}:{minutes:02d}:00" + (f" ({self.note})" if self.note else "")


def slurm_table(p: dict) -> dict:
    """Profile ``p``'s ``slurm`` section over :data:`DEFAULT_SLURM`: ``job`` (every chapter's resources, each key of
    :data:`RESOURCE_KEYS`), ``by_template`` (template -> the keys it changes), ``safety`` and ``max_minutes``.
    Raises :class:`MedimgError` (one line naming the key) for a key or template it does not know."""
    given = p.get("slurm") or {}
    where = f"study.yml, profile {p['name']}: slurm"
    unknown = sorted(set(given) - set(DEFAULT_SLURM))
    if unknown:
        raise MedimgError(f"{where} has {', '.join(unknown)}: use only {', '.join(DEFAULT_SLURM)}")
    table = dict(DEFAULT_SLURM, **given)
    table["job"] = dict(DEFAULT_SLURM["job"], **(given.get("job") or {}))
    for name, entry in [("job", table["job"]), *((f"by_template.{t}", e) for t, e in table["by_template"].items())]:
        from medimg.study.plan import TEMPLATES

        if name.startswith("by_template.") and name.split(".", 1)[1] not in TEMPLATES:
            raise MedimgError(f"{where}.{name} is no template: use one of {', '.join(TEMPLATES)}")
        wrong = sorted(set(entry) - set(RESOURCE_KEYS))
        if wrong:
            raise MedimgError(f"{where}.{name} has {', '.join(wrong)}: use only {', '.join(RESOURCE_KEYS)}")
    return table


def chapter_resources(p: dict, chapter: Chapter, sizes: dict | None = None, img_per_s: float | None = None) -> Resources:
    """The resources of ``chapter``'s job from profile ``p``'s :func:`slurm_table`: its template's entry over
    ``job``; the time limit is the chapter's training-image passes (:func:`medimg.study.cost.chapter_cost`) at
    ``img_per_s`` (default: the table's) in minutes, times ``safety``, rounded up, at least ``min_minutes`` and at
    most ``max_minutes`` (also for a chapter whose data size is unknown). ``sizes`` caches the datasets' sizes
    across calls (:func:`~medimg.study.cost.cost_plan`)."""
    from medimg.study.cost import chapter_cost

    table = slurm_table(p)
    entry = dict(table["job"], **table["by_template"].get(chapter.template, {}))
    passes = chapter_cost(chapter, {} if sizes is None else sizes)["passes"]
    speed = img_per_s or entry["img_per_s"]
    estimate = math.inf if passes is None else math.ceil(passes / speed / 60 * table["safety"])
    minutes = min(max(estimate, int(entry["min_minutes"])), int(table["max_minutes"]))
    note = "size unknown" if passes is None else "capped" if estimate > table["max_minutes"] else ""
    return Resources(int(entry["gpus_per_node"]), int(entry["cpus_per_task"]), float(entry["mem_gb"]), int(minutes),
                     note)


def slurm_target(partition: str | None = None, account: str | None = None,
                 environ: dict | None = None) -> tuple[str | None, str | None]:
    """The SLURM partition and account the jobs go to: the options given, else ``$MEDIMG_SLURM_PARTITION`` and
    ``$MEDIMG_SLURM_ACCOUNT`` (of ``environ``, default this process's); None (and an empty variable) is the
    cluster's default."""
    env = os.environ if environ is None else environ
    return partition or env.get(PARTITION_ENV) or None, account or env.get(ACCOUNT_ENV) or None


def resources_text(p: dict, img_per_s: float | None = None, only: str | None = None, partition: str | None = None,
                   account: str | None = None) -> str:
    """``medimg study --plan --executor slurm``'s second table: each chapter's job (every dataset planned, as
    :func:`~medimg.study.cost.cost_plan`), with ``only`` the chapters whose path contains it, and where it goes."""
    from medimg.study.plan import flatten, plan

    chapters, _ = plan(p, every_dataset=True)
    sizes: dict = {}
    rows = [(c.path, chapter_resources(p, c, sizes, img_per_s)) for c in flatten(chapters)
            if only is None or only in c.path]
    partition, account = slurm_target(partition, account)
    width = max([len("chapter"), *(len(path) for path, _ in rows)])
    table = slurm_table(p)
    speed = f"{img_per_s:g} img/s (--img-per-s)" if img_per_s else "the img/s of the profile's slurm table"
    lines = [f"SLURM jobs, to partition {partition or '(the default)'} and account {account or '(the default)'}. Time "
             f"limit: the passes above at {speed}, times {table['safety']:g}, within the table's minimum and "
             f"{table['max_minutes']} minutes.", "", f"{'chapter':<{width}}  GPUs  CPUs  memory  time limit"]
    lines += [f"{path:<{width}}  {r.gpus_per_node:>4}  {r.cpus_per_task:>4}  {r.mem_gb:>4g} GB  {r.time_limit}"
              for path, r in rows]
    return "\n".join(lines)


class ChapterFailed(Exception):
    """Raised by a job whose chapter failed: its message is the one line :class:`StudyReport` holds for it."""


def run_chapter(root: str, chapter: Chapter, results_dir: str, force: bool = False,
                record: bool = True) -> StudyReport:
    """What one job runs: ``chapter``, as planned when it was submitted, executed by
    :func:`~medimg.study.execute.execute` in the study root ``root`` (reused when it is already current, unless
    ``force``); with ``record``, its seconds join RESULTS/study_time.json (``results_dir``, relative to ``root``).
    The job imports no network code of its own (the chapter's kernel does): it is handed the chapter, not the plan.
    A study file changed while the job waited makes the chapter stale, and the next ``medimg study`` executes it
    again. Inside a SLURM job, the kernel's threads are the job's CPUs unless ``OMP_NUM_THREADS`` is set.
    Returns the chapter's :class:`StudyReport`. Raises :class:`ChapterFailed` (its failing cell and error) when the
    chapter failed, so that the job fails and SLURM starts none of the chapters after it."""
    folder = Path(root)
    path = chapter.path
    with contextlib.chdir(folder):  # the kernel starts here, as in run_study
        if os.environ.get("SLURM_CPUS_PER_TASK"):
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                os.environ.setdefault(name, os.environ["SLURM_CPUS_PER_TASK"])
        report = StudyReport()
        execute(chapter, folder, force=force, report=report)
    if path in report.failed:
        raise ChapterFailed(" ".join(report.failed[path].split()))
    if record and path not in report.reused:
        record_time(folder / results_dir, path, report.seconds[path])
    return report


def record_time(results: Path, path: str, seconds: float) -> None:
    """Chapter ``path``'s ``seconds`` into RESULTS/study_time.json (which the driver began at submission), with
    the study's wall and compute seconds so far (:func:`~medimg.study.schedule.compute_seconds`), read and written
    under a lock (jobs end at once). Nothing when no study began one."""
    import fcntl
    from datetime import datetime

    from medimg.atomic import write_text
    from medimg.study.study_time import compute_seconds

    log_path = results / "study_time.json"
    if not log_path.is_file():
        return
    (results / JOBS_FOLDER).mkdir(parents=True, exist_ok=True)
    with open(results / JOBS_FOLDER / "study_time.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        log = json.loads(log_path.read_text())
        started = datetime.fromisoformat(log["started"]).timestamp()
        log["chapters"][path] = round(seconds, 1)
        log["wall_seconds"] = round(time.time() - started, 1)
        log["compute_seconds"] = {k: round(v, 1) for k, v in compute_seconds(results, started).items()}
        write_text(log_path, json.dumps(log, indent=1) + "\n")


def submission_parameters(resources: Resources, name: str, after: list[str], partition: str | None = None,
                          account: str | None = None) -> dict:
    """The parameters of ``submitit.AutoExecutor.update_parameters`` for one chapter's job named ``name``: its
    ``resources``; on SLURM also the partition and account (None: the cluster's default) and, when it waits for the
    jobs with ids ``after``, ``dependency=afterok:ID:ID...`` with ``--kill-on-invalid-dep=yes`` (a job after a
    failed one is cancelled rather than left pending). No GPU: no ``gpus_per_node`` (some SLURM versions refuse 0).
    The local executor ignores the ``slurm_`` ones."""
    params = dict(name=name, timeout_min=resources.timeout_min, gpus_per_node=resources.gpus_per_node or None,
                  cpus_per_task=resources.cpus_per_task, mem_gb=resources.mem_gb, slurm_partition=partition,
                  slurm_account=account, slurm_additional_parameters={"kill-on-invalid-dep": "yes"})
    if after:
        params["slurm_dependency"] = "afterok:" + ":".join(after)
    return {k: v for k, v in params.items() if v is not None}


def make_executor(executor: str, folder: Path):
    """A fresh ``submitit.AutoExecutor`` for ``executor`` (slurm or submitit-local) writing into ``folder`` (one per
    job: parameters accumulate in an executor). Raises :class:`MedimgError` for slurm where there is no ``srun``."""
    import submitit

    try:
        return submitit.AutoExecutor(folder=folder, cluster=CLUSTERS[executor])
    except RuntimeError as err:  # submitit's SlurmExecutor: 'Could not detect "srun"'
        raise MedimgError(f"--executor slurm needs SLURM's srun and sbatch, and this machine has none on PATH ({err}): "
                          f"run it on the cluster's login node, or try the same jobs here with --executor submitit-local")


@dataclass
class JobsOutcome:
    """What :func:`run_jobs` saw: ``results`` (path -> what the job returned), ``failed`` (path -> its one line),
    ``not_run`` (path -> the failed chapter it waited for) and ``running`` (path -> job, when it did not wait)."""

    results: dict = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    not_run: dict[str, str] = field(default_factory=dict)
    running: dict = field(default_factory=dict)


def run_jobs(order: list[str], deps: dict[str, tuple[str, ...]], submit: Callable, *, chained: bool,
             wait: bool = True, limit: int | None = None, adopted: dict | None = None, poll_s: float = 1.0,
             on_end: Callable = lambda path, outcome: None) -> JobsOutcome:
    """Submit a job for every chapter path of ``order`` (reading order), each once it is ready, and gather them.

    ``deps`` gives each path the paths it waits for; those not in ``order`` (finished, or not selected) count as
    done. ``submit(path, after)`` submits one and returns its job (a submitit ``Job``: ``job_id``, ``done()``,
    ``result()``, ``cancel()``, ``paths.stderr``), ``after`` being the jobs of its dependencies still to finish.
    ``chained`` (SLURM): a chapter is ready once its dependencies are submitted, and the cluster starts it after
    them; else once they have finished, at most ``limit`` jobs running at once. ``adopted``: path -> job already
    submitted (by an earlier run), not submitted again. Without ``wait``, returns once everything is submitted,
    the jobs in ``running``. A chapter after a failed one is not submitted (or, submitted, is cancelled) and is
    reported in ``not_run`` with the failed chapter. ``on_end(path, outcome)`` is called as each chapter's entry
    joins ``outcome``. Raises RuntimeError when chapters wait on each other in a circle; a KeyboardInterrupt while
    waiting cancels the local jobs (not SLURM's, which run on)."""
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
                    outcome.failed[path] = failure_line(job, err)
                on_end(path, outcome)
            if not ended_now:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        if not chained:
            for job in outcome.running.values():
                job.cancel(check=False)
        raise


_TRACE_RULE = "-" * 22 + "\n"  # submitit's FailedJobError frames the job's traceback between two of these


def failure_line(job, err: Exception) -> str:
    """One line for a job that ended without its chapter: ``job ID: ERROR; log: STDERR``, ERROR being the
    chapter's failing cell and error (:class:`ChapterFailed`), the exception that ended the job, or the state the
    job ended in (SLURM's TIMEOUT, OUT_OF_MEMORY, CANCELLED...) when it left no result."""
    import re

    from submitit.core.utils import FailedJobError

    text = str(err)
    if isinstance(err, FailedJobError) and text.count(_TRACE_RULE) >= 2:
        lines = text.split(_TRACE_RULE)[1].splitlines()
        last = max((i for i, line in enumerate(lines) if line.startswith("  File ")), default=-1)
        error = next((line for line in lines[last + 1:] if line.strip() and not line.startswith(" ")), text)
        error = re.sub(r"^(?:[\w]+\.)+(\w+): ", r"\1: ", error)
        error = error.removeprefix(f"{ChapterFailed.__name__}: ")
    elif isinstance(err, FailedJobError):
        error = " ".join(text.split())[:300]
    else:
        error = f"ended {job.state} without a result"
    return f"job {job.job_id}: {error}; log: {job.paths.stderr}"


@dataclass
class ClusterReport(StudyReport):
    """:class:`StudyReport` of a study run as jobs, with the jobs still queued or running when it returned
    (``running``: chapter path -> job id; SLURM without ``--wait``) and the folder of their logs."""

    running: dict[str, str] = field(default_factory=dict)
    log_folder: Path | None = None


def run_cluster(profile: str, *, executor: str = "submitit-local", force: bool = False, build: bool = True,
                only: str | None = None, jobs: int = 1, benchmark: bool = True, partition: str | None = None,
                account: str | None = None, wait: bool = False, img_per_s: float | None = None,
                poll_s: float | None = None) -> ClusterReport:
    """Execute ``profile``'s chapters (those whose path contains ``only``) as jobs of ``executor``, then write the
    toc and build the book as :func:`~medimg.study.schedule.run_study` does.

    ``slurm``: every unfinished chapter submitted at once (:func:`run_jobs`, chained), to ``partition`` and
    ``account`` (:func:`slurm_target`), each with :func:`chapter_resources` (``img_per_s``: the speed its time limit
    assumes); a chapter whose job an earlier run submitted and SLURM still has queued or running is adopted, not
    submitted again. Unless ``wait``, returns with the jobs in ``running``: the same call once they are done skips
    the finished chapters and builds the book. ``submitit-local``: the same jobs as subprocesses here, ``jobs`` at
    once (each kernel with cores/jobs threads), always waited for. Finished chapters (``force``: none) are reused,
    not submitted; a failure is ``job ID: error; log: PATH`` in ``failed``, and every chapter after it ``not run``.
    ``benchmark``: with submitit-local, the machine's figure recorded as run_study records it (SLURM's machines are
    not this one). ``poll_s``: seconds between looks at the jobs (default 0.25 locally, 30 on SLURM: sacct is a query).
    Raises :class:`MedimgError` for an unknown executor, or slurm without SLURM."""
    from datetime import datetime, timezone

    from medimg.atomic import write_text
    from medimg.study.schedule import finish_book, machine_figure

    if executor not in CLUSTERS:
        raise MedimgError(f"--executor {executor}: run_cluster takes {' or '.join(CLUSTERS)} (local: run_study)")
    root = study_root()
    p = load_profile(profile, root / STUDY_FILE)
    from medimg.study.plan import dependencies, flatten, plan

    chapters, skipped = plan(p)
    by_path = {c.path: c for c in flatten(chapters) if only is None or only in c.path}
    report = ClusterReport()
    results = root / p["results_dir"]
    folder = results / JOBS_FOLDER
    report.log_folder = folder
    order = []
    for path, chapter in by_path.items():
        if not force and finished(root, chapter):
            report.reused.append(path)
            print(chapter_line(path, report), flush=True)
        else:
            order.append(path)
    slurm = executor == "slurm"
    if order:
        make_executor(executor, folder)  # no SLURM here: one line before anything is looked up or submitted
    partition, account = slurm_target(partition, account) if slurm else (None, None)
    adopted = _live_jobs(folder, order) if slurm else {}
    for path, job in adopted.items():
        print(f"waiting  {path}: job {job.job_id}, submitted before, is {job.state}", flush=True)
    submitted = _read_submitted(folder)
    sizes: dict = {}
    start, started = time.perf_counter(), datetime.now(timezone.utc).isoformat(timespec="seconds")

    def submit(path, after):
        ids = [j.job_id for j in after]
        ex = make_executor(executor, folder)
        ex.update_parameters(**submission_parameters(chapter_resources(p, by_path[path], sizes, img_per_s),
                                                     f"medimg:{path.removeprefix('book/')}", ids, partition, account))
        job = ex.submit(run_chapter, str(root), by_path[path], p["results_dir"], force, only is None)
        if slurm:
            submitted[path] = job.job_id
            write_text(folder / SUBMITTED, json.dumps(submitted, indent=1) + "\n")
        print(f"submitted {path}: job {job.job_id}" + (f", after job {', '.join(ids)}" if ids else ""), flush=True)
        return job

    def on_end(path, outcome):
        if path in outcome.results:
            part = outcome.results[path]
            for name in ("executed", "reused", "stale"):
                getattr(report, name).extend(getattr(part, name))
            report.seconds.update(part.seconds)
        elif path in outcome.failed:
            report.failed[path] = outcome.failed[path]
        else:
            report.failed[path] = f"not run: {outcome.not_run[path]} failed"
        print(chapter_line(path, report), flush=True)

    to_submit = [path for path in order if path not in adopted]
    if to_submit and not adopted and only is None:  # a new study's time, as run_study keeps it
        log = dict(profile=profile, jobs=len(to_submit) if slurm else jobs, executor=executor, only=only,
                   started=started, benchmark=machine_figure(root) if benchmark and not slurm else None,
                   chapters={}, wall_seconds=0.0, compute_seconds={})
        write_text(results / "study_time.json", json.dumps(log, indent=1) + "\n")
    with _job_environment(None if slurm else jobs):
        outcome = run_jobs(order, dependencies(chapters), submit, chained=slurm, wait=wait or not slurm,
                           limit=None if slurm else jobs, adopted=adopted, poll_s=poll_s or (30.0 if slurm else 0.25),
                           on_end=on_end)
    report.wall_seconds = time.perf_counter() - start
    report.running = {path: job.job_id for path, job in outcome.running.items()}
    if not report.running:
        finish_book(p, chapters, skipped, root, report, build=build)
    return report


def _read_submitted(folder: Path) -> dict[str, str]:
    path = folder / SUBMITTED
    return json.loads(path.read_text()) if path.is_file() else {}


def _live_jobs(folder: Path, paths: list[str]) -> dict:
    """The SLURM jobs an earlier run submitted for chapters of ``paths`` that SLURM (sacct) still has queued or
    running: path -> job."""
    from submitit.slurm.slurm import SlurmJob

    live = {}
    for path, job_id in _read_submitted(folder).items():
        if path in paths:
            job = SlurmJob(folder=folder, job_id=job_id)
            if job.state.split()[0].upper() in ACTIVE_STATES:
                live[path] = job
    return live


@contextlib.contextmanager
def _job_environment(jobs: int | None):
    """While submitting: this ``medimg`` first on the jobs' ``PYTHONPATH`` (as for a kernel:
    :func:`~medimg.study.execute.kernel_environment`) and, ``jobs`` > 1 at once on this machine, cores/jobs threads
    each; restored afterwards. SLURM's jobs inherit it too (sbatch exports the environment)."""
    values = {"PYTHONPATH": kernel_environment()["PYTHONPATH"]}
    if jobs and jobs > 1:
        threads = str(max(1, (os.cpu_count() or 1) // jobs))
        values.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
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
