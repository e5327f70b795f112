"""The study as jobs (medimg.study.cluster): the scheduling loop, each chapter's resources, the SLURM submission
(against stand-in sbatch, srun, sacct and scancel: no cluster here), a failing chapter through real jobs, and the
smoke study through submitit's local executor making the same chapters and results as ``--jobs 1``."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, assert_one_line_error, run_smoke_study
from medimg.errors import MedimgError
from medimg.study.cluster import (ACCOUNT_ENV, PARTITION_ENV, chapter_resources, failure_line, run_cluster,
                                  slurm_target, submission_parameters, Resources)
from medimg.study.execute import ChapterFailed
from medimg.study.schedule import run_jobs
from medimg.study.plan import dependencies, flatten, plan
from medimg.study.profiles import load_profile

BOOK = "book/smoke"


def smoke_plan():
    chapters, _ = plan(load_profile("smoke", REPO / "study.yml"))
    return chapters, dependencies(chapters), [c.path for c in flatten(chapters)]


class FakeJob:
    """A submitted job of a pretend cluster: it ends (failing when ``fail`` is given) at the ``looks``-th look after
    the jobs it waits for (``after``) have ended, and never when one of them failed (SLURM's afterok)."""

    def __init__(self, job_id, path, after=(), fail=None, looks=1):
        self.job_id, self.path, self.after, self.fail, self.looks = job_id, path, list(after), fail, looks
        self.paths = type("Paths", (), {"stderr": Path(f"/logs/{job_id}_0_log.err")})()
        self.state, self.ended, self.cancelled = "FINISHED", False, False

    def done(self):
        if not self.ended and all(j.ended and not j.fail for j in self.after):
            self.looks -= 1
            self.ended = self.looks < 0
        return self.ended

    def result(self):
        if self.fail:
            raise RuntimeError(self.fail)
        return f"report of {self.path}"

    def cancel(self, check=True):
        self.cancelled = True


class FakeCluster:
    """Submits :class:`FakeJob` s, keeping what happened in order: ("submit", path, ids waited for), ("end", path)."""

    def __init__(self, fail=()):
        self.fail, self.events, self.jobs = set(fail), [], {}

    def submit(self, path, after):
        job = FakeJob(str(100 + len(self.jobs)), path, after, fail="boom" if path in self.fail else None)
        self.jobs[path] = job
        self.events.append(("submit", path, [j.job_id for j in after]))
        return job

    def on_end(self, path, outcome):
        self.events.append(("end", path))


def test_local_jobs_start_once_what_they_read_has_ended_and_at_most_limit_at_once():
    _, deps, order = smoke_plan()
    cluster = FakeCluster()
    outcome = run_jobs(order, deps, cluster.submit, chained=False, limit=2, poll_s=0, on_end=cluster.on_end)
    assert outcome.failed == {} and outcome.not_run == {} and outcome.running == {}
    assert outcome.results == {p: f"report of {p}" for p in order}
    ended, running, peak = set(), 0, 0
    for event in cluster.events:
        if event[0] == "submit":
            assert set(deps[event[1]]) <= ended, event  # everything it reads had ended
            assert event[2] == []  # submitit's local executor is given no dependencies
            running += 1
            peak = max(peak, running)
        else:
            ended.add(event[1])
            running -= 1
    assert peak == 2
    submitted = [e[1] for e in cluster.events if e[0] == "submit"]
    assert submitted[-2:] == [f"{BOOK}/summary.ipynb", f"{BOOK}/reproducibility.ipynb"]
    # a dataset's comparison after its card and its three arms
    grey = [f"{BOOK}/synthetic_grey/{n}.ipynb" for n in ("card", "tl", "ssl", "scratch")]
    assert max(submitted.index(p) for p in grey) < submitted.index(f"{BOOK}/synthetic_grey/comparison.ipynb")


def test_slurm_jobs_are_submitted_at_once_each_after_the_jobs_of_what_it_reads():
    _, deps, order = smoke_plan()
    cluster = FakeCluster()
    outcome = run_jobs(order, deps, cluster.submit, chained=True, wait=False, poll_s=0, on_end=cluster.on_end)
    assert set(outcome.running) == set(order) and outcome.results == {}
    assert [e[0] for e in cluster.events] == ["submit"] * len(order)  # nothing waited for, nothing ended
    ids = {path: job.job_id for path, job in cluster.jobs.items()}
    for _, path, after in cluster.events:
        assert sorted(after) == sorted(ids[d] for d in deps[path]), path
    summary = dict((e[1], e[2]) for e in cluster.events)[f"{BOOK}/summary.ipynb"]
    assert len(summary) == len(order) - 2  # every other chapter's job but the appendix
    # a chapter not to run (finished before) is no dependency: the comparison waits for the three arms' jobs only
    todo = [p for p in order if p != f"{BOOK}/synthetic_grey/card.ipynb"]
    cluster = FakeCluster()
    run_jobs(todo, deps, cluster.submit, chained=True, wait=False, poll_s=0)
    after = {e[1]: e[2] for e in cluster.events}
    assert after[f"{BOOK}/synthetic_grey/tl.ipynb"] == []
    assert len(after[f"{BOOK}/synthetic_grey/comparison.ipynb"]) == 3


@pytest.mark.parametrize("chained", [False, True], ids=["local", "slurm"])
def test_the_chapters_after_a_failed_one_are_not_run_and_say_which_failed(chained):
    _, deps, order = smoke_plan()
    card = f"{BOOK}/synthetic_grey/card.ipynb"
    cluster = FakeCluster(fail={card})
    outcome = run_jobs(order, deps, cluster.submit, chained=chained, limit=1, poll_s=0, on_end=cluster.on_end,
                       failure=failure_line)
    assert outcome.failed == {card: f"job {cluster.jobs[card].job_id}: ended FINISHED without a result; log: "
                                    f"/logs/{cluster.jobs[card].job_id}_0_log.err"}
    after = {f"{BOOK}/synthetic_grey/{n}.ipynb" for n in ("tl", "ssl", "scratch", "comparison")}
    after |= {f"{BOOK}/summary.ipynb", f"{BOOK}/reproducibility.ipynb"}
    assert outcome.not_run == {p: card for p in after}  # the appendix names the card, not the summary
    assert set(outcome.results) == set(order) - after - {card}  # the colour dataset and SimCLR went on
    ended = [e[1] for e in cluster.events if e[0] == "end"]
    assert sorted(ended) == sorted(order) and len(set(ended)) == len(order)  # each reported once
    if chained:  # SLURM had them all already: they are cancelled, not left pending
        assert {p for p, job in cluster.jobs.items() if job.cancelled} == after
    else:  # the local executor never had them
        assert not after & set(cluster.jobs)


def test_a_circle_of_chapters_is_refused():
    deps = {"a": ("b",), "b": ("a",)}
    for chained in (False, True):
        with pytest.raises(RuntimeError, match="wait on each other"):
            run_jobs(["a", "b"], deps, FakeCluster().submit, chained=chained, poll_s=0)


def test_a_training_chapter_of_the_paper_gets_a_gpu_and_its_estimated_time():
    from medimg.study.cost import chapter_cost

    p = load_profile("paper", REPO / "study.yml")
    chapters = {c.path: c for c in flatten(plan(p, every_dataset=True)[0])}
    sizes = {}
    tl = chapters["book/paper/eyepacs/tl.ipynb"]
    r = chapter_resources(p, tl, sizes)
    passes = chapter_cost(tl, sizes)["passes"]
    assert passes > 1e6
    # 30 epochs of ~25,000 images for 5 seeds at 300 img/s, times 3: more than the one-hour floor
    assert r == Resources(gpus_per_node=1, cpus_per_task=10, mem_gb=64.0, timeout_min=math.ceil(passes / 300 / 60 * 3))
    assert 60 < r.timeout_min < 1440 and r.time_limit == f"{r.timeout_min // 60}:{r.timeout_min % 60:02d}:00"
    small = chapter_resources(p, chapters["book/paper/busi/tl.ipynb"], sizes)
    assert small.gpus_per_node == 1 and small.timeout_min == 60  # BUSI's few hundred images: the floor
    # the chapters that train nothing: no GPU
    for path in ("book/paper/eyepacs/comparison.ipynb", "book/paper/eyepacs/card.ipynb", "book/paper/summary.ipynb",
                 "book/paper/reproducibility.ipynb", "book/paper/ablations/double.ipynb"):
        assert chapter_resources(p, chapters[path], sizes).gpus_per_node == 0, path
    assert chapter_resources(p, chapters["book/paper/summary.ipynb"], sizes).timeout_min == 240
    # a size no one knows gets the longest limit, and says so; --img-per-s halves the time of a faster machine's
    unknown = chapter_resources(p, chapters["book/paper/oasis_mri/tl.ipynb"], sizes)
    assert (unknown.timeout_min, unknown.note) == (1440, "size unknown")
    assert chapter_resources(p, tl, sizes, img_per_s=600).timeout_min == math.ceil(passes / 600 / 60 * 3)
    # a profile without a slurm table (smoke, quick): the CPU for every chapter
    smoke = load_profile("smoke", REPO / "study.yml")
    assert {chapter_resources(smoke, c).gpus_per_node for c in flatten(plan(smoke)[0])} == {0}


def test_a_slurm_table_with_a_key_it_does_not_know_is_a_one_line_error():
    p = dict(load_profile("smoke", REPO / "study.yml"), slurm={"job": {"gpus": 1}})
    with pytest.raises(MedimgError, match="slurm.job has gpus: use only gpus_per_node"):
        chapter_resources(p, flatten(plan(p)[0])[0])
    p = dict(p, slurm={"by_template": {"finetuning": {"gpus_per_node": 1}}})
    with pytest.raises(MedimgError, match="slurm.by_template.finetuning is no template"):
        chapter_resources(p, flatten(plan(p)[0])[0])


def test_partition_and_account_from_the_options_else_the_environment():
    env = {PARTITION_ENV: "gpu", ACCOUNT_ENV: "lab"}
    assert slurm_target(environ=env) == ("gpu", "lab")
    assert slurm_target("a100", None, environ=env) == ("a100", "lab")
    assert slurm_target("a100", "other", environ=env) == ("a100", "other")
    assert slurm_target(environ={PARTITION_ENV: ""}) == (None, None)  # the cluster's defaults


def test_submission_parameters_chain_the_job_and_leave_out_a_zero_gpu():
    r = Resources(gpus_per_node=0, cpus_per_task=2, mem_gb=8.0, timeout_min=60)
    params = submission_parameters(r, "medimg:smoke/summary.ipynb", ["11", "12"], "gpu", None)
    assert params == dict(name="medimg:smoke/summary.ipynb", timeout_min=60, cpus_per_task=2, mem_gb=8.0,
                          slurm_partition="gpu", slurm_additional_parameters={"kill-on-invalid-dep": "yes"},
                          slurm_dependency="afterok:11:12")
    assert "slurm_dependency" not in submission_parameters(r, "x", [], None, None)


FAKE_SLURM = {  # stand-ins for SLURM's commands: sbatch numbers the jobs, sacct reports $FAKE_SLURM/states
    "srun": "exit 0",
    "sbatch": 'n=$(cat "$FAKE_SLURM/next"); echo $((n + 1)) > "$FAKE_SLURM/next"; echo "Submitted batch job $n"',
    "sacct": 'echo "JobID|State|NodeList"; cat "$FAKE_SLURM/states" 2>/dev/null; exit 0',
    "scancel": 'echo "$@" >> "$FAKE_SLURM/cancelled"',
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """SLURM's commands on PATH (see FAKE_SLURM), a study root with the repository's study.yml, and submitit's
    shared record of SLURM states emptied; yields the stand-ins' folder."""
    from submitit.slurm.slurm import SlurmJob

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKE_SLURM.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "next").write_text("5001\n")
    root = tmp_path / "study"
    root.mkdir()
    shutil.copy(REPO / "study.yml", root / "study.yml")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(bin_dir))
    monkeypatch.setenv("MEDIMG_STUDY_ROOT", str(root))
    for name in (PARTITION_ENV, ACCOUNT_ENV):
        monkeypatch.delenv(name, raising=False)
    SlurmJob.watcher.clear()
    yield bin_dir
    SlurmJob.watcher.clear()


