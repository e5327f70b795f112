"""Run directories: written atomically, never overwritten by accident, resumable.

A run directory holds ``config.json`` (written first; everything needed to rerun), the
Lightning checkpoints and logs while it trains, and — only once it has finished —
``metrics.json``, ``predictions.csv``, ``history.csv`` and ``best.ckpt``. A directory with a
config but no metrics is an unfinished run: ``--resume`` continues it, ``--force`` restarts it.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from .atomic import atomic_path, write_text
from .errors import MedimgError

FINISHED_MARKER = "metrics.json"


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def prepare_run_dir(run_dir: Path, config: dict, *, resume: bool, force: bool) -> bool:
    """Make ``run_dir`` ready; return True when resuming an unfinished run.

    Refuses to touch an existing run unless ``force`` (start again) or, for an unfinished one
    with the same config, ``resume``.
    """
    config_path = run_dir / "config.json"
    exists = run_dir.exists() and any(run_dir.iterdir())
    if exists and force:
        shutil.rmtree(run_dir)
        exists = False
    if exists and not config_path.is_file():
        raise MedimgError(f"{run_dir} exists and is not a medimg run: choose another --out, or pass --force to replace it")
    if exists:
        if (run_dir / FINISHED_MARKER).is_file():
            raise MedimgError(f"{run_dir} holds a finished run: choose another --out, or pass --force to run it again")
        if not resume:
            raise MedimgError(f"{run_dir} holds an unfinished run: pass --resume to continue it or --force to restart it")
        saved = json.loads(config_path.read_text())
        config = json.loads(json.dumps(config, default=str))  # compare as saved: tuples become lists
        if saved.get("run") != config.get("run"):
            changed = sorted(k for k in set(saved.get("run", {})) | set(config["run"])
                             if saved.get("run", {}).get(k) != config["run"].get(k))
            raise MedimgError(f"{config_path} differs from this command in {', '.join(changed)}: resume with the "
                              f"same settings, or pass --force to restart")
        return True
    if resume:
        raise MedimgError(f"{run_dir} has no run to resume: drop --resume to start it")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(config_path, config)
    return False
