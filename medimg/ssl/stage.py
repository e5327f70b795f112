"""The pretraining stage of a study profile: its ``pretraining`` section of study.yml turned into named runs.

::

    pretraining:
      ssl: {arch: mobilenetv2_100, size: 32, steps: 3000, batch_size: 128, ...}   # SSLConfig fields
      inits: [random]                 # random: the SSL arm; imagenet: TL+SSL
      curve: {every: 250, snapshots: [1000, 2000]}
      pools:
        grey: {datasets: [pneumoniamnist, iq_othnccd_lung_ct], intensity_jitter: 0.0,   # + per-pool SSLConfig fields
               curve_targets: [iq_othnccd_lung_ct]}   # probed beside the profile's targets of the pool's modality
        colour: {datasets: [retinamnist, ham10000_224, ...]}

One checkpoint per pool and initialisation (not per target), so the compute goes into steps. Each pool
serves the profile's targets of its modality, and is checked against every one of them (a target's own
training split may be pooled; a dataset sharing source images with a target may not). Checkpoints are
named ``<method>-<init>-<pool>-<key>.safetensors`` under ``results/PROFILE/ssl/``, the key a hash of the
settings (:meth:`medimg.configs.SSLConfig.identity`), and kept with their learning curve
(``.curve.csv``) and snapshots: committed like results, so a study reuses them and never pretrains again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..configs import SSLConfig
from ..errors import MedimgError
from .curve import CurveTarget


@dataclass(frozen=True)
class PretrainingRun:
    """One checkpoint of the stage: its pool's name, its settings, where it lands and what its curve reads."""

    pool: str
    config: SSLConfig
    path: Path
    curve_targets: tuple[CurveTarget, ...]
    curve_every: int
    snapshots: tuple[int, ...]
    reference_seeds: tuple[int, ...]
    imagenet_weights: str | None

    @property
    def label(self) -> str:
        return f"{self.config.method} {self.config.init} {self.pool}"


def pretraining_runs(profile: str | dict, *, pools=None, inits=None) -> list[PretrainingRun]:
    """Every checkpoint of ``profile``'s pretraining section (or only ``pools`` / ``inits``), in order."""
    from ..experiments import config_key
    from ..profiles import as_profile, study_root, targets
    from ..data.registry import get_spec

    p = as_profile(profile)
    section = p.get("pretraining")
    if not section:
        raise MedimgError(f"profile {p['name']!r} has no 'pretraining' section in study.yml: add one (pools, ssl "
                          f"settings, inits), or pretrain by hand with --datasets and --out")
    unknown = sorted(set(pools or ()) - set(section["pools"]))
    if unknown:
        raise MedimgError(f"profile {p['name']!r} has no pool {', '.join(unknown)}: choose from "
                          f"{', '.join(section['pools'])}")
    curve = section.get("curve", {})
    caps = {d: s.get("max_train_images") for d, s in p.get("finetune_by_dataset", {}).items()}
    out = []
    for init in inits or section.get("inits", ["random"]):
        for name, pool in section["pools"].items():
            if pools and name not in pools:
                continue
            settings = {k: v for k, v in pool.items() if k not in ("datasets", "modality", "curve_targets")}
            config = SSLConfig(datasets=tuple(pool["datasets"]), init=init, **{**section["ssl"], **settings})
            modality = pool.get("modality", name)
            curve_targets = tuple(CurveTarget(d, caps.get(d) or p["finetune"].get("max_train_images"))
                                  for d in [d for m, d in targets(p) if m == modality] + list(pool.get("curve_targets", [])))
            if any(get_spec(d).modality != modality for d in config.datasets):
                raise MedimgError(f"pool {name!r} of profile {p['name']!r} mixes modalities: give it datasets of "
                                  f"{modality} images only (or a 'modality' key)")
            path = (study_root() / p["results_dir"] / "ssl"
                    / f"{config.method}-{init}-{name}-{config_key(config.identity())}.safetensors")
            out.append(PretrainingRun(pool=name, config=config, path=path, curve_targets=curve_targets,
                                      curve_every=int(curve.get("every", 250)),
                                      snapshots=tuple(curve.get("snapshots", ())),
                                      reference_seeds=tuple(p["seeds"]),
                                      imagenet_weights=p.get("tl_weights") if init == "random" else None))
    return out