def sbatch_lines(root: Path, job_id: str) -> set[str]:
    return {x for x in (root / "results/smoke/jobs" / f"{job_id}_submission.sh").read_text().splitlines()
            if x.startswith("#SBATCH")}


def afterok(lines: set[str]) -> list[str]:
    """The job ids of a script's ``#SBATCH --dependency=afterok:ID:ID`` (none without one); any other form fails."""
    found = [x.removeprefix("#SBATCH --dependency=") for x in lines if x.startswith("#SBATCH --dependency=")]
    assert len(found) <= 1 and all(re.fullmatch(r"afterok(:\d+)+", x) for x in found), found
    return found[0].split(":")[1:] if found else []


def write_finished(root: Path, path: str) -> None:
    """A chapter as execute leaves it: a notebook whose recorded parameters are the plan's."""
    from medimg.study.execute import _as_json, _passed

    chapter = next(c for c in flatten(plan(load_profile("smoke", root / "study.yml"))[0]) if c.path == path)
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {chapter.title}")])
    book.metadata["papermill"] = {"parameters": _passed(chapter)}
    book.metadata["medimg"] = {"resolved": _as_json(chapter.resolved)}
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(book, root / path)


def test_slurm_submission_chains_every_chapter_and_a_rerun_submits_only_what_is_unfinished(fake_slurm, capsys):
    root = Path(os.environ["MEDIMG_STUDY_ROOT"])
    _, deps, order = smoke_plan()
    report = run_cluster("smoke", executor="slurm", partition="gpu", account="lab", build=False)
    assert set(report.running) == set(order) and report.failed == {} and report.executed == []
    ids = report.running
    assert sorted(ids.values()) == [str(n) for n in range(5001, 5001 + len(order))]
    for path in order:
        lines = sbatch_lines(root, ids[path])
        assert {"#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --kill-on-invalid-dep=yes",
                "#SBATCH --cpus-per-task=2", "#SBATCH --mem=8GB",
                f"#SBATCH --job-name=medimg:{path.removeprefix('book/')}"} <= lines, path
        assert not any(x.startswith("#SBATCH --gpus") for x in lines)  # the smoke profile: no GPU
        assert sorted(afterok(lines)) == sorted(ids[d] for d in deps[path]), path
    # a card's time limit is the floor; a chapter of a generated dataset (its size unknown) gets the longest
    assert "#SBATCH --time=60" in sbatch_lines(root, ids[f"{BOOK}/synthetic_grey/card.ipynb"])
    assert "#SBATCH --time=1440" in sbatch_lines(root, ids[f"{BOOK}/synthetic_grey/tl.ipynb"])
    assert json.loads((root / "results/smoke/jobs/submitted.json").read_text()) == ids
    timing = json.loads((root / "results/smoke/study_time.json").read_text())
    assert timing["executor"] == "slurm" and timing["jobs"] == len(order) and timing["benchmark"] is None
    out = capsys.readouterr().out
    assert out.count("submitted ") == len(order)
    assert f"submitted {BOOK}/summary.ipynb: job {ids[f'{BOOK}/summary.ipynb']}, after job " in out
    assert not (root / "_toc.yml").exists()  # nothing has finished: no toc, no book yet

    # again, once the colour dataset's card and TL arm are done, its SSL arm's job still queued, the rest gone
    # from SLURM's record (or failed): those two are skipped, the queued one adopted, the others submitted again
    for name in ("card", "tl"):
        write_finished(root, f"{BOOK}/synthetic_colour/{name}.ipynb")
    queued = ids[f"{BOOK}/synthetic_colour/ssl.ipynb"]
    (fake_slurm / "states").write_text(f"{queued}|PENDING|\n{ids[f'{BOOK}/synthetic_grey/card.ipynb']}|FAILED|n1\n")
    again = run_cluster("smoke", executor="slurm", partition="gpu", account="lab", build=False)
    out = capsys.readouterr().out
    assert sorted(again.reused) == [f"{BOOK}/synthetic_colour/{n}.ipynb" for n in ("card", "tl")]
    assert set(again.running) == set(order) - set(again.reused)
    assert again.running[f"{BOOK}/synthetic_colour/ssl.ipynb"] == queued
    assert f"waiting  {BOOK}/synthetic_colour/ssl.ipynb: job {queued}, submitted before, is PENDING" in out
    new = {p: i for p, i in again.running.items() if i != queued}
    assert min(int(i) for i in new.values()) > max(int(i) for i in ids.values())  # all newly submitted
    comparison = sbatch_lines(root, again.running[f"{BOOK}/synthetic_colour/comparison.ipynb"])
    assert sorted(afterok(comparison)) == sorted([queued, again.running[f"{BOOK}/synthetic_colour/scratch.ipynb"]])
    assert afterok(sbatch_lines(root, again.running[f"{BOOK}/synthetic_colour/scratch.ipynb"])) == []


