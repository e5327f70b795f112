"""Fine-tuning runs on PyTorch Lightning: the TL, SSL, TL+SSL and scratch arms, single or double.

One code path runs on a CPU, a GPU with mixed precision, or several GPUs and nodes with DDP;
:class:`~medimg.training.trainer.TrainerSettings` chooses. A run is described completely by a
:class:`~medimg.finetune.config.FinetuneConfig` and writes a run directory (:mod:`medimg.finetune.runs`). The
LightningModule is :class:`medimg.finetune.classifier.Classifier`; the loaders come from :mod:`medimg.finetune.loaders`.
When training stops and which weights are kept follow the run's recipe (:mod:`medimg.finetune.recipes`: early
stopping on the validation loss keeping the best, or LP-FT's fixed schedule keeping the last); the test set is only
ever predicted.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from medimg.finetune.classifier import Classifier, predict
from medimg.finetune.arms import arm_kind, checkpoint_arms
from medimg.finetune.config import FinetuneConfig
from medimg.finetune.recipes import recipe_of
from medimg.training.trainer import TrainerSettings, quiet_lightning
from medimg.data import check_lineage, prepare
from medimg.data.fingerprint import FINGERPRINT_OF
from medimg.atomic import is_main_process
from medimg.errors import MedimgError
from medimg.evaluate.metrics import summary_metrics
from medimg.finetune.loaders import training_loaders, training_plan
from medimg.models.backbones import model_preprocess
from medimg.models.backbones import create_backbone, fresh_head, read_ssl_meta
from medimg.identity import provenance
from medimg.finetune.runs import prediction_rows, prepare_run_dir, run_name, write_json, write_results

log = logging.getLogger(__name__)


# --- one stage ---------------------------------------------------------------------------------

def _run_stage(*, stage: str, stage_dir: Path, model: nn.Module, data, config: FinetuneConfig, epochs: int,
               settings: TrainerSettings, resume: bool) -> dict:
    """Train ``model`` on ``data`` in ``stage_dir``; return the stage's record (best model loaded)."""
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    channels = data.decoded.channels
    preprocess = model_preprocess(model, channels, size=config.size, grey_as=config.grey_as)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, val_loader, test_loader, plan = training_loaders(data, preprocess, config, settings)
    ckpt_dir = stage_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    recipe = recipe_of(config.recipe)
    probe, probe_seconds = None, 0.0
    if recipe.head_from_probe and not (resume and last.is_file()):  # a resumed run has its head already
        start = time.perf_counter()
        probe = head_from_linear_probe(model, data, preprocess, config)
        probe_seconds = time.perf_counter() - start  # LP-FT's first stage: features of train and val, the C search
    model.train()  # one handed over from an earlier stage arrives in eval mode
    module = Classifier(model, config=config, max_epochs=epochs, stage=stage, channels_last=settings.channels_last)
    if recipe.early_stopping:  # stop on the validation loss, keep the weights of its lowest
        checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min",
                                     save_top_k=1, save_last=True, enable_version_counter=False)
        callbacks = [checkpoint, EarlyStopping(monitor="val_loss", mode="min", patience=config.patience)]
    else:  # a fixed schedule: every epoch runs, and the last weights are kept
        checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=None, save_top_k=1, save_last=True,
                                     enable_version_counter=False)
        callbacks = [checkpoint]
    trainer = settings.build(max_epochs=epochs, callbacks=callbacks, default_root_dir=stage_dir,
                             logger=CSVLogger(stage_dir, name="logs", version=0), log_every_n_steps=1)
    start = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume and last.is_file() else None)
    train_seconds = time.perf_counter() - start
    best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
    module.load_state_dict(best["state_dict"])
    history = module.history  # every epoch, including those after the best one
    record = dict(model=module.model, history=history, best_checkpoint=Path(checkpoint.best_model_path),
                  preprocess=preprocess, best_epoch=int(best["epoch"]), epochs_run=len(history))
    if not trainer.is_global_zero:  # DDP: process 0 alone predicts the whole validation and test sets, once
        return record
    start = time.perf_counter()
    val_probs = predict(module.model, val_loader, channels_last=settings.channels_last)
    test_probs = predict(module.model, test_loader, channels_last=settings.channels_last)
    eval_seconds = time.perf_counter() - start
    classes = list(data.classes)
    y_val, y_test = data.part("val")[1], data.part("test")[1]
    return dict(record,
        balance=plan.to_dict(), linear_probe=probe,
        val=summary_metrics(y_val, val_probs, classes, split="validation"), test=summary_metrics(y_test, test_probs, classes),
        test_probs=test_probs,
        timing=dict(train_seconds=train_seconds, eval_seconds=eval_seconds, probe_seconds=probe_seconds,
                    train_images_per_second=len(history) * len(train_loader.dataset) / max(train_seconds, 1e-9)),
    )


