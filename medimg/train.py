"""Fine-tuning on PyTorch Lightning: the TL, SSL, TL+SSL and scratch arms, single or double.

One code path runs on a CPU, a GPU with mixed precision, or several GPUs and nodes with DDP;
:class:`~medimg.trainer_settings.TrainerSettings` chooses. A run is described completely by a
:class:`FinetuneConfig` and writes a run directory (:mod:`medimg.runs`).

Recipes (what trains when):

* ``paper`` (default): the new head alone for ``head_epochs``, then the whole network;
* ``linear``: the head only (a linear probe);
* ``partial``: the head and the last ``unfreeze_stages`` stages of the backbone;
* ``full``: everything from the start.

The backbone learns at ``lr * backbone_lr_scale``, the head at ``lr``. Early stopping and the
kept checkpoint both follow the validation loss; the test set is only ever predicted.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from .atomic import atomic_path
from .data import Augmentation, DataConfig, EpochSampler, ImageDataset, Preprocess, check_lineage, class_balance, prepare
from .data.balance import stratified_subsample
from .data.splits import DEFAULT_NEAR_DUPLICATE_DISTANCE
from .data.transforms import mix_seed
from .errors import MedimgError
from .evaluate.metrics import summary_metrics
from .models.backbones import (check_architecture, classifier_parameters, create_backbone, fresh_head, parameter_groups,
                               read_ssl_meta)
from .provenance import provenance
from .runs import prepare_run_dir, write_csv, write_json
from .trainer_settings import TrainerSettings

METHODS = ("tl", "ssl", "tl+ssl", "scratch")
# What a config.json written before a field existed meant: splits grouped exact duplicates only, and
# >8-bit images were stretched per image (no staged dataset has such images, so no committed run used it).
LEGACY_DEFAULTS = dict(near_duplicate_distance=None, intensity="per-image")
RECIPES = ("auto", "paper", "linear", "partial", "full")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a fine-tuning run's result (saved as ``config.json``)."""

    dataset: str
    method: str  # tl | ssl | tl+ssl | scratch
    arch: str = "mobilenetv2_100"
    weights: str | None = None  # tl: auto|timm|tflite|FILE (default auto); ssl, tl+ssl: a SimCLR checkpoint
    intermediate: str | None = None  # double fine-tuning: stage 1 on this dataset
    allow_overlap: bool = False
    size: int = 64
    medmnist_size: int = 28
    split_seed: int = 0
    intensity: str = "auto"  # how >8-bit intensities become pixels (medimg.data.intensity)
    near_duplicate_distance: int | None = DEFAULT_NEAR_DUPLICATE_DISTANCE  # split grouping (medimg.data.splits)
    grey_as: str = "replicate"  # grey images: "single" (in_chans=1) or "replicate" (3 channels)
    augment: bool = False
    augmentation: Augmentation = field(default_factory=Augmentation)
    balance: str = "none"  # none | down | over (training split only)
    max_train_images: int | None = None  # a stratified subsample of the training split (quick profiles), same for every seed
    recipe: str = "auto"  # auto: full for scratch, paper for the pretrained arms
    head_epochs: int = 2
    unfreeze_stages: int = 2
    epochs: int = 12
    intermediate_epochs: int = 6
    # stage 1's own cap (None: its whole training split); max_train_images caps the target only
    intermediate_max_train_images: int | None = None
    batch_size: int = 32
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    backbone_lr_scale: float | None = None  # None: 1 for scratch, 0.1 to protect pretrained weights
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | constant
    patience: int = 4  # early stopping on validation loss
    seed: int = 0

    def __post_init__(self):
        check_architecture(self.arch)
        if self.recipe == "auto":  # a random backbone has nothing worth freezing
            object.__setattr__(self, "recipe", "full" if self.method == "scratch" else "paper")
        if self.backbone_lr_scale is None:
            object.__setattr__(self, "backbone_lr_scale", 1.0 if self.method == "scratch" else 0.1)
        for name, value, allowed in (("method", self.method, METHODS), ("recipe", self.recipe, RECIPES),
                                     ("balance", self.balance, ("none", "down", "over")),
                                     ("grey_as", self.grey_as, ("single", "replicate")),
                                     ("optimizer", self.optimizer, ("adamw", "sgd")),
                                     ("schedule", self.schedule, ("cosine", "constant"))):
            if value not in allowed:
                raise MedimgError(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")
        if self.method in ("ssl", "tl+ssl") and not self.weights:
            raise MedimgError(f"--method {self.method} needs --weights CKPT, a SimCLR checkpoint from "
                              f"'medimg pretrain-ssl{' --init imagenet' if self.method == 'tl+ssl' else ''}'")
        if self.method == "scratch" and self.weights not in (None, "random"):
            raise MedimgError("--method scratch starts from random weights: drop --weights")
        for name in ("max_train_images", "intermediate_max_train_images"):
            if getattr(self, name) is not None and getattr(self, name) < 2:
                raise MedimgError(f"{name} must be at least 2 (or unset for the whole training split)")
        if min(self.epochs, self.batch_size, self.size) < 1 or self.head_epochs < 0:
            raise MedimgError("epochs, batch size and size must be positive")
        # paper: the head alone for head_epochs, then everything; with no epoch left the backbone never trains
        stages = (("--epochs", self.epochs),) + ((("--intermediate-epochs", self.intermediate_epochs),)
                                                 if self.intermediate else ())
        for option, epochs in stages:
            if self.recipe == "paper" and self.head_epochs >= epochs:
                raise MedimgError(f"--head-epochs {self.head_epochs} leaves none of {option} {epochs} to train the "
                                  f"backbone with --recipe paper: lower --head-epochs or raise {option} (or use "
                                  f"--recipe linear to train the head alone)")

    @property
    def weight_spec(self) -> str:
        if self.method == "scratch":
            return "random"
        return self.weights or "auto"

    def data_config(self, dataset: str | None = None) -> DataConfig:
        """The data settings of the target (or of ``dataset``, e.g. the intermediate one)."""
        return DataConfig(dataset or self.dataset, size=self.size, split_seed=self.split_seed,
                          medmnist_size=self.medmnist_size, intensity=self.intensity,
                          near_duplicate_distance=self.near_duplicate_distance)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["intermediate_max_train_images"] is None:  # added later: runs named before it keep their names
            del d["intermediate_max_train_images"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        # a config saved before a field existed ran with that field's old behaviour, not today's default
        d = dict(LEGACY_DEFAULTS, **d)
        d["augmentation"] = Augmentation(**{k: tuple(v) if isinstance(v, list) else v
                                            for k, v in d.get("augmentation", {}).items()})
        return cls(**d)


# --- the Lightning module ----------------------------------------------------------------------

class Classifier(pl.LightningModule):
    """A timm model trained with cross-entropy under one of the recipes."""

    def __init__(self, model: nn.Module, *, config: FinetuneConfig, max_epochs: int, stage: str,
                 channels_last: bool):
        super().__init__()
        self.model, self.config, self.max_epochs, self.stage = model, config, max_epochs, stage
        self.channels_last = channels_last
        self.groups = parameter_groups(model)
        self.history: list[dict] = []
        self._sums = np.zeros(3)  # this epoch's training loss * n, correct, n
        self._val = np.zeros(3)  # the same for validation

    # which parameters train in a given epoch
    def trainable(self, epoch: int) -> set[str]:
        head = set(classifier_parameters(self.model))
        body = [n for g in self.groups[:-1] for n in g]
        recipe = self.config.recipe
        if recipe == "full" or (recipe == "paper" and epoch >= self.config.head_epochs):
            return head | set(body)
        if recipe == "partial":
            return head | {n for g in self.groups[:-1][-self.config.unfreeze_stages:] for n in g}
        return head

    def on_train_epoch_start(self):
        torch.manual_seed(mix_seed(self.config.seed, self.current_epoch, 1))  # anything not seeded per item
        trainable = self.trainable(self.current_epoch)
        for name, p in self.model.named_parameters():
            p.requires_grad_(name in trainable)
        # frozen layers keep their batch-norm statistics: put wholly frozen norm layers in eval mode
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train(any(p.requires_grad for p in module.parameters()))
        self._sums, self._val = np.zeros(3), np.zeros(3)
        self._lr = self.trainer.optimizers[0].param_groups[0]["lr"]  # the head's rate this epoch

    def forward(self, x):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch, _):
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        n = len(y)
        self._sums += [loss.item() * n, (logits.argmax(1) == y).sum().item(), n]
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y, reduction="sum")
        self._val += [loss.item(), (logits.argmax(1) == y).sum().item(), len(y)]
        self.log("val_loss", loss / len(y), on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking or self._sums[2] == 0:
            return
        trainable = self.trainable(self.current_epoch)
        # plain floats: checkpoints are read back with torch.load(weights_only=True)
        self.history.append(dict(
            stage=self.stage, epoch=int(self.current_epoch),
            train_loss=float(self._sums[0] / self._sums[2]), train_accuracy=float(self._sums[1] / self._sums[2]),
            val_loss=float(self._val[0] / self._val[2]), val_accuracy=float(self._val[1] / self._val[2]),
            lr=float(self._lr),
            trainable_fraction=sum(p.numel() for n, p in self.model.named_parameters() if n in trainable)
            / sum(p.numel() for p in self.model.parameters()),
        ))

    def configure_optimizers(self):
        head = set(classifier_parameters(self.model))
        params = dict(self.model.named_parameters())
        groups = [dict(params=[params[n] for n in sorted(head)], lr=self.config.lr),
                  dict(params=[p for n, p in params.items() if n not in head],
                       lr=self.config.lr * self.config.backbone_lr_scale)]
        if self.config.optimizer == "sgd":
            opt = torch.optim.SGD(groups, momentum=0.9, weight_decay=self.config.weight_decay)
        else:
            opt = torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)
        if self.config.schedule == "constant":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.max_epochs))
        return dict(optimizer=opt, lr_scheduler=dict(scheduler=sched, interval="epoch"))

    def on_save_checkpoint(self, checkpoint):
        checkpoint["medimg_history"] = self.history
        checkpoint["medimg_config"] = self.config.to_dict()

    def on_load_checkpoint(self, checkpoint):
        self.history = list(checkpoint.get("medimg_history", []))