def write_failing_card(root: Path) -> None:
    """notebooks/dataset_card.ipynb whose first code cell after the parameters raises."""
    template = nbformat.read(REPO / "notebooks" / "dataset_card.ipynb", as_version=4)
    parameters = next(c for c in template.cells if "parameters" in c.metadata.get("tags", []))
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Dataset card\n\nbroken on purpose"),
                                           parameters, nbformat.v4.new_code_cell('raise ValueError("no card today")')])
    book.metadata = template.metadata
    nbformat.write(book, root / "notebooks" / "dataset_card.ipynb")


def test_a_failing_chapter_fails_its_job_and_the_chapters_after_it_are_not_run(tmp_path, monkeypatch, capsys):
    """Real jobs (submitit's local executor): the job of a chapter whose cell raises fails with that cell's error
    and its log, the chapters that read it are not submitted, and nothing is trained."""
    root = tmp_path / "study"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "study.yml", root / "study.yml")
    write_failing_card(root)
    monkeypatch.setenv("MEDIMG_STUDY_ROOT", str(root))
    report = run_cluster("smoke", executor="submitit-local", only="synthetic_grey", build=False, benchmark=False,
                         poll_s=0.2)
    card = f"{BOOK}/synthetic_grey/card.ipynb"
    assert set(report.failed) == {card} | {f"{BOOK}/synthetic_grey/{n}.ipynb" for n in ("tl", "ssl", "scratch",
                                                                                       "comparison")}
    match = re.fullmatch(r"job (\d+): cell (\d+): ValueError: no card today; log: (\S+)", report.failed[card])
    assert match, report.failed[card]
    log = Path(match[3])
    assert log == root / "results/smoke/jobs" / f"{match[1]}_0_log.err" and "ChapterFailed" in log.read_text()
    assert {why for path, why in report.failed.items() if path != card} == {f"not run: {card} failed"}
    assert report.executed == [] and not (root / card).exists() and not (root / "results/smoke/runs").exists()
    out = capsys.readouterr().out
    assert out.count("submitted ") == 1 and f"] FAILED   {card}: job {match[1]}: cell" in out
    assert "book/smoke/synthetic_grey/card" not in (root / "_toc.yml").read_text()  # the toc has what finished