def head_from_linear_probe(model: nn.Module, data, preprocess, config: FinetuneConfig) -> dict:
    """LP-FT's first step (Kumar et al., "Fine-tuning can distort pretrained features and underperform
    out-of-distribution", ICLR 2022): the head becomes the linear probe (:class:`~medimg.probe.linear_knn.LinearProbe`,
    ``C`` chosen on the validation split) of ``model``'s frozen features of the training split (capped as the
    run is). Returns the probe's record: its ``C``, validation accuracy and log loss."""
    from medimg.probe.features import FrozenFeatures, model_features
    from medimg.probe.linear_knn import LinearProbe

    x, y = model_features(model, data, preprocess, splits=("train", "val"))
    probe = LinearProbe(max_train_images=config.max_train_images, split_seed=config.split_seed,
                        random_state=config.seed).fit(FrozenFeatures(x=x, y=y, classes=tuple(data.classes)))
    weight, bias = probe.head_weights()
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
    accuracy = float(np.mean(probe.predict_proba(x["val"]).argmax(1) == y["val"]))
    return dict(C=probe.C_, val_accuracy=accuracy, val_loss=probe.val_log_loss_[probe.C_])


# --- the whole run -----------------------------------------------------------------------------

def finetune(config: FinetuneConfig, run_dir: Path, *, settings: TrainerSettings = TrainerSettings(),
             resume: bool = False, force: bool = False, data_dir=None) -> dict:
    """Run ``config`` into ``run_dir`` (single or double fine-tuning); return metrics.json's content (None in a
    DDP process other than the first, which trains its shard and writes nothing: :func:`medimg.atomic.is_main_process`).

    The first process holds ``run_dir``'s lock (:func:`medimg.atomic.run_lock`) from before its data is read until
    the run is written: a second process given the same folder is refused at once, whatever its options."""
    from contextlib import nullcontext

    from medimg.atomic import run_lock

    run_dir = Path(run_dir)
    with run_lock(run_dir, command=f"medimg finetune {config.method} on {config.dataset}") if is_main_process() \
            else nullcontext():
        return _finetune(config, run_dir, settings=settings, resume=resume, force=force, data_dir=data_dir)


