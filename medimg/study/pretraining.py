"""The pretraining stage of a study profile: its ``pretraining`` section of study.yml turned into named runs.

::

    pretraining:
      ssl: {arch: mobilenetv2_100, size: 32, steps: 3000, batch_size: 128, ...}   # SSLConfig fields
      methods: [simclr, vicreg]       # medimg.ssl.methods.METHODS; each method pretrains every pool (a list of
                                      #   names, or a mapping whose values override SSLConfig fields: {vicreg: {steps: 1000}})
      inits:                          # random: the SSL arm; imagenet: TL+SSL (a list of names, or a mapping
        random: {}                    #   whose values narrow the methods and override SSLConfig fields)
        imagenet: {methods: [simclr], steps: 1000}
      curve: {every: 250, snapshots: [1000, 2000]}
      trainer: {num_workers: 1}       # over the profile's trainer (views made beside the steps; same weights)
      pools:
        grey: {datasets: [pneumoniamnist, iq_othnccd_lung_ct], intensity_jitter: 0.0,   # + per-pool SSLConfig fields
               curve_targets: [...]}   # probed beside the profile's targets of the pool's modality (optional)
        colour: {datasets: [retinamnist, ham10000_224, ...]}

One checkpoint per method, pool and initialisation (not per target), so the compute goes into steps. Each pool
serves the profile's targets of its modality, and is checked against every one of them (a target's own
training split may be pooled; a dataset sharing source images with a target may not). Checkpoints are
named ``<method>-<init>-<pool>-<key>.safetensors`` under ``results/PROFILE/ssl/``, the key a hash of the
settings (:meth:`medimg.ssl.config.SSLConfig.identity`), and kept with their learning curve
(``.curve.csv``) and snapshots: committed like results, so a study reuses them and never pretrains again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medimg.ssl.config import SSLConfig
from medimg.errors import MedimgError
from medimg.ssl.curve import CurveTarget


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
    storage: str = "float32"  # the saved backbone's floating-point type (the section's `storage`)

    @property
    def label(self) -> str:
        return f"{self.config.method} {self.config.init} {self.pool}"


STAGE = "pretraining"  # the section of a profile whose checkpoints the book reads
# views of a stage that does not name them: lightly's PIL transform, as every stage before issue #30 made them (so
# their checkpoints keep their names); a stage written since names `views: tensor`
STAGE_VIEWS_BEFORE = "pil"


def pretraining_runs(profile: str | dict, *, pools=None, inits=None, methods=None, stage: str = STAGE
                     ) -> list[PretrainingRun]:
    """Every checkpoint of ``profile``'s pretraining section (or only ``pools`` / ``inits`` / ``methods``), in order:
    methods outermost (the section's ``methods``, default ``[simclr]``), then initialisations, then pools.

    ``stage`` names the section: ``pretraining`` (the default) is the stage the book reads; another section of the
    same shape (``pretraining_next`` in ``quick``) is a stage being pretrained to replace it, made by
    ``medimg pretrain-ssl --profile NAME --stage SECTION`` and read by nothing until it is renamed ``pretraining``."""
    from medimg.study.profiles import as_profile, study_root, targets
    from medimg.data.registry import get_spec

    p = as_profile(profile)
    section = p.get(stage)
    if not section:
        raise MedimgError(f"profile {p['name']!r} has no {stage!r} section in study.yml: add one (pools, ssl "
                          f"settings, inits), or pretrain by hand with --datasets and --out")
    unknown = sorted(set(pools or ()) - set(section["pools"]))
    if unknown:
        raise MedimgError(f"profile {p['name']!r} has no pool {', '.join(unknown)}: choose from "
                          f"{', '.join(section['pools'])}")
    by_method = stage_methods(section)
    unknown = sorted(set(methods or ()) - set(by_method))
    if unknown:
        raise MedimgError(f"profile {p['name']!r} pretrains no method {', '.join(unknown)}: choose from "
                          f"{', '.join(by_method)} (its 'pretraining.methods')")
    curve = section.get("curve", {})
    caps = {d: s.get("max_train_images") for d, s in p.get("finetune_by_dataset", {}).items()}
    by_init = stage_inits(section)
    out = []
    combos = [(m, i, n) for m in by_method for i in by_init for n in section["pools"]]
    for method, init, name in combos:
        if (methods and method not in methods) or (inits and init not in inits) or (pools and name not in pools):
            continue
        if method not in by_init[init].get("methods", [method]):
            continue
        pool = section["pools"][name]
        settings = {k: v for k, v in pool.items() if k not in ("datasets", "modality", "curve_targets")}
        own = {k: v for k, v in by_init[init].items() if k != "methods"}
        config = SSLConfig(datasets=tuple(pool["datasets"]), init=init, method=method,
                           **{"views": STAGE_VIEWS_BEFORE, **section["ssl"], **settings, **own, **by_method[method]})
        modality = pool.get("modality", name)
        served = dict.fromkeys([d for m, d in targets(p) if m == modality] + list(pool.get("curve_targets", [])))
        curve_targets = tuple(CurveTarget(d, caps.get(d) or p["finetune"].get("max_train_images")) for d in served)
        if any(get_spec(d).modality != modality for d in config.datasets):
            raise MedimgError(f"pool {name!r} of profile {p['name']!r} mixes modalities: give it datasets of "
                              f"{modality} images only (or a 'modality' key)")
        path = study_root() / p["results_dir"] / "ssl" / config.checkpoint_name(name)
        out.append(PretrainingRun(pool=name, config=config, path=path, curve_targets=curve_targets,
                                  curve_every=int(curve.get("every", 250)),
                                  snapshots=tuple(s for s in curve.get("snapshots", ()) if s < config.steps),
                                  reference_seeds=tuple(p["seeds"]),
                                  imagenet_weights=p.get("tl_weights"),
                                  storage=section.get("storage", "float32")))
    return out


def stage_trainer(profile: str | dict, stage: str = STAGE):
    """The :class:`~medimg.training.trainer.TrainerSettings` the stage pretrains with: the profile's ``trainer``,
    updated by the pretraining section's own ``trainer`` (e.g. ``num_workers: 1``, which makes the views while the
    network trains and leaves the weights as they are), with the progress lines on."""
    from medimg.training.trainer import TrainerSettings
    from medimg.study.profiles import as_profile

    p = as_profile(profile)
    return TrainerSettings(**{**p["trainer"], **p.get(stage, {}).get("trainer", {}), "progress": True})


def _named_overrides(raw) -> dict[str, dict]:
    """A section's list of names (no overrides) or mapping of name -> overrides, as ``{name: overrides}``."""
    return {name: {} for name in raw} if isinstance(raw, (list, tuple)) else {k: dict(v or {}) for k, v in raw.items()}