def test_failure_line_names_the_chapter_error_else_the_state_the_job_ended_in():
    from submitit.core.utils import FailedJobError, UncompletedJobError

    job = FakeJob("77", "x")
    job.state = "TIMEOUT"
    trace = ('Traceback (most recent call last):\n  File "/x/cluster.py", line 9, in run_chapter\n    raise '
             'ChapterFailed(...)\n    ^^^^^\nmedimg.study.execute.ChapterFailed: cell 4: KeyError: \'a\'\n')
    error = FailedJobError(f"Job (task=0) failed during processing with trace:\n{'-' * 22}\n{trace}\n{'-' * 22}\n"
                           f"You can check full logs with 'job.stderr(0)'")
    assert failure_line(job, error) == "job 77: cell 4: KeyError: 'a'; log: /logs/77_0_log.err"
    assert failure_line(job, UncompletedJobError("no result")) == ("job 77: ended TIMEOUT without a result; log: "
                                                                  "/logs/77_0_log.err")
    assert issubclass(ChapterFailed, Exception)


def test_study_options_that_do_not_go_together_are_one_line_errors(tmp_path, monkeypatch, capsys):
    from medimg.cli import main

    shutil.copy(REPO / "study.yml", tmp_path / "study.yml")
    monkeypatch.setenv("MEDIMG_STUDY_ROOT", str(tmp_path))

    def run(*args):
        code = main(["study", "--profile", "smoke", *args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    assert_one_line_error(run("--partition", "gpu"), "--partition is for --executor slurm", "add --executor slurm")
    assert_one_line_error(run("--executor", "submitit-local", "--wait"), "--wait is for --executor slurm")
    assert_one_line_error(run("--executor", "slurm", "--jobs", "2"), "drop --jobs")
    empty = tmp_path / "no-slurm"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no srun
    assert_one_line_error(run("--executor", "slurm"), "needs SLURM's srun", "--executor submitit-local")
    assert not (tmp_path / "results").exists() and not (tmp_path / "_toc.yml").exists()  # refused before writing


def test_plan_with_the_slurm_executor_shows_each_chapters_job(monkeypatch, capsys):
    from medimg.cli import main

    monkeypatch.setenv("MEDIMG_STUDY_ROOT", str(REPO))
    monkeypatch.setenv(PARTITION_ENV, "gpu")
    assert main(["study", "--plan", "--profile", "paper", "--executor", "slurm", "--only", "eyepacs"]) == 0
    out = capsys.readouterr().out
    assert "SLURM jobs, to partition gpu and account (the default)" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("book/paper/")
            and line.endswith(":00")}
    assert rows["book/paper/eyepacs/card.ipynb"][:5] == ["0", "8", "32", "GB", "1:00:00"]
    assert rows["book/paper/eyepacs/tl.ipynb"][:4] == ["1", "10", "64", "GB"]
    assert rows["book/paper/eyepacs/comparison.ipynb"][:2] == ["0", "16"]


# --- the smoke study through real jobs, against --jobs 1 ---------------------------------------------------------

@pytest.fixture(scope="module")
def by_local_jobs(tmp_path_factory):
    """The smoke study through ``medimg study --executor submitit-local`` (a subprocess per chapter), no book."""
    return run_smoke_study(tmp_path_factory, "smoke-submitit", "--executor", "submitit-local", "--no-build",
                           "--no-benchmark")


TIMES = re.compile(r"\d+(\.\d+)?\s*(s|seconds?|min|minutes?|hours?|ms|it/s|img/s|(CPU |GPU )?core-hours|GPU-hours)\b"
                   r"|\d\d:\d\d(:\d\d)?")


def text_outputs(run, path: str) -> list[list[str]]:
    """The text each code cell of a chapter printed or displayed, with the study root's path and times blanked (an
    output naming seconds, such as a table with a seconds column, has every decimal blanked and its spacing
    collapsed)."""
    book = nbformat.read(run.root / path, as_version=4)
    cells = []
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        texts, stream = [], None
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                # consecutive writes to one stream read as one text, as Jupyter shows them (how a kernel's
                # writes are split into outputs depends on when it flushed: timing, not the chapter)
                if stream == output["name"]:
                    texts[-1] += output["text"]
                else:
                    texts.append(output["text"])
                stream = output["name"]
                continue
            stream = None
            if output.get("output_type") == "error":
                texts.append(f"{output['ename']}: {output['evalue']}")
            else:
                texts += [str(v) for k, v in output.get("data", {}).items() if k.startswith("text/")]
        texts = [anonymous(t, run) for t in texts]
        # with seconds blanked, the spaces that align a table's columns go too (9.3 s and 23.8 s pad differently)
        cells.append([" ".join(re.sub(r"\d+\.\d+", "N", t).split()) if "seconds" in t else TIMES.sub("T", t)
                      for t in texts])
    return cells


# what may differ between two runs of the same study: times, and the hash of a SimCLR checkpoint's file (its metadata
# holds its training time; its tensors are compared themselves)
TIMING_KEYS = re.compile(r"timing|seconds|_time$|^time|started|created|date|duration|^sha256$")


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if not TIMING_KEYS.search(k)}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def tensors(path: Path) -> dict:
    """A checkpoint's or array file's arrays (numpy), and a safetensors file's metadata without its times."""
    import numpy as np
    import torch

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(path, "np") as f:
            meta = {k: without_timing(json.loads(v)) if v.startswith("{") else v for k, v in (f.metadata() or {}).items()}
            return dict({k: f.get_tensor(k) for k in f.keys()}, metadata=meta)
    if path.suffix == ".ckpt":
        return {k: v.numpy() for k, v in torch.load(path, map_location="cpu", weights_only=False)["state_dict"].items()}
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def same(a, b) -> bool:
    import numpy as np

    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def anonymous(text: str, run) -> str:
    """``text`` with the study root's and the cache's paths (which differ between two studies) replaced."""
    return text.replace(str(run.root), "ROOT").replace(str(run.cache), "CACHE")