def _finetune(config: FinetuneConfig, run_dir: Path, *, settings: TrainerSettings, resume: bool, force: bool,
              data_dir) -> dict:
    quiet_lightning()
    target = prepare(config.data_config(), data_dir=data_dir, progress=settings.progress)
    intermediate = None
    lineage = None
    if config.intermediate:
        intermediate = prepare(config.data_config(config.intermediate), data_dir=data_dir, progress=settings.progress)
        stage_config = replace(config, dataset=config.intermediate,
                               max_train_images=config.intermediate_max_train_images)
        lineage = check_lineage([intermediate.source, target.source], allow_overlap=config.allow_overlap,
                                purpose=f"double fine-tuning of {target.source.name} after {intermediate.source.name}",
                                hashes={d.source.name: set(d.decoded.sha256) for d in (intermediate, target)}).to_dict()
        if intermediate.decoded.channels != target.decoded.channels:
            raise MedimgError(f"{config.intermediate} is {intermediate.decoded.modality} but {config.dataset} is "
                              f"{target.decoded.modality}: double fine-tuning needs the same kind of image")
    channels = target.decoded.channels
    in_chans = config.in_chans(channels)
    _check_weights_match_method(config, config.weight_file)

    # the run's identity (its name in a study) in config.json and metrics.json alike: a reader refuses a folder whose
    # results belong to another run than its config
    record = dict(run=config.to_dict(), identity=run_name(config, settings), trainer=settings.to_dict(), data=dict(
        target=dict(target.config.to_dict(), name=target.source.name, split=target.split.to_dict(),
                    fingerprint=target.source.fingerprint, fingerprint_of=FINGERPRINT_OF, classes=list(target.classes),
                    channels=channels, modality=target.decoded.modality, intensity_mapping=target.decoded.intensity,
                    exif_rotated=target.decoded.rotated),
        intermediate=None if intermediate is None else dict(
            intermediate.config.to_dict(), name=intermediate.source.name, split=intermediate.split.to_dict(),
            classes=list(intermediate.classes), intensity_mapping=intermediate.decoded.intensity),
        lineage=lineage), provenance=provenance())
    pl.seed_everything(config.seed, workers=True, verbose=False)
    first_classes = len(intermediate.classes) if intermediate else len(target.classes)
    model, source = create_backbone(config.arch, num_classes=first_classes, in_chans=in_chans,
                                    weights=config.weight_spec)
    stage_data = [(config, target)] if intermediate is None else [(stage_config, intermediate), (config, target)]
    check_trainable(model, stage_data, in_chans=in_chans)
    # only now, with data and weights in hand, does the run directory get written, by process 0 alone: DDP's other
    # processes (Lightning runs the command again for each) find it made and train their shard
    main = is_main_process()
    resuming = prepare_run_dir(run_dir, record, resume=resume, force=force) if main else resume
    stages = {}
    if intermediate is not None:
        stage_dir = run_dir / "stage1"
        done = stage_dir / "stage.json"
        if resuming and done.is_file():  # stage 1 finished before the interruption
            stage1 = _reload_stage(done, model)
        else:
            stage1 = _run_stage(stage="intermediate", stage_dir=stage_dir, model=model, data=intermediate,
                                config=stage_config, epochs=config.intermediate_epochs, settings=settings,
                                resume=resuming)
            if main:
                write_json(done, _stage_record(stage1))
        stages["intermediate"] = stage1
        model = stage1["model"]
        pl.seed_everything(config.seed, workers=True, verbose=False)
        fresh_head(model, len(target.classes))  # a fresh head for the target's classes
    final = _run_stage(stage="target", stage_dir=run_dir, model=model, data=target, config=config,
                       epochs=config.epochs, settings=settings, resume=resuming)
    stages["target"] = final
    if not main:
        return None
    metrics = _write_results(run_dir, config, target, stages, source, identity=record["identity"])
    # finished: the training checkpoints (with optimiser state, for --resume) give way to best.ckpt's weights
    for folder in (run_dir / "checkpoints", run_dir / "stage1" / "checkpoints"):
        shutil.rmtree(folder, ignore_errors=True)
    return metrics


