"""One pretraining run, long and resumable: pool, views, the method's module, Lightning, and the saved backbone.

``pretrain_ssl(config, out)`` pretrains a backbone on ``config``'s pool and saves it, with its record, as
``out`` (.safetensors; backbone only, in the format ``create_backbone(..., weights=FILE)`` loads for
fine-tuning). While it runs:

* a resumable state (backbone, head, optimiser, scheduler, step and loops, per-step losses, clocks, random
  generators) is written to ``last.ckpt`` in :func:`state_dir` (under ``$MEDIMG_CACHE_DIR``) every ``state_every``
  steps, and with ``carry`` the same without the optimiser's moments beside ``out`` (:func:`carry_path`, small enough
  to commit, so another checkout goes on from it); ``resume=True`` after
  an interruption (even SIGKILL) goes on from it and ends with the weights an uninterrupted run gives. Which
  images a step sees is a function of (seed, step) (:mod:`medimg.ssl.batches`) and each view of (seed, pass,
  position), so the step is the sampler's whole position. The state folder is removed once the checkpoint
  is written;
* a progress line every few steps (:mod:`medimg.ssl.progress`);
* the learning curve on the validation splits of ``curve_targets`` (:mod:`medimg.ssl.curve`), and
  ``<out stem>.step-N.safetensors`` backbones at the ``snapshots`` steps, so points of the curve can be
  fine-tuned too.

Optimiser: AdamW, ``lr`` 1e-3, weight decay 1e-4, linear warm-up over the first tenth of the steps, then
cosine decay to zero per step. Adam needs no batch-size scaling of the rate (SGD's ``0.06 * batch / 256``
does) and learns faster in the few epochs a CPU allows.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from medimg.ssl.config import INITS, SSLConfig
from medimg.training.trainer import TrainerSettings, quiet_lightning
from medimg.data import Preprocess
from medimg.errors import MedimgError
from medimg.models.backbones import WeightSource, create_backbone, save_ssl_backbone
from medimg.identity import provenance
from medimg.ssl.batches import PoolBatches, StepBatches, as_batch
from medimg.ssl.curve import CurveTarget, Prober, curve_path, reference_rows
from medimg.ssl.curve_callback import LearningCurve
from medimg.ssl.methods import METHODS
from medimg.ssl.modules import SCHEDULE, module_of
from medimg.ssl.pool import check_targets, pool_images
from medimg.ssl.progress import StepProgress
from medimg.ssl.tensor_views import BatchViews
from medimg.ssl.views import SimCLRViews, simclr_transform, view_settings


def state_dir(out, config: SSLConfig | None = None) -> Path:
    """Where the resumable state of the run writing ``out`` lives: ``$MEDIMG_CACHE_DIR/ssl-state/<out stem>``, with
    ``-<identity of config>`` added unless the stem already ends in it (a stage checkpoint's name does), so a fresh
    checkout of the same study finds the state of a run begun in another."""
    from medimg.identity import identity
    from medimg.paths import cache_dir

    out = Path(out)
    key = identity(config.identity()) if config is not None else ""
    name = out.stem if not key or out.stem.endswith(key) else f"{out.stem}-{key}"
    return cache_dir() / "ssl-state" / name


def carry_path(out) -> Path:
    """``<out stem>.carry.ckpt`` beside ``out``: the small state a checkout carries between machines (weights, step,
    losses, clocks and generators; no optimiser moments), written with the full state when ``carry`` is on."""
    out = Path(out)
    return out.with_name(f"{out.stem}.carry.ckpt")


def snapshot_path(out, step: int) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.step-{step}.safetensors")


class ResumableState(pl.Callback):
    """Saves the whole training state to ``folder/last.ckpt`` (atomically) after every ``every``-th step, and, where
    ``carry`` names a file, the same state without the optimiser's moments there (:func:`carry_path`); when a run
    resumes from either, points ``batches`` at the step after the saved one."""

    def __init__(self, folder: Path, batches: StepBatches, every: int, carry: Path | None = None):
        self.folder, self.batches, self.every, self.carry = Path(folder), batches, every, carry

    def on_train_batch_end(self, trainer, module, *_):
        if trainer.global_step % self.every or trainer.global_step >= trainer.max_steps:
            return  # the finished run's checkpoint replaces the state
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / "last.ckpt"
        tmp = self.folder / "last.ckpt.partial"
        trainer.save_checkpoint(tmp, weights_only=False)  # the whole state: optimiser, scheduler, loops
        if trainer.is_global_zero:
            os.replace(tmp, target)
            if self.carry is not None:
                write_carry(target, self.carry)

    def on_load_checkpoint(self, trainer, module, checkpoint):
        self.batches.start = int(checkpoint["global_step"])


def write_carry(state: Path, carry: Path) -> None:
    """The state at ``state`` without the optimiser's moments (the bulk of it), atomically to ``carry``. A run
    resumed from it goes on from the same step, weights, schedule and views, with AdamW's moments started afresh
    (recorded in the checkpoint as ``optimizer_reset_at``)."""
    from medimg.atomic import atomic_path

    checkpoint = torch.load(state, map_location="cpu", weights_only=False)
    checkpoint["optimizer_states"] = [dict(state={}, param_groups=o["param_groups"])
                                      for o in checkpoint["optimizer_states"]]
    checkpoint["medimg"]["carry"] = True
    with atomic_path(carry) as tmp:
        torch.save(checkpoint, tmp)


class Snapshots(pl.Callback):
    """Saves the backbone at the given steps (the curve's points that can be fine-tuned later)."""

    def __init__(self, out: Path, steps, meta, storage: str = "float32"):
        self.out, self.steps, self.meta, self.storage = Path(out), set(steps), meta, storage

    def on_train_batch_end(self, trainer, module, *_):
        step = trainer.global_step
        if step in self.steps and trainer.is_global_zero:
            save_ssl_backbone(snapshot_path(self.out, step), module.backbone, self.meta(module, step),
                              storage=self.storage)


def pretrain_ssl(config: SSLConfig, out: Path, *, trainer: TrainerSettings = TrainerSettings(), force: bool = False,
                 resume: bool = False, curve_targets: tuple[CurveTarget, ...] = (), curve_every: int = 250,
                 reference_seeds=(0,), imagenet_weights: str | None = None, snapshots=(),
                 label: str | None = None, progress_every: int = 10, state_every: int = 50,
                 carry: bool = False, storage: str = "float32") -> Path:
    """Pretrain a backbone with ``config.method`` on ``config``'s pool and save it to ``out`` (.safetensors).

    ``config.target`` and ``curve_targets`` are the datasets the checkpoint will be fine-tuned or probed on:
    the pool is checked against each (:mod:`medimg.ssl.pool`). ``resume`` continues from the state in
    :func:`state_dir` if it exists, else from the carried state beside ``out`` (:func:`carry_path`, written while the
    run goes on when ``carry`` is set), and returns at once when ``out`` is already finished. ``storage`` float16
    saves the backbone (and snapshots) at half the size. Raises :class:`MedimgError` (nothing
    written) for an existing ``out`` without ``force`` or ``resume``, a refused pool, or a diverged loss.
    """
    quiet_lightning()
    out = Path(out)
    state = state_dir(out, config)
    if out.suffix != ".safetensors":
        raise MedimgError(f"{out} must end in .safetensors: the SimCLR checkpoint is saved in that format")
    if out.exists() and not force:
        if resume:
            return out
        raise MedimgError(f"{out} already exists: pass --force to replace it, or choose another file")
    for unfinished in (state / "last.ckpt", carry_path(out)):
        if unfinished.is_file() and not (resume or force):
            raise MedimgError(f"{unfinished} holds an unfinished run of {out.name}: pass --resume to go on from it, or "
                              f"--force to start again")
    if force and not resume:
        shutil.rmtree(state, ignore_errors=True)
        curve_path(out).unlink(missing_ok=True)
        carry_path(out).unlink(missing_ok=True)
    targets = tuple(dict.fromkeys(([config.target] if config.target else []) + [t.dataset for t in curve_targets]))
    check_targets(config, targets)  # declared lineage first, so a refusal comes before any decoding
    pool = pool_images(config, progress=trainer.progress)
    lineage = check_targets(config, targets, pool=pool, progress=trainer.progress)

    pl.seed_everything(config.seed, workers=True, verbose=False)
    backbone, weight_source = create_backbone(config.arch, num_classes=0, in_chans=pool.in_chans,
                                              weights=INITS[config.init])
    norm = Preprocess.from_pretrained_cfg(backbone.pretrained_cfg, image_channels=pool.in_chans,
                                          grey_as="single" if pool.in_chans == 1 else None, size=config.size)
    views = view_settings(config.size, colour=pool.colour, mean=norm.mean, std=norm.std, min_scale=config.min_scale,
                          intensity_jitter=config.intensity_jitter)
    if trainer.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    if config.views == "tensor":  # uint8 batches in, views made in the step (medimg.ssl.tensor_views)
        dataset, collate, batch_views = PoolBatches(pool.images), as_batch, BatchViews(views, seed=config.seed)
    else:  # lightly's PIL transform, one image at a time in the loader
        dataset, collate, batch_views = SimCLRViews(pool.images, simclr_transform(views), seed=config.seed), None, None
    module = module_of(METHODS[config.method])(backbone, config, channels_last=trainer.channels_last, views=batch_views)
    # the resumable state is ours: Lightning's own checkpointing and logs are off, its root a temporary folder
    scratch = tempfile.TemporaryDirectory(prefix="medimg-ssl-")
    # one progress display: the step lines below, not Lightning's bar; one Lightning epoch of every step
    fit = dataclasses.replace(trainer, progress=False).build(max_epochs=1, default_root_dir=scratch.name,
                                                             enable_checkpointing=False)
    batches = StepBatches(len(dataset), config.batch_size, seed=config.seed, steps=config.steps, passes=config.epochs,
                          rank=fit.global_rank, world_size=fit.world_size)
    total = batches.steps
    fit.fit_loop.epoch_loop.max_steps = total  # as Lightning's own lr_finder sets it after the Trainer is built
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=trainer.num_workers, collate_fn=collate,
                        persistent_workers=trainer.num_workers > 0)

    def meta(module, steps: int) -> dict:
        return dict(
            arch=config.arch, in_chans=pool.in_chans, init=config.init, method=config.method,
            weight_source=weight_source.to_dict(),
            # what load_ssl_backbone needs to rebuild this exact network and its preprocessing
            timm_kwargs=_timm_kwargs(weight_source), pretrained_cfg=dict(backbone.pretrained_cfg),
            datasets=[s.name for s in pool.sources], pool=list(pool.record), n_images=len(pool.images),
            size=config.size, grey_as=pool.grey_as, epochs=config.epochs, steps=steps, total_steps=total,
            batch_size=config.batch_size, pairs=steps * config.batch_size * fit.world_size, seed=config.seed,
            config=config.to_dict(), lineage=lineage.get(config.target) if config.target else None,
            lineage_by_target=lineage, transform=views, views=config.views, normalisation=norm.to_dict(),
            optimizer=dict(name="AdamW", lr=config.lr, weight_decay=config.weight_decay, schedule=SCHEDULE),
            final_loss=module.step_losses[-1] if module.step_losses else None,
            epoch_losses=_pass_means(module.step_losses, batches.per_pass),
            step_losses=[round(x, 5) for x in module.step_losses],
            resumed_at=module.resumed_at, optimizer_reset_at=module.optimizer_reset_at, trainer=trainer.to_dict(),
            timing=dict(train_seconds=module.clock["train_seconds"], curve_seconds=module.clock["curve_seconds"],
                        paused_seconds=module.clock.get("paused_seconds", 0.0),
                        step_seconds=[round(x, 4) for x in module.step_seconds],
                        images_per_second=2 * steps * config.batch_size * fit.world_size
                        / max(module.clock["train_seconds"], 1e-9)),
            provenance=provenance(),
        )

    callbacks = [StepProgress(label or f"{config.method} {config.init} {'+'.join(config.datasets)}", total,
                              every=progress_every, images_per_step=2 * config.batch_size,
                              quiet=not trainer.progress),
                 Snapshots(out, [s for s in snapshots if s < total], meta, storage)]
    if curve_targets:
        prober = Prober(config, list(curve_targets), in_chans=pool.in_chans, progress=trainer.progress,
                        pool_images=None if config.views == "pil" else pool.images)  # pil: the curve before #30
        callbacks.append(LearningCurve(curve_path(out), prober, every=curve_every, batch_size=config.batch_size,
                                       references=lambda known=(): reference_rows(
                                           prober, config.arch, seeds=reference_seeds,
                                           imagenet_weights=imagenet_weights, timm_kwargs={}, known=known)))
    # last: a state saved at a step holds that step's curve point and snapshot
    callbacks.append(ResumableState(state, batches, every=state_every, carry=carry_path(out) if carry else None))
    fit.callbacks.extend(callbacks)
    with scratch:
        ckpt = None
        if resume and (state / "last.ckpt").is_file():
            ckpt = state / "last.ckpt"
        elif resume and carry_path(out).is_file():
            ckpt = carry_path(out)
        fit.fit(module, loader, ckpt_path=ckpt)
    if not fit.is_global_zero:
        return out
    if not all(math.isfinite(x) for x in module.step_losses):
        raise MedimgError(f"{config.method} loss diverged (last {module.step_losses[-3:]}); {out} was not written: "
                          f"lower --lr or raise --temperature")
    backbone, record = module.backbone, meta(module, fit.global_step)
    if config.views != "pil" and config.backbone_bn != "frozen":  # the batch-norm rule (medimg.probe.batchnorm):
        # statistics of clean pool images (frozen ones are still ImageNet's clean statistics, and stay)
        from medimg.probe.batchnorm import POOL_IMAGES, clean_pool_batch, with_statistics

        backbone = with_statistics(backbone, clean_pool_batch(pool.images, norm, seed=config.seed))
        record["batch_norm"] = (f"statistics recomputed on {min(POOL_IMAGES, len(pool.images))} clean (un-augmented) "
                                f"pool images after the last step")
    elif config.backbone_bn == "frozen":
        record["batch_norm"] = "statistics frozen as initialised (ImageNet's, of clean images) throughout"
    if storage != "float32" and curve_targets:  # does the probe read the smaller file as it reads the backbone?
        record["storage_check"] = storage_check(prober, backbone, storage)
        if record["storage_check"]["max_difference"] > STORAGE_TOLERANCE:
            storage = "float32"  # the smaller file would change a probe's verdict: the whole one is kept
        record["storage_check"]["kept"] = storage
    save_ssl_backbone(out, backbone, record, storage=storage)
    shutil.rmtree(state, ignore_errors=True)
    carry_path(out).unlink(missing_ok=True)
    return out


STORAGE_TOLERANCE = 0.002  # the largest probe difference (accuracy, any target and protocol) a smaller file may make


def storage_check(prober: Prober, backbone, storage: str) -> dict:
    """The curve's probes (every target and protocol, on validation) of ``backbone`` as trained and as stored in
    ``storage``: the largest difference in accuracy, and each pair. Both are read with the statistics the backbone
    holds (the rule's, already recomputed)."""
    import copy

    from medimg.models.backbones import STORAGE

    stored = copy.deepcopy(backbone)
    with torch.no_grad():
        for tensor in list(stored.parameters()) + list(stored.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(STORAGE[storage]).float())
    full = prober.rows(backbone, rule="carried")
    small = prober.rows(stored, rule="carried")
    pairs = [dict(target=a["target"], protocol=a["protocol"], float32=a["val_accuracy"], stored=b["val_accuracy"])
             for a, b in zip(full, small)]
    return dict(storage=storage, max_difference=max(abs(p["float32"] - p["stored"]) for p in pairs), pairs=pairs)


def _pass_means(losses: list[float], per_pass: int) -> list[float]:
    """The mean loss of each pass over the pool (the last may be partial)."""
    return [sum(part) / len(part) for part in (losses[i:i + per_pass] for i in range(0, len(losses), per_pass))]


def _timm_kwargs(source: WeightSource) -> dict:
    """Architecture options beyond the defaults that the initial weights were created with."""
    from medimg.models.tflite_import import TIMM_KWARGS

    return dict(TIMM_KWARGS) if source.kind == "tflite-import" else {}