def result_files(run) -> dict[str, object]:
    """RESULTS/smoke's files (not the jobs' folder, nor the study's time): JSON without its timing fields, other
    text as it is (the study root's path replaced), weights and arrays by their tensors, figures by size."""
    results = run.root / "results" / "smoke"
    out = {}
    for path in sorted(results.rglob("*")):
        name = str(path.relative_to(results))
        if not path.is_file() or name.startswith("jobs/") or name == "study_time.json":
            continue
        if path.suffix == ".json":
            out[name] = without_timing(json.loads(anonymous(path.read_text(), run)))
        elif path.suffix in (".safetensors", ".ckpt", ".npz"):
            out[name] = tensors(path)
        elif path.suffix == ".png":
            out[name] = path.stat().st_size
        else:
            out[name] = anonymous(path.read_text(), run)
    return out


@pytest.mark.slow
@pytest.mark.long  # make test-long: a second smoke study (about 200 s on two cores) beside the session's
def test_the_smoke_study_through_local_jobs_makes_the_same_chapters_and_results_as_jobs_1(smoke_by_jobs_1,
                                                                                          by_local_jobs):
    root1, root2, done = smoke_by_jobs_1.root, by_local_jobs.root, by_local_jobs.done
    print(f"\nthe smoke study: {smoke_by_jobs_1.seconds:.0f} s with --jobs 1 (and the book), "
          f"{by_local_jobs.seconds:.0f} s through submitit-local")
    assert smoke_by_jobs_1.done.returncode == 0, smoke_by_jobs_1.done.stderr[-3000:]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    chapters, _ = plan(load_profile("smoke", root2 / "study.yml"))
    order = [c.path for c in flatten(chapters)]
    # one job per chapter, each reported when submitted and when it ended, and the summary line
    lines = done.stdout.splitlines()
    assert [x.startswith("submitted ") for x in lines].count(True) == len(order)
    assert [bool(re.match(r"\[\d+/\d+\] executed ", x)) for x in lines].count(True) == len(order)
    assert f"study smoke: {len(order)} chapters executed, 0 reused, 0 failed" in done.stdout
    chapters1 = sorted(str(p.relative_to(root1)) for p in (root1 / BOOK).rglob("*.ipynb"))
    chapters2 = sorted(str(p.relative_to(root2)) for p in (root2 / BOOK).rglob("*.ipynb"))
    assert chapters1 == chapters2 == sorted(order)
    for path in order:
        if path.endswith("reproducibility.ipynb"):  # the study's time: wall, jobs and overhead differ by nature
            continue
        assert text_outputs(smoke_by_jobs_1, path) == text_outputs(by_local_jobs, path), path
    assert (root1 / "_toc.yml").read_text() == (root2 / "_toc.yml").read_text()
    assert (root1 / BOOK / "datasets.md").read_text() == (root2 / BOOK / "datasets.md").read_text()
    results1, results2 = result_files(smoke_by_jobs_1), result_files(by_local_jobs)
    assert sorted(results1) == sorted(results2) and any(n.endswith("metrics.json") for n in results1)
    assert [n for n in results1 if not same(results1[n], results2[n])] == []
    # the jobs recorded the study's time as run_study does
    timing = json.loads((root2 / "results/smoke/study_time.json").read_text())
    assert timing["executor"] == "submitit-local" and set(timing["chapters"]) == set(order)
    assert 0 < timing["compute_seconds"]["finetune"] < timing["wall_seconds"]
