"""What produced each run, as a table: evaluation's view of the run records (read by :func:`medimg.finetune.runs.read_run`)."""
from __future__ import annotations

import pandas as pd

from medimg.finetune.runs import RunResult


def reproducibility_table(runs: list[RunResult], parts: list[str] | None = None) -> pd.DataFrame:
    """One row per run: what produced it (commit, versions, machine) and how long it took. ``parts``: the part of
    the book each run belongs to (``main`` or an ablation's name, :func:`medimg.study.profiles.book_arms`), one per run,
    as a first column; a ``ValueError`` when their number is not the runs'."""
    if parts is not None and len(parts) != len(runs):
        raise ValueError(f"{len(parts)} parts for {len(runs)} runs: give one part per run")
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
    table = pd.DataFrame(rows)
    if parts is not None:
        table.insert(0, "part", parts)
    return table


def runs_by_part(table: pd.DataFrame) -> str:
    """The reproducibility chapter's count of runs by part of the book, e.g. ``"75 of the main arms, 20 of the
    imagenet_then_simclr ablation"`` (``table`` from :func:`reproducibility_table` with ``parts``), in the
    order the parts first appear."""
    counts = table["part"].value_counts(sort=False)
    return ", ".join(f"{n} of the main arms" if part == "main" else f"{n} of the {part} ablation"
                     for part, n in counts.items())


def study_time(path) -> dict | None:
    """What ``medimg study`` recorded of its time (``RESULTS/study_time.json``), with the shares the book shows.

    With ``jobs`` chapters at once, the machine offers ``slot_seconds`` = wall seconds x jobs of chapter time
    (each kernel has cores/jobs threads). Of that, ``compute_total_seconds`` went to fine-tuning, self-supervised
    pretraining and probe feature extraction; ``chapter_overhead_seconds`` = the chapters' own seconds less that
    work (kernel starts, imports, data decoding, statistics, Grad-CAM); ``idle_seconds`` = the slots no chapter
    used (the benchmark, and slots with no chapter ready: every other chapter waits for one that is running). ``overhead_share`` = 1 - work / slot
    seconds (both overheads); with one job it is the share of the wall time that was not work. The book build
    comes after the recorded wall time and is not counted. None when the study has not recorded one.
    """
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        return None
    log = json.loads(path.read_text())
    wall, jobs = float(log.get("wall_seconds", 0.0)), int(log.get("jobs") or 1)
    compute = float(sum(log.get("compute_seconds", {}).values()))
    chapters = float(sum(log.get("chapters", {}).values()))
    slots = wall * jobs
    return dict(log, jobs=jobs, compute_total_seconds=compute, slot_seconds=slots, chapter_seconds=chapters,
                chapter_overhead_seconds=max(chapters - compute, 0.0), idle_seconds=max(slots - chapters, 0.0),
                overhead_share=(1 - compute / slots) if slots > 0 else None)


def study_time_markdown(timing: dict | None) -> str:
    """The reproducibility chapter's sentence on the study's time (from :func:`study_time`)."""
    if timing is None:
        return "_No study time was recorded: this chapter was executed outside `medimg study`._"
    bench = timing.get("benchmark") or {}
    figure = (f"{bench['plain_img_per_s']:.0f} img/s (plain PyTorch loop; {bench['medimg_img_per_s']:.0f} through "
              f"medimg)" if bench else "not measured")
    overhead = "unknown" if timing["overhead_share"] is None else f"{timing['overhead_share']:.0%}"
    jobs = timing["jobs"]
    slots = f" ({timing['slot_seconds'] / 60:.1f} minutes of chapter slots)" if jobs > 1 else ""
    return (f"The chapters took **{timing['wall_seconds'] / 60:.1f} minutes** of wall time with {jobs} job(s){slots}, "
            f"from {timing['started']}. Fine-tuning, self-supervised pretraining and feature extraction took "
            f"{timing['compute_total_seconds'] / 60:.1f} minutes of that, so **{overhead}** was overhead: "
            f"{timing['chapter_overhead_seconds'] / 60:.1f} minutes inside chapters (kernel starts, imports, data "
            f"decoding, statistics, Grad-CAM) and {timing['idle_seconds'] / 60:.1f} minutes with "
            f"{'a slot' if jobs > 1 else 'no chapter'} running no chapter (the benchmark"
            f"{', and slots with no chapter ready to start' if jobs > 1 else ''}). This machine's benchmark: "
            f"{figure}.")
