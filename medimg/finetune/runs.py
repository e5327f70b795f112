"""Run directories, one owner: how runs are named, written and read back.

A run directory holds ``config.json`` (written first; everything needed to rerun), the
Lightning checkpoints and logs while it trains, and — only once it has finished —
``predictions.csv``, ``history.csv``, ``best.ckpt`` (the kept weights) and, last, ``metrics.json``;
the training checkpoints are then removed. A directory with a
config but no metrics is an unfinished run: ``--resume`` continues it, ``--force`` restarts it.
Every reader (evaluation, Grad-CAM, the notebooks, reloading the model) goes through :func:`read_run`;
reading imports neither Lightning nor the training code.

Names (:func:`run_name`) hash every setting that changes a result: the fine-tuning config (a
weights *file* by its name, which is content-addressed for SimCLR checkpoints, not by where it
lies) and the numerics (the resolved precision and deterministic kernels). Compatibility rule,
written down once: fields added to :class:`~medimg.finetune.config.FinetuneConfig` later are left out of
the name while they hold the value that reproduces the old behaviour
(``intermediate_max_train_images`` unset), and a ``config.json`` that lacks a field is read with
its old meaning (:data:`~medimg.finetune.config.LEGACY_DEFAULTS`). Runs named before near-duplicate
grouping and numerics were part of the name (the ``quick`` results committed before issue #10)
keep their directories; no current config names them, so a study asks for new runs.
"""
from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from medimg.atomic import atomic_path, write_text
from medimg.finetune.config import FinetuneConfig
from medimg.training.trainer import TrainerSettings
from medimg.errors import MedimgError
from medimg.finetune.arms import arm_kind
from medimg.identity import identity
from medimg.probe.protocols import fine_tuning, protocol_of

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
    with the same config, ``resume``. The caller holds the folder's lock (:func:`medimg.atomic.run_lock`), so no
    other process writes it meanwhile; a file system that refuses the writes is the user's error naming the folder.
    """
    from medimg.errors import environment_errors

    with environment_errors(run_dir, what="write the run"):
        return _prepare_run_dir(run_dir, config, resume=resume, force=force)


def _prepare_run_dir(run_dir: Path, config: dict, *, resume: bool, force: bool) -> bool:
    from medimg.atomic import LOCK_NAME

    config_path = run_dir / "config.json"
    held = [p for p in run_dir.iterdir() if p.name != LOCK_NAME] if run_dir.exists() else []
    exists = bool(held)
    if exists and force:  # all but the lock this process holds (run_lock)
        for p in held:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
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


def run_name(config: FinetuneConfig, settings: TrainerSettings) -> str:
    """The directory name of a run: 12 hex digits of a hash of every setting that changes its result
    (:func:`medimg.identity.identity` of :func:`config_record` and the :func:`numerics`)."""
    return identity(dict(config_record(config), numerics=numerics(settings)))


def config_record(config: FinetuneConfig) -> dict:
    """What of a fine-tuning config names its products: every setting, a weights *file* by its name (content-addressed
    for self-supervised checkpoints), not by where it lies."""
    named = replace(config, weights=config.weight_file.name) if config.weight_file is not None else config
    return named.to_dict()


def numerics(settings: TrainerSettings) -> dict:
    """The trainer settings that change a result's numbers: precision (resolved on this machine), determinism and,
    for a distributed run, its number of processes (each takes a batch, so the step's batch grows with them)."""
    out = dict(precision=settings.resolved_precision(), deterministic=settings.deterministic)
    processes = settings.devices * settings.num_nodes if isinstance(settings.devices, int) else settings.devices
    if processes != 1:
        out["processes"] = processes
    return out


def prediction_rows(data, probs) -> list[dict]:
    """predictions.csv's rows for prepared ``data``'s test split and its ``probs`` ``(N, classes)`` in split
    order: image id, true and predicted class, and each class's probability (6 decimals)."""
    classes = list(data.classes)
    return [dict(id=data.decoded.ids[i], true=classes[data.decoded.labels[i]], predicted=classes[int(p.argmax())],
                 **{f"prob_{c}": round(float(v), 6) for c, v in zip(classes, p)})
            for i, p in zip(data.part("test")[2], probs)]


def write_results(run_dir: Path, *, predictions: list[dict], history: list[dict], weights: dict,
                  metrics: dict) -> None:
    """The finished run's files; ``metrics.json`` last, since its presence marks the run finished.

    ``best.ckpt`` holds the kept model's weights only (``{"state_dict": {"model.<name>": tensor}}``, keyed as in
    a Lightning checkpoint, without optimiser state): about a third of one, so a whole study's runs stay small.
    """
    import torch

    from medimg.errors import environment_errors

    with environment_errors(run_dir, what="write the run's results",
                            needed_bytes=sum(v.numel() * v.element_size() for v in weights.values())):
        write_csv(run_dir / "history.csv", history)
        write_csv(run_dir / "predictions.csv", predictions)
        with atomic_path(run_dir / "best.ckpt") as tmp:
            torch.save({"state_dict": weights}, tmp)
        write_json(run_dir / FINISHED_MARKER, metrics)


# --- reading -----------------------------------------------------------------------------------

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

    @property
    def protocol(self) -> str:
        """The protocol of :data:`medimg.probe.protocols.PROTOCOLS` the run was scored under: fine-tuning, or the
        probe of a probe run (:mod:`medimg.study.probe_runs`), which records it."""
        return self.record.get("protocol", fine_tuning().name)

    @property
    def seed_replicates(self) -> bool:
        """False for a probe of fixed weights (ImageNet or a SimCLR checkpoint): its seeds are one network, so
        they are no sample of anything, and a test across them would count one measurement several times."""
        return not protocol_of(self.protocol).frozen or arm_kind(self.config.get("method")).random

    @property
    def numerics(self) -> dict:
        """The precision (as resolved when it ran), determinism and process count the run trained with (see
        :func:`numerics`)."""
        trainer = self.record.get("trainer", {})
        out = dict(precision=trainer.get("resolved_precision") or trainer.get("precision"),
                   deterministic=trainer.get("deterministic"))
        devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
        processes = devices * nodes if isinstance(devices, int) else devices
        if processes != 1:
            out["processes"] = processes
        return out

    @cached_property
    def history(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "history.csv")

    @cached_property
    def settings(self) -> FinetuneConfig:
        """config.json's run as the typed record (fields it lacks read with their old meaning)."""
        return FinetuneConfig.from_dict(self.config)

    def prepared_data(self):
        """The target's :class:`~medimg.data.PreparedData` as the run saw it (same split, same decoding).

        Raises :class:`MedimgError` when the dataset changed since the run was trained.
        """
        from medimg.data import DataConfig, prepare

        saved = self.record["data"]["target"]
        ratios = tuple(saved.get("split_ratios", DataConfig.split_ratios))
        data = prepare(replace(self.settings.data_config(), split_ratios=ratios), progress=False)
        from medimg.data.fingerprint import FINGERPRINT_OF

        recorded = saved.get("fingerprint")
        if recorded is None or recorded == data.source.fingerprint:
            return data
        if saved.get("fingerprint_of") == FINGERPRINT_OF:
            raise MedimgError(f"{self.settings.dataset} has changed since {self.path} was trained (fingerprint "
                              f"{data.source.fingerprint[:12]} != {recorded[:12]}): explain it on the data it saw")
        # recorded before fingerprints covered the files' content: of paths, sizes and modification times, which any
        # copy of the data changes; what the run kept of its data must then match instead
        self._check_split_and_test_labels(data)
        return data

    def _check_split_and_test_labels(self, data) -> None:
        """The split as the run recorded it (method, seed, ratios, excluded images, near-duplicate grouping) and its
        test images with their labels, in order, as ``predictions.csv`` holds them; a one-line error otherwise."""
        def keep(split: dict) -> dict:  # as JSON holds it, less where a split file lay (elsewhere on another machine)
            return {k: v for k, v in json.loads(json.dumps(split)).items() if k != "path"}

        saved = self.record["data"]["target"].get("split")
        _, labels, positions = data.part("test")
        ids = np.asarray(data.decoded.ids)[positions]
        same = ((saved is None or keep(saved) == keep(data.split.to_dict())) and len(ids) == len(self.ids)
                and (ids == self.ids.astype(str)).all() and (labels == self.y_true).all())
        if not same:
            raise MedimgError(f"{self.settings.dataset} is not the data {self.path} was trained on (its split or test "
                              f"labels differ from the run's record): explain it on the data it saw")


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
    from medimg.data.registry import REGISTRY

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
    if not path.is_dir():
        raise MedimgError(f"run directory {path} is missing: pass a directory written by 'medimg finetune --out'")
    if not (path / "config.json").is_file():
        raise MedimgError(f"{path} is not a finished medimg run (no config.json): pass a directory written by "
                          f"'medimg finetune'")
    if not (path / FINISHED_MARKER).is_file():
        raise MedimgError(f"{path} is an unfinished run (no {FINISHED_MARKER}): finish it with "
                          f"'medimg finetune ... --resume' first")
    record = json.loads((path / "config.json").read_text())
    metrics = json.loads((path / FINISHED_MARKER).read_text())
    if record.get("identity") and metrics.get("identity") and record["identity"] != metrics["identity"]:
        raise MedimgError(f"{path / FINISHED_MARKER} belongs to run {metrics['identity']} but {path / 'config.json'} "
                          f"to run {record['identity']} (two runs wrote this folder): run it again with --force")
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
