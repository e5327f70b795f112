"""The study's time record, RESULTS/study_time.json: how much of a study's wall time was real work, read from what
its runs recorded (:func:`compute_seconds`). Light (no network code), so that a job process can add its chapter.
"""
from __future__ import annotations

import json
from pathlib import Path


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
    from medimg.models.checkpoint_meta import read_ssl_meta

    for path in results.glob("ssl/*.safetensors"):
        if path.stat().st_mtime >= since:
            parts["simclr"] += read_ssl_meta(path).get("timing", {}).get("train_seconds", 0.0)
    return parts