def check_trainable(model: nn.Module, stages: list[tuple[FinetuneConfig, object]], *, in_chans: int) -> None:
    """Refuse settings that cannot train ``model``, before anything is written.

    ``stages`` lists each stage's (config, prepared data) in order; the last is the target. Batch
    norm in training mode needs batches of at least 2 images: ``batch_size >= 2`` for a model with
    batch norm, and at least 2 training images per stage after ``max_train_images`` and class
    balancing (a training split no larger than the batch is one batch). ``model`` must accept a
    (2, ``in_chans``, size, size) batch: one zero batch is run in eval mode, which changes no
    weight, statistic or random state. Raises :class:`MedimgError` naming the option to change.
    """
    config = stages[-1][0]
    if config.batch_size < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise MedimgError(f"--batch-size {config.batch_size} cannot train {config.arch}: its batch norm layers need "
                          f"at least 2 images per batch; use --batch-size 2 or more")
    for i, (stage_config, data) in enumerate(stages):
        labels = data.decoded.labels[data.split.indices("train", data.decoded.ids)]
        n = len(training_plan(labels, stage_config)[1].indices)
        if n < 2:
            cap = "--max-train-images" if i == len(stages) - 1 else "--intermediate-max-train-images"
            raise MedimgError(f"{data.source.name} leaves {n} training image{'s' * (n != 1)} after {cap} and --balance "
                              f"{stage_config.balance}, and training needs at least 2: add images to it or change "
                              f"those options")
    size, failure = config.size, _forward_failure(model, in_chans, config.size)
    if failure is not None:
        larger = next((s for s in (32, 64, 128, 224, 299) if s > size and _forward_failure(model, in_chans, s) is None),
                      None)
        raise MedimgError(f"--size {size} is too small for {config.arch}: images of {size}x{size} pixels fail in "
                          f"the network ({failure}); use a larger --size{f', e.g. --size {larger}' if larger else ''}")


def _forward_failure(model: nn.Module, in_chans: int, size: int) -> str | None:
    """Why a zero (2, in_chans, size, size) batch fails in ``model`` (eval mode, no gradients), or None."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros(2, in_chans, size, size))
        return None
    except (RuntimeError, ValueError) as err:
        return (str(err).strip().splitlines() or [type(err).__name__])[0]
    finally:
        model.train(was_training)


def _check_weights_match_method(config: FinetuneConfig, weight_file: Path | None) -> None:
    meta = read_ssl_meta(weight_file) if weight_file is not None and weight_file.is_file() else None
    arm = arm_kind(config.method)
    if not arm.needs_checkpoint and meta is not None:
        raise MedimgError(f"{weight_file} is a self-supervised checkpoint: use --method "
                          f"{' or '.join(checkpoint_arms())} for it")
    if meta is not None:
        wanted = arm.checkpoint_init
        if meta.get("init") != wanted:
            raise MedimgError(f"{weight_file} was pretrained from {meta.get('init')} weights, but --method "
                              f"{config.method} needs a checkpoint pretrained from {wanted} (--init {wanted})")
        if meta.get("size") != config.size and not config.allow_size_mismatch:
            raise MedimgError(f"{weight_file} was pretrained at {meta.get('size')} px but this run reads it at "
                              f"{config.size} px: fine-tune with --size {meta.get('size')}, pretrain at {config.size} "
                              f"px, or pass --allow-size-mismatch (recorded in the run's name)")


def _stage_record(stage: dict) -> dict:
    keep = ("history", "best_epoch", "epochs_run", "balance", "val", "test", "timing")
    return dict({k: stage[k] for k in keep}, best_checkpoint=str(stage["best_checkpoint"]))


def _reload_stage(done: Path, model: nn.Module) -> dict:
    rec = json.loads(done.read_text())
    state = torch.load(rec["best_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    return dict(rec, model=model)


def _write_results(run_dir: Path, config: FinetuneConfig, target, stages: dict, source, *, identity: str) -> dict:
    final = stages["target"]
    rows = prediction_rows(target, final["test_probs"])
    history = [row for s in stages.values() for row in s["history"]]
    metrics = dict(
        identity=identity, dataset=target.source.name, method=config.method, arch=config.arch, seed=config.seed,
        channels=target.decoded.channels, modality=target.decoded.modality,  # as decoded: (N, H, W, channels)
        weight_source=source.to_dict(), test=final["test"], val=final["val"], best_epoch=final["best_epoch"],
        epochs_run=final["epochs_run"], balance=final["balance"], linear_probe=final.get("linear_probe"),
        intermediate=None if "intermediate" not in stages else {
            k: stages["intermediate"][k] for k in ("test", "val", "best_epoch", "epochs_run")},
        preprocess=final["preprocess"].to_dict(),
        timing={name: s["timing"] for name, s in stages.items()},
    )
    write_results(run_dir, predictions=rows, history=history, weights={f"model.{k}": v for k, v in final["model"].state_dict().items()}, metrics=metrics)
    return metrics
