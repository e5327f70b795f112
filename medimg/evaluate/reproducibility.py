"""What produced each run, as a table: evaluation's view of the run records (read by :func:`medimg.runs.read_run`)."""
from __future__ import annotations

import pandas as pd

from ..runs import RunResult


def reproducibility_table(runs: list[RunResult]) -> pd.DataFrame:
    """One row per run: what produced it (commit, versions, machine) and how long it took."""
    rows = []
    for r in runs:
        prov = r.record.get("provenance", {})
        versions, git, machine = prov.get("versions", {}), prov.get("git", {}), prov.get("machine", {})
        timing = r.metrics.get("timing", {})
        rows.append(dict(
            dataset=r.dataset, method=r.config["method"], seed=r.seed, arch=r.config["arch"],
            size=r.config["size"], epochs_run=r.metrics.get("epochs_run"),
            train_seconds=round(sum(t.get("train_seconds", 0) for t in timing.values()), 1),
            commit=(git.get("commit") or "")[:10] + ("+dirty" if git.get("dirty") else ""),
            torch=versions.get("torch"), timm=versions.get("timm"), lightning=versions.get("pytorch-lightning"),
            medimg=versions.get("medimg"), python=machine.get("python"), cpus=machine.get("cpu_count"),
            gpu=", ".join(machine.get("gpus", [])) or "none", platform=machine.get("platform"),
            created=prov.get("created"), run=r.path.name))
    return pd.DataFrame(rows)


def study_time(path) -> dict | None:
    """What ``medimg study`` recorded of its time (``RESULTS/study_time.json``), with ``overhead_share``: the
    part of the wall time that was not fine-tuning, SimCLR pretraining or probe feature extraction (kernel
    starts, imports, statistics, Grad-CAM, data decoding; the book build comes after and is not counted).
    None when the study has not recorded one."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        return None
    log = json.loads(path.read_text())
    wall = float(log.get("wall_seconds", 0.0))
    compute = float(sum(log.get("compute_seconds", {}).values()))
    return dict(log, compute_total_seconds=compute, overhead_share=(1 - compute / wall) if wall > 0 else None)