# --- data --------------------------------------------------------------------------------------

def _loaders(data, preprocess: Preprocess, config: FinetuneConfig, settings: TrainerSettings):
    x_train, y_train, _ = data.part("train")
    keep, plan = _training_plan(y_train, config)
    if keep is not None:
        x_train, y_train = x_train[keep], y_train[keep]
    train = ImageDataset(x_train, y_train, preprocess, indices=plan.indices, extra=plan.extra,
                         augment=config.augmentation if config.augment else None, seed=config.seed)
    common = dict(batch_size=config.batch_size, num_workers=settings.num_workers,
                  persistent_workers=settings.num_workers > 0)
    # drop_last: a last batch of one image breaks batch norm (and is noise anyway)
    train_loader = DataLoader(train, sampler=EpochSampler(len(train), seed=config.seed),
                              drop_last=len(train) > config.batch_size, **common)
    evals = {s: DataLoader(ImageDataset(*data.part(s)[:2], preprocess), shuffle=False, **common)
             for s in ("val", "test")}
    return train_loader, evals["val"], evals["test"], plan


def _training_plan(y_train: np.ndarray, config: FinetuneConfig):
    """The training images a stage uses: (positions kept by ``max_train_images``, or None for all; the
    class-balance plan over the kept labels, whose ``indices`` are what one epoch trains on)."""
    keep = (stratified_subsample(y_train, config.max_train_images, random_state=config.split_seed)
            if config.max_train_images else None)
    return keep, class_balance(y_train if keep is None else y_train[keep], config.balance, random_state=config.seed)