def run_stage(profile: str | dict, *, pools=None, inits=None, resume: bool = False, force: bool = False,
              trainer=None) -> list[Path]:
    """Pretrain every checkpoint of the stage that is not finished (``resume``: go on from a saved state)."""
    from ..configs import TrainerSettings
    from ..profiles import as_profile
    from .run import pretrain_ssl

    p = as_profile(profile)
    trainer = trainer or TrainerSettings(**{**p["trainer"], "progress": True})
    done = []
    for run in pretraining_runs(p, pools=pools, inits=inits):
        if run.path.is_file() and not force:
            print(f"{run.label}: {run.path.name} is finished (committed); --force pretrains it again")
            done.append(run.path)
            continue
        run.path.parent.mkdir(parents=True, exist_ok=True)
        done.append(pretrain_ssl(run.config, run.path, trainer=trainer, force=force, resume=resume,
                                 curve_targets=run.curve_targets, curve_every=run.curve_every,
                                 reference_seeds=run.reference_seeds, imagenet_weights=run.imagenet_weights,
                                 snapshots=run.snapshots, label=run.label))
    return done


@dataclass(frozen=True)
class StageResult:
    """What a finished (or missing) checkpoint of the stage shows the book: its record, curve and crossings."""

    run: PretrainingRun
    meta: dict | None  # None: not pretrained yet
    curve: "object"  # pandas DataFrame (empty when there is none)

    @property
    def finished(self) -> bool:
        return self.meta is not None

    @property
    def hours(self) -> float | None:
        """Wall-clock hours of pretraining (views and optimiser steps; the curve's probes excluded)."""
        return self.meta["timing"]["train_seconds"] / 3600 if self.meta else None

    @property
    def cores(self) -> int | None:
        """The CPU threads torch used (the machine's cores on a CPU run), as recorded with the checkpoint."""
        return self.meta["provenance"]["machine"].get("torch_threads") or 1 if self.meta else None

    @property
    def hours_per_step(self) -> float | None:
        """CPU core-hours per optimiser step: wall hours x cores / steps (on a GPU run, wall hours / steps)."""
        if not self.meta:
            return None
        cores = 1 if self.meta["provenance"]["machine"].get("cuda") else self.cores
        return self.hours * cores / self.meta["steps"]

    def record(self) -> dict:
        """One row of the book's table of checkpoints."""
        m = self.meta or {}
        return dict(pool=self.run.pool, init=self.run.config.init, datasets=", ".join(self.run.config.datasets),
                    images=m.get("n_images"), size=self.run.config.size, batch=self.run.config.batch_size,
                    steps=m.get("steps"), image_pairs=m.get("pairs"),
                    hours=round(self.hours, 2) if self.meta else None, cores=self.cores,
                    img_per_s=round(m["timing"]["images_per_second"], 1) if self.meta else None,
                    final_loss=round(m["final_loss"], 3) if self.meta else None,
                    checkpoint=self.run.path.name if self.meta else "not pretrained yet")


def stage_results(profile: str | dict) -> list[StageResult]:
    """Every checkpoint of the profile's pretraining stage as it stands: read, never trained."""
    from ..models.backbones import read_ssl_meta
    from .curve import read_curve

    return [StageResult(run, read_ssl_meta(run.path) if run.path.is_file() else None,
                        read_curve(run.path) if run.path.is_file() else read_curve(run.path).iloc[0:0])
            for run in pretraining_runs(profile)]
