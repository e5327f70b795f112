"""Running the study's chapters as jobs: ``medimg study --executor slurm`` submits each chapter as a SLURM job
with submitit, ``--executor submitit-local`` runs the very same jobs as subprocesses of this machine (to try the
cluster's path on one machine, and in CI).

This module is only how such a job is started and watched (:class:`SubmititStarter`); the loop is the one every
executor runs (:func:`~medimg.study.schedule.run_plan`). Each job runs one chapter
(:func:`~medimg.study.execute.run_chapter`, as ``--executor local`` runs it in a thread) with the resources its
profile's ``slurm`` table gives it (:func:`chapter_resources`). On SLURM every job is submitted at once, each with
``afterok`` on the jobs of its unfinished dependencies; submitit's local executor knows no dependencies, so there a
chapter is submitted once its dependencies have finished. A chapter already executed with the same parameters is
skipped, so running the same command again resumes a half-finished study; a failed chapter is reported with its
job's log, and the chapters after it are not run.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from medimg.errors import MedimgError
from medimg.study.execute import ChapterFailed, StudyReport
from medimg.study.chapter import Chapter
from medimg.study.templates import TEMPLATES
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
    keys = {row.resources_key for row in TEMPLATES.values()}
    for name, entry in [("job", table["job"]), *((f"by_template.{t}", e) for t, e in table["by_template"].items())]:
        if name.startswith("by_template.") and name.split(".", 1)[1] not in keys:
            raise MedimgError(f"{where}.{name} is no template: use one of {', '.join(sorted(keys))}")
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
    entry = dict(table["job"], **table["by_template"].get(TEMPLATES[chapter.template].resources_key, {}))
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


class SubmititStarter:
    """``--executor slurm`` or ``submitit-local`` (:data:`CLUSTERS`): each chapter's job submitted through submitit
    (a fresh executor per job: parameters accumulate in one) with :func:`chapter_resources`, its logs in
    RESULTS/jobs. On SLURM every job is submitted at once, chained by ``afterok``, to ``partition`` and
    ``account`` (:func:`slurm_target`), and a chapter whose job an earlier run submitted and SLURM still has queued
    or running is adopted; submitit-local runs ``jobs`` at once on this machine."""

    def __init__(self, executor: str, p: dict, folder: Path, *, jobs: int = 1, partition: str | None = None,
                 account: str | None = None, img_per_s: float | None = None, poll_s: float | None = None):
        if executor not in CLUSTERS:
            raise MedimgError(f"--executor {executor}: run_cluster takes {' or '.join(CLUSTERS)} (local: run_study)")
        self.executor, self.p, self.log_folder, self.img_per_s = executor, p, folder, img_per_s
        slurm = executor == "slurm"
        self.chained = slurm
        self.limit = self.local_jobs = None if slurm else jobs
        self.benchmark = not slurm  # SLURM's machines are not this one
        self.poll_s = poll_s or (30.0 if slurm else 0.25)  # sacct is a query
        self.partition, self.account = slurm_target(partition, account) if slurm else (None, None)
        self._sizes: dict = {}
        self._submitted = _read_submitted(folder)

    def open(self, order: list[str]) -> dict:
        make_executor(self.executor, self.log_folder)  # no SLURM here: one line before anything is submitted
        return _live_jobs(self.log_folder, order) if self.chained else {}

    def submit(self, chapter: Chapter, after: list, job: tuple):
        from medimg.atomic import write_text

        ids = [j.job_id for j in after]
        ex = make_executor(self.executor, self.log_folder)
        ex.update_parameters(**submission_parameters(chapter_resources(self.p, chapter, self._sizes, self.img_per_s),
                                                     f"medimg:{chapter.path.removeprefix('book/')}", ids,
                                                     self.partition, self.account))
        submitted = ex.submit(*job)
        if self.chained:
            self._submitted[chapter.path] = submitted.job_id
            write_text(self.log_folder / SUBMITTED, json.dumps(self._submitted, indent=1) + "\n")
        print(f"submitted {chapter.path}: job {submitted.job_id}" + (f", after job {', '.join(ids)}" if ids else ""),
              flush=True)
        return submitted

    def failure(self, job, err: Exception) -> str:
        return failure_line(job, err)

    def close(self) -> None:
        pass


def run_cluster(profile: str, *, executor: str = "submitit-local", force: bool = False, build: bool = True,
                only: str | None = None, jobs: int = 1, benchmark: bool = True, partition: str | None = None,
                account: str | None = None, wait: bool = False, img_per_s: float | None = None,
                poll_s: float | None = None) -> StudyReport:
    """Execute ``profile``'s chapters (those whose path contains ``only``) as jobs of ``executor``
    (:class:`SubmititStarter`), then write the toc and build the book: the loop of
    :func:`~medimg.study.schedule.run_plan`, as ``--executor local`` runs it.

    ``slurm``: unless ``wait``, returns with the jobs in ``running``: the same call once they are done skips the
    finished chapters and builds the book. ``submitit-local``: the same jobs as subprocesses here, ``jobs`` at once
    (each kernel with cores/jobs threads), always waited for. A failure is ``job ID: error; log: PATH`` in
    ``failed``, and every chapter after it ``not run``. ``benchmark``: with submitit-local, the machine's figure
    recorded as run_study records it. ``poll_s``: seconds between looks at the jobs (default 0.25 locally, 30 on
    SLURM). Raises :class:`MedimgError` for an unknown executor, or slurm without SLURM."""
    from medimg.study.schedule import run_plan

    root = study_root()
    p = load_profile(profile, root / STUDY_FILE)
    starter = SubmititStarter(executor, p, root / p["results_dir"] / JOBS_FOLDER, jobs=jobs, partition=partition,
                              account=account, img_per_s=img_per_s, poll_s=poll_s)
    return run_plan(profile, starter, force=force, build=build, only=only, benchmark=benchmark,
                    wait=wait or executor != "slurm")


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
