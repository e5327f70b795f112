"""The study's time record, RESULTS/study_time.json: how much of a study's wall time was real work, read from what
its runs recorded (:func:`compute_seconds`). One writer for every executor: the driver begins the record
(:func:`begin_study_time`) and each chapter's job adds its seconds (:func:`record_chapter`), from a thread of the
driver or from a job process of its own. Light (no network code), so that a job process can add its chapter.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

STUDY_TIME = "study_time.json"
LOCK = Path("jobs") / "study_time.lock"  # under RESULTS: chapters end at once (threads, processes or nodes)


def compute_seconds(results: Path, since: float) -> dict:
    """Seconds of real work in what was written under ``results`` after ``since`` (a ``time.time()``):
    fine-tuning (each stage's training, evaluation and, for LP-FT, its linear-probe stage, from metrics.json),
    self-supervised pretraining (``pretraining``: SimCLR or VICReg, from each checkpoint's metadata) and feature
    extraction of the probes."""
    parts = dict(finetune=0.0, pretraining=0.0, features=0.0)
    for path in results.glob("runs/*/*/*/metrics.json"):
        if path.stat().st_mtime >= since:
            for stage in json.loads(path.read_text()).get("timing", {}).values():
                parts["finetune"] += sum(stage.get(k, 0.0) for k in ("probe_seconds", "train_seconds", "eval_seconds"))
    for path in results.glob("probes/*/*/*/metrics.json"):
        if path.stat().st_mtime >= since:
            parts["features"] += json.loads(path.read_text()).get("timing", {}).get("feature_seconds", 0.0)
    from medimg.models.checkpoint_meta import read_ssl_meta

    for path in results.glob("ssl/*.safetensors"):
        if path.stat().st_mtime >= since:
            parts["pretraining"] += read_ssl_meta(path).get("timing", {}).get("train_seconds", 0.0)
    return parts


def begin_study_time(results: Path, **fields) -> None:
    """Start RESULTS/study_time.json for a new study: ``fields`` (profile, executor, jobs, only, benchmark), the
    start time, and no chapter yet."""
    from medimg.atomic import write_text

    log = dict(fields, started=datetime.now(timezone.utc).isoformat(timespec="seconds"), chapters={},
               wall_seconds=0.0, compute_seconds={})
    results.mkdir(parents=True, exist_ok=True)
    write_text(results / STUDY_TIME, json.dumps(log, indent=1) + "\n")


def record_chapter(results: Path, path: str, seconds: float) -> None:
    """Chapter ``path``'s ``seconds`` into RESULTS/study_time.json, with the study's wall and compute seconds so far
    (:func:`compute_seconds`), read and written under a lock. Nothing when no study began one."""
    import fcntl

    from medimg.atomic import write_text

    log_path = results / STUDY_TIME
    if not log_path.is_file():
        return
    (results / LOCK).parent.mkdir(parents=True, exist_ok=True)
    with open(results / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        log = json.loads(log_path.read_text())
        started = datetime.fromisoformat(log["started"]).timestamp()
        log["chapters"][path] = round(seconds, 1)
        log["wall_seconds"] = round(time.time() - started, 1)
        log["compute_seconds"] = {k: round(v, 1) for k, v in compute_seconds(results, started).items()}
        write_text(log_path, json.dumps(log, indent=1) + "\n")