def _preprocess(model, channels: int, config: FinetuneConfig) -> Preprocess:
    return Preprocess.from_pretrained_cfg(model.pretrained_cfg, image_channels=channels,
                                          grey_as=config.grey_as if channels == 1 else None, size=config.size)


@torch.inference_mode()
def predict(model: nn.Module, loader: DataLoader, *, channels_last: bool = False) -> np.ndarray:
    """Class probabilities for every item of ``loader``, in order."""
    model.eval()
    out = []
    for x, _ in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(torch.softmax(model(x).float(), 1).numpy())
    return np.concatenate(out)


# --- one stage ---------------------------------------------------------------------------------

def _run_stage(*, stage: str, stage_dir: Path, model: nn.Module, data, config: FinetuneConfig, epochs: int,
               settings: TrainerSettings, resume: bool) -> dict:
    """Train ``model`` on ``data`` in ``stage_dir``; return the stage's record (best model loaded)."""
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    channels = data.decoded.channels
    preprocess = _preprocess(model, channels, config)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, val_loader, test_loader, plan = _loaders(data, preprocess, config, settings)
    model.train()  # one handed over from an earlier stage arrives in eval mode
    module = Classifier(model, config=config, max_epochs=epochs, stage=stage, channels_last=settings.channels_last)
    ckpt_dir = stage_dir / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min",
                                 save_top_k=1, save_last=True, enable_version_counter=False)
    stopper = EarlyStopping(monitor="val_loss", mode="min", patience=config.patience)
    trainer = settings.build(max_epochs=epochs, callbacks=[checkpoint, stopper], default_root_dir=stage_dir,
                             logger=CSVLogger(stage_dir, name="logs", version=0), log_every_n_steps=1)
    last = ckpt_dir / "last.ckpt"
    start = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume and last.is_file() else None)
    train_seconds = time.perf_counter() - start
    best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
    module.load_state_dict(best["state_dict"])
    history = module.history  # every epoch, including those after the best one
    start = time.perf_counter()
    val_probs = predict(module.model, val_loader, channels_last=settings.channels_last)
    test_probs = predict(module.model, test_loader, channels_last=settings.channels_last)
    eval_seconds = time.perf_counter() - start
    classes = list(data.classes)
    y_val, y_test = data.part("val")[1], data.part("test")[1]
    return dict(
        model=module.model, history=history, best_checkpoint=Path(checkpoint.best_model_path), preprocess=preprocess,
        best_epoch=int(best["epoch"]), epochs_run=len(history), balance=plan.to_dict(),
        val=summary_metrics(y_val, val_probs, classes), test=summary_metrics(y_test, test_probs, classes),
        test_probs=test_probs,
        timing=dict(train_seconds=train_seconds, eval_seconds=eval_seconds,
                    train_images_per_second=len(history) * len(train_loader.dataset) / max(train_seconds, 1e-9)),
    )