def stage_methods(section: dict) -> dict[str, dict]:
    """The stage's methods as ``{method: overrides}``, in order: ``methods`` of the pretraining section is a list of
    names (default ``[simclr]``) or a mapping whose values override SSLConfig fields for that method's checkpoints,
    over the pool's and the initialisation's (the method that does not get the long budget gets fewer ``steps``).
    Raises :class:`MedimgError` for a method not in :data:`medimg.ssl.methods.METHODS`."""
    from medimg.ssl.methods import METHODS

    methods = _named_overrides(section.get("methods", ["simclr"]))
    for name in methods:
        if name not in METHODS:
            raise MedimgError(f"pretraining.methods names {name!r}: choose from {', '.join(METHODS)}")
    return methods


def stage_inits(section: dict) -> dict[str, dict]:
    """The stage's initialisations as ``{init: overrides}``: ``inits`` of the pretraining section is a list of
    names (no overrides) or a mapping whose values may narrow ``methods`` and override SSLConfig fields (an
    ImageNet-initialised checkpoint starts from features that already beat random ones, so it may train fewer
    steps). Raises :class:`MedimgError` for an unknown initialisation or method."""
    from medimg.ssl.config import INITS

    inits = _named_overrides(section.get("inits", ["random"]))
    methods = list(stage_methods(section))
    for name, own in inits.items():
        if name not in INITS:
            raise MedimgError(f"pretraining.inits names {name!r}: choose from {', '.join(INITS)}")
        unknown = sorted(set(own.get("methods", ())) - set(methods))
        if unknown:
            raise MedimgError(f"pretraining.inits.{name}.methods names {', '.join(unknown)}, which the stage does not "
                              f"pretrain: choose from {', '.join(methods)} (its 'pretraining.methods')")
    return inits


def run_stage(profile: str | dict, *, pools=None, inits=None, methods=None, resume: bool = False,
              force: bool = False, trainer=None, stage: str = STAGE) -> list[Path]:
    """Pretrain every checkpoint of the stage that is not finished (``resume``: go on from a saved state, or from the
    state carried beside the checkpoint by a checkout that ran out of time, :func:`medimg.ssl.run.carry_path`)."""
    from medimg.study.profiles import as_profile
    from medimg.ssl.run import pretrain_ssl

    p = as_profile(profile)
    trainer = trainer or stage_trainer(p, stage)
    done = []
    for run in pretraining_runs(p, pools=pools, inits=inits, methods=methods, stage=stage):
        if run.path.is_file() and not force:
            print(f"{run.label}: {run.path.name} is finished (committed); --force pretrains it again")
            done.append(run.path)
            continue
        run.path.parent.mkdir(parents=True, exist_ok=True)
        done.append(pretrain_ssl(run.config, run.path, trainer=trainer, force=force, resume=resume,
                                 curve_targets=run.curve_targets, curve_every=run.curve_every,
                                 reference_seeds=run.reference_seeds, imagenet_weights=run.imagenet_weights,
                                 snapshots=run.snapshots, label=run.label, carry=True, storage=run.storage))
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
        return core_hours(self.meta) / self.meta["steps"] if self.meta else None

    def record(self) -> dict:
        """One row of the book's table of checkpoints."""
        m = self.meta or {}
        return dict(method=self.run.config.method, pool=self.run.pool, init=self.run.config.init, datasets=", ".join(self.run.config.datasets),
                    images=m.get("n_images"), size=self.run.config.size, batch=self.run.config.batch_size,
                    steps=m.get("steps"), image_pairs=m.get("pairs"),
                    hours=round(self.hours, 2) if self.meta else None, cores=self.cores,
                    img_per_s=round(m["timing"]["images_per_second"], 1) if self.meta else None,
                    final_loss=round(m["final_loss"], 3) if self.meta else None,
                    checkpoint=self.run.path.name if self.meta else "not pretrained yet")


