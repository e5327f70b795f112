"""A finished run directory's outputs, read back: evaluation only ever reads these files."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MedimgError
from ..runs import FINISHED_MARKER


@dataclass(frozen=True)
class RunResult:
    path: Path
    config: dict  # config.json's "run" (the FinetuneConfig)
    record: dict  # the whole config.json (data, trainer, provenance)
    metrics: dict  # metrics.json
    classes: tuple[str, ...]
    ids: np.ndarray
    y_true: np.ndarray
    probs: np.ndarray

    @property
    def dataset(self) -> str:
        return self.metrics["dataset"]

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def task(self) -> str:
        return _spec_value(self.dataset, "task", "multiclass")

    @property
    def modality(self) -> str:
        """"grey" or "colour", as the run's images were decoded; the registry only for a run that recorded nothing."""
        return _recorded_modality(self.metrics, self.record) or _spec_value(self.dataset, "modality", "colour")

    @cached_property
    def history(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "history.csv")


def _recorded_modality(metrics: dict, record: dict) -> str | None:
    """The modality a run recorded: metrics.json's or config.json's ``modality`` (written since issue #10), else
    read off its preprocessing (``grey_as`` is set exactly when the images were grey); None if neither is there."""
    recorded = metrics.get("modality") or (record.get("data", {}).get("target") or {}).get("modality")
    if recorded:
        return recorded
    preprocess = metrics.get("preprocess") or {}
    if "grey_as" in preprocess:
        return "colour" if preprocess["grey_as"] is None else "grey"
    return None


def _spec_value(dataset: str, attribute: str, default: str) -> str:
    from ..data.registry import REGISTRY

    spec = REGISTRY.get(dataset)
    return getattr(spec, attribute) if spec is not None else default


def read_predictions(run_dir) -> pd.DataFrame:
    """``predictions.csv`` with ids and labels kept as text (``00042`` must not become 42, nor class "0" become 0)."""
    path = Path(run_dir) / "predictions.csv"
    if not path.is_file():
        raise MedimgError(f"{path} is missing: point at a finished run directory written by medimg finetune")
    return pd.read_csv(path, dtype={"id": str, "true": str, "predicted": str})


def read_run(run_dir) -> RunResult:
    """Read a finished run; a missing or unfinished one is a one-line error naming the fix."""
    path = Path(run_dir)
    if not (path / "config.json").is_file():
        raise MedimgError(f"{path} is not a run directory (no config.json): pass a directory written by "
                          f"'medimg finetune'")
    if not (path / FINISHED_MARKER).is_file():
        raise MedimgError(f"{path} is an unfinished run (no {FINISHED_MARKER}): finish it with "
                          f"'medimg finetune ... --resume' first")
    record = json.loads((path / "config.json").read_text())
    metrics = json.loads((path / FINISHED_MARKER).read_text())
    classes = tuple(record["data"]["target"]["classes"])
    predictions = read_predictions(path)
    index = {c: i for i, c in enumerate(classes)}
    unknown = set(predictions["true"]) - set(index)
    if unknown:
        raise MedimgError(f"{path / 'predictions.csv'} has labels {sorted(unknown)} that are not the run's classes: "
                          f"rerun the run with --force")
    probs = predictions[[f"prob_{c}" for c in classes]].to_numpy(float)
    return RunResult(path=path, config=record["run"], record=record, metrics=metrics, classes=classes,
                     ids=predictions["id"].to_numpy(), y_true=predictions["true"].map(index).to_numpy(int),
                     probs=probs / probs.sum(1, keepdims=True))  # predictions.csv rounds to 6 decimals


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