# --- the whole run -----------------------------------------------------------------------------

def finetune(config: FinetuneConfig, run_dir: Path, *, settings: TrainerSettings = TrainerSettings(),
             resume: bool = False, force: bool = False, data_dir=None) -> dict:
    """Run ``config`` into ``run_dir`` (single or double fine-tuning); return metrics.json's content."""
    _quiet_lightning()
    run_dir = Path(run_dir)
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
    in_chans = 1 if channels == 1 and config.grey_as == "single" else 3
    weight_file = Path(config.weight_spec) if config.weight_spec not in ("auto", "timm", "tflite", "random") else None
    _check_weights_match_method(config, weight_file)

    record = dict(run=config.to_dict(), trainer=settings.to_dict(), data=dict(
        target=dict(target.config.to_dict(), name=target.source.name, split=target.split.to_dict(),
                    fingerprint=target.source.fingerprint, classes=list(target.classes),
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
    # only now, with data and weights in hand, does the run directory get written
    resuming = prepare_run_dir(run_dir, record, resume=resume, force=force)
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
            write_json(done, _stage_record(stage1))
        stages["intermediate"] = stage1
        model = stage1["model"]
        pl.seed_everything(config.seed, workers=True, verbose=False)
        fresh_head(model, len(target.classes))  # a fresh head for the target's classes
    final = _run_stage(stage="target", stage_dir=run_dir, model=model, data=target, config=config,
                       epochs=config.epochs, settings=settings, resume=resuming)
    stages["target"] = final
    return _write_results(run_dir, config, target, stages, source)


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
        n = len(_training_plan(labels, stage_config)[1].indices)
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
    if config.method == "tl" and meta is not None:
        raise MedimgError(f"{weight_file} is a SimCLR checkpoint: use --method ssl or tl+ssl for it")
    if meta is not None:
        wanted = "imagenet" if config.method == "tl+ssl" else "random"
        if meta.get("init") != wanted:
            raise MedimgError(f"{weight_file} was pretrained from {meta.get('init')} weights, but --method "
                              f"{config.method} needs a checkpoint pretrained from {wanted} (--init {wanted})")


def _stage_record(stage: dict) -> dict:
    keep = ("history", "best_epoch", "epochs_run", "balance", "val", "test", "timing")
    return dict({k: stage[k] for k in keep}, best_checkpoint=str(stage["best_checkpoint"]))


def _reload_stage(done: Path, model: nn.Module) -> dict:
    import json

    rec = json.loads(done.read_text())
    state = torch.load(rec["best_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    return dict(rec, model=model)


def _write_results(run_dir: Path, config: FinetuneConfig, target, stages: dict, source) -> dict:
    final = stages["target"]
    classes = list(target.classes)
    test_idx = target.split.indices("test", target.decoded.ids)
    probs = final["test_probs"]
    rows = [dict(id=target.decoded.ids[i], true=classes[target.decoded.labels[i]], predicted=classes[int(p.argmax())],
                 **{f"prob_{c}": round(float(v), 6) for c, v in zip(classes, p)}) for i, p in zip(test_idx, probs)]
    history = [row for s in stages.values() for row in s["history"]]
    metrics = dict(
        dataset=target.source.name, method=config.method, arch=config.arch, seed=config.seed,
        channels=target.decoded.channels, modality=target.decoded.modality,  # as decoded: (N, H, W, channels)
        weight_source=source.to_dict(), test=final["test"], val=final["val"], best_epoch=final["best_epoch"],
        epochs_run=final["epochs_run"], balance=final["balance"],
        intermediate=None if "intermediate" not in stages else {
            k: stages["intermediate"][k] for k in ("test", "val", "best_epoch", "epochs_run")},
        preprocess=final["preprocess"].to_dict(),
        timing={name: s["timing"] for name, s in stages.items()},
    )
    write_csv(run_dir / "history.csv", history)
    write_csv(run_dir / "predictions.csv", rows)
    best = run_dir / "best.ckpt"
    with atomic_path(best) as tmp:
        shutil.copyfile(final["best_checkpoint"], tmp)
    write_json(run_dir / "metrics.json", metrics)  # last: its presence marks the run finished
    return metrics


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda",
                 "lightning_fabric.utilities.seed", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