def stage_results(profile: str | dict) -> list[StageResult]:
    """Every checkpoint of the profile's pretraining stage as it stands: read, never trained."""
    from medimg.models.backbones import read_ssl_meta
    from medimg.ssl.curve import read_curve

    return [StageResult(run, read_ssl_meta(run.path) if run.path.is_file() else None,
                        read_curve(run.path) if run.path.is_file() else read_curve(run.path).iloc[0:0])
            for run in pretraining_runs(profile)]


def arm_checkpoint(profile: str | dict, dataset: str, init: str, arch: str) -> PretrainingRun | None:
    """The stage checkpoint an arm of ``dataset`` fine-tunes from (``init`` random: the SSL arm; imagenet: TL+SSL),
    or None where the profile's stage has no checkpoint of ``init`` and ``arch`` whose pool serves ``dataset``
    (the arm then pretrains its own, :func:`medimg.study.arm_runs.arm_ssl_checkpoint`).

    Among the finished checkpoints that serve it (one per method), the one whose last linear-probe point on
    ``dataset``'s **validation** split is highest, ties to the earlier method of
    :data:`medimg.ssl.methods.METHODS`: model selection on validation, as for every other choice in the book
    (the test split is never read). Where none is finished yet, the first; the arm then refuses to run until
    it is pretrained (``make pretrain``).
    """
    from medimg.probe.protocols import lead_probe
    from medimg.study.profiles import as_profile
    from medimg.ssl.curve import read_curve

    p = as_profile(profile)
    if not p.get("pretraining"):
        return None
    serving = [r for r in pretraining_runs(p) if r.config.init == init and r.config.arch == arch
               and dataset in {t.dataset for t in r.curve_targets}]
    if not serving:
        return None
    scored, lead = [], lead_probe().name
    for order, run in enumerate(serving):
        if run.path.is_file():
            curve = read_curve(run.path)
            own = curve[(curve.kind == "checkpoint") & (curve.target == dataset) & (curve.protocol == lead)]
            if len(own):
                scored.append((-float(own.sort_values("step").val_accuracy.iloc[-1]), order, run))
    return min(scored, key=lambda s: s[:2])[2] if scored else serving[0]


def core_hours(meta: dict) -> float:
    """A checkpoint's pretraining in CPU core-hours (its record, :func:`medimg.models.backbones.read_ssl_meta`):
    wall hours of views and optimiser steps (the curve's probes excluded) x the torch threads it ran with; on a
    GPU, wall hours."""
    machine = meta["provenance"]["machine"]
    cores = 1 if machine.get("cuda") else machine.get("torch_threads") or 1
    return meta["timing"]["train_seconds"] / 3600 * cores


def views_phrase(meta: dict) -> str:
    """The views a checkpoint was pretrained on (two per pair of its record: ``pairs`` = steps x batch), in
    millions: "2.05M views"."""
    return f"{2 * meta['pairs'] / 1e6:.2f}M views"


def budget_phrase(checkpoint, *, short: bool = False) -> str:
    """The budget of a self-supervised checkpoint in words, from its record: "SimCLR, 3,000 steps at batch 128
    on pneumoniamnist + iq_othnccd_lung_ct (32 px, 1.80 CPU core-hours)"; ``short``: "SimCLR, 2.05M views at
    64 px (4.12 CPU core-hours)"; for one not here, its file name."""
    from medimg.models.backbones import read_ssl_meta
    from medimg.ssl.methods import METHODS

    checkpoint = Path(checkpoint)
    meta = read_ssl_meta(checkpoint) if checkpoint.is_file() else None
    if not meta:
        return f"{checkpoint.name} (not here to read its budget)"
    method, hours = METHODS[meta.get("method", "simclr")].name, f"{core_hours(meta):.2f} CPU core-hours"
    if short:
        return f"{method}, {views_phrase(meta)} at {meta['size']} px ({hours})"
    return (f"{method}, {meta['steps']:,} steps at batch {meta['batch_size']} on {' + '.join(meta['datasets'])} "
            f"({meta['size']} px, {hours})")
