"""SimCLR pretraining with lightly's pieces: the SSL arm (random init) and the TL+SSL arm (ImageNet init).

The training images of one or more datasets are pooled (never their validation or test
images), two augmented views of each are drawn with ``lightly.transforms.SimCLRTransform``, a
``SimCLRProjectionHead`` sits on the timm backbone's pooled features, and ``NTXentLoss`` trains
both. The backbone alone is saved, with its record, in the checkpoint format that
``create_backbone(..., weights=FILE)`` loads for fine-tuning.

Before anything is decoded, every pretraining dataset is checked against the dataset that will
be fine-tuned (``target``): pretraining on the target's own test images would leak them.

Optimiser: AdamW, ``lr`` 1e-3, weight decay 1e-4, linear warm-up over the first tenth of the
steps, then cosine decay to zero per step. Adam needs no batch-size scaling of the rate (SGD's
``0.06 * batch / 256`` does) and learns faster in the few epochs a CPU allows.
"""
from __future__ import annotations

import math
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .data import DataConfig, EpochSampler, LineageCheck, Preprocess, check_lineage, load_images, open_dataset, prepare
from .data.records import DatasetSource
from .data.transforms import mix_seed
from .errors import MedimgError
from .models.backbones import WeightSource, create_backbone, save_ssl_backbone
from .provenance import provenance
from .configs import INITS, SSLConfig, TrainerSettings

# --- views -------------------------------------------------------------------------------------

def view_settings(size: int, *, colour: bool, mean, std) -> dict:
    """``SimCLRTransform``'s arguments for small medical images, all explicit.

    Against SimCLR's ImageNet defaults: crops keep at least 40% of the image (8% of a 32-64 px
    image leaves too little anatomy), colour jitter is gentler (brightness and contrast 0.4,
    since intensities carry diagnosis; saturation 0.2 and hue 0.02 on colour, where stain and
    pigment colour matter, none on grey), grey-scaling is rare (colour) or off (grey), vertical
    flips and rotations of up to 15 degrees are on, as in the fine-tuning augmentation
    (lightly's default rotation is by 90 degrees, which no upright X-ray or CT slice shows),
    and blur scales with the image: sigma up to 1 px at 64 px, SimCLR's 2 px from 128 px.
    ``normalize`` is the backbone's own mean and std, one value per model channel: lightly's
    default (ImageNet, three values) silently broadcasts a grey view to three channels.
    """
    return dict(
        input_size=size, min_scale=0.4,
        cj_prob=0.8, cj_strength=1.0, cj_bright=0.4, cj_contrast=0.4,
        cj_sat=0.2 if colour else 0.0, cj_hue=0.02 if colour else 0.0,
        random_gray_scale=0.1 if colour else 0.0,
        gaussian_blur=0.5, sigmas=(0.1, min(2.0, size / 64)),
        hf_prob=0.5, vf_prob=0.5, rr_prob=0.5, rr_degrees=15.0,
        normalize=dict(mean=[float(m) for m in mean], std=[float(s) for s in std]),
    )


def simclr_transform(settings: dict):
    from lightly.transforms import SimCLRTransform

    return SimCLRTransform(**settings)


class SimCLRViews(Dataset):
    """Two augmented views of each pooled uint8 image (N, H, W, 1|3), fed to lightly as PIL images.

    Each item's randomness comes from (seed, epoch, position), as in
    :class:`~medimg.data.ImageDataset`: the same views whatever the workers or processes.
    lightly's blur and rotation draw from numpy's global generator, torchvision's from torch's,
    so both are seeded per item.
    """

    def __init__(self, images: np.ndarray, transform, *, seed: int):
        self.images, self.transform, self.seed = images, transform, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key):
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        a = self.images[i]
        image = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)  # mode "L" or "RGB"
        with _seeded(mix_seed(self.seed, epoch, i)):
            view0, view1 = self.transform(image)
        return view0, view1


@contextmanager
def _seeded(seed: int):
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(state)


# --- the Lightning module ----------------------------------------------------------------------

class SimCLR(pl.LightningModule):
    """A backbone's pooled features through lightly's projection head into NT-Xent."""

    def __init__(self, backbone: nn.Module, config: SSLConfig, *, channels_last: bool):
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        super().__init__()
        self.backbone, self.config, self.channels_last = backbone, config, channels_last
        width = backbone.num_features
        self.projection = SimCLRProjectionHead(input_dim=width, hidden_dim=width, output_dim=config.projection_dim)
        # with DDP, negatives come from every process's batch, as in SimCLR
        self.criterion = NTXentLoss(temperature=config.temperature, gather_distributed=True)
        self.epoch_losses: list[float] = []

    def forward(self, x):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.projection(self.backbone(x))

    def training_step(self, batch, _):
        x0, x1 = batch
        loss = self.criterion(self(x0), self(x1))
        self.log("ssl_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x0), sync_dist=True)
        return loss

    def on_train_epoch_end(self):
        self.epoch_losses.append(float(self.trainer.callback_metrics["ssl_loss"]))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, total // 10)

        def factor(step: int) -> float:
            return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return dict(optimizer=opt, lr_scheduler=dict(scheduler=sched, interval="step"))


# --- the pool ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pool:
    """The pooled training images, at the model's channel count, and where they came from."""

    images: np.ndarray  # (N, size, size, in_chans) uint8
    sources: tuple[DatasetSource, ...]
    hashes: dict[str, set[str]]  # per dataset, content hashes of its pooled images (file bytes for folders)
    in_chans: int
    grey_as: str | None  # how grey images were fed; None for an all-colour pool
    colour: bool  # any colour dataset in the pool
    record: tuple[dict, ...]  # per dataset: name, fingerprint, channels, train images, pooled images


def pool_images(config: SSLConfig, *, progress: bool = False) -> Pool:
    """Decode every dataset of ``config``, keep its train split, and pool them."""
    parts = []
    for name in config.datasets:
        data = prepare(DataConfig(name, size=config.size, split_seed=config.split_seed, medmnist_size=config.medmnist_size,
                                  intensity=config.intensity, near_duplicate_distance=config.near_duplicate_distance),
                       progress=progress)
        images, _, idx = data.part("train")
        parts.append((data, images, np.array(data.decoded.sha256)[idx]))
    channels = {d.source.name: d.decoded.channels for d, _, _ in parts}
    in_chans, grey_as = _channels(channels, config.grey_as)
    owner = np.concatenate([np.full(len(x), k) for k, (_, x, _) in enumerate(parts)])
    keep = np.arange(len(owner))
    if config.max_images is not None and config.max_images < len(keep):
        keep = np.sort(np.random.default_rng(config.seed).choice(len(keep), config.max_images, replace=False))
    images = np.concatenate([x if x.shape[-1] == in_chans else np.repeat(x, in_chans, axis=-1) for _, x, _ in parts])
    hashes = np.concatenate([h for _, _, h in parts])[keep]
    owner = owner[keep]
    record = tuple(dict(name=d.source.name, requested=d.config.dataset, fingerprint=d.source.fingerprint,
                        channels=d.decoded.channels, train_images=len(x), pooled_images=int((owner == k).sum()),
                        split=d.split.to_dict())
                   for k, (d, x, _) in enumerate(parts))
    return Pool(images=images[keep], sources=tuple(d.source for d, _, _ in parts),
                hashes={d.source.name: set(hashes[owner == k]) for k, (d, _, _) in enumerate(parts)},
                in_chans=in_chans, grey_as=grey_as, colour=any(c == 3 for c in channels.values()), record=record)


def _channels(channels: dict[str, int], grey_as: str | None) -> tuple[int, str | None]:
    """The model's input channels and the effective grey_as for datasets of these channel counts."""
    grey = [name for name, c in channels.items() if c == 1]
    colour = [name for name, c in channels.items() if c == 3]
    if not grey:
        return 3, None
    if colour and grey_as != "replicate":
        raise MedimgError(f"pooling grey {', '.join(grey)} with colour {', '.join(colour)} needs grey images "
                          f"copied to 3 channels: pass --grey-as replicate (grey_as='replicate')")
    if grey_as is None:
        raise MedimgError(f"{', '.join(grey)} {'is' if len(grey) == 1 else 'are'} grey: pass --grey-as single "
                          f"(a 1-channel model, in_chans=1) or --grey-as replicate (copied to 3 channels)")
    return (1 if grey_as == "single" else 3), grey_as


def _check_target(config: SSLConfig, target: DatasetSource, sources, hashes: dict | None = None) -> LineageCheck:
    """Check each pretraining dataset against the target (not against each other); one record for all."""
    overlaps = []
    for source in sources:
        check = check_lineage([target, source], allow_overlap=config.allow_overlap, hashes=hashes,
                              purpose=f"SSL pretraining on {source.name} before fine-tuning on {target.name}")
        overlaps += check.overlaps
    return LineageCheck(datasets=(target.name, *(s.name for s in sources)), overlaps=tuple(overlaps),
                        overridden=bool(overlaps))


# --- the whole run -----------------------------------------------------------------------------

def pretrain_ssl(config: SSLConfig, out: Path, *, trainer: TrainerSettings = TrainerSettings(),
                 force: bool = False) -> Path:
    """Pretrain a backbone with SimCLR on ``config``'s pool and save it to ``out`` (.safetensors)."""
    from .train import quiet_lightning

    quiet_lightning()
    out = Path(out)
    if out.suffix != ".safetensors":
        raise MedimgError(f"{out} must end in .safetensors: the SimCLR checkpoint is saved in that format")
    if out.exists() and not force:
        raise MedimgError(f"{out} already exists: pass --force to replace it, or choose another file")

    target = None
    if config.target:  # declared lineage first, so a refusal comes before any decoding
        target = open_dataset(config.target, medmnist_size=config.medmnist_size)
        _check_target(config, target, [open_dataset(d, medmnist_size=config.medmnist_size) for d in config.datasets])
    pool = pool_images(config, progress=trainer.progress)
    lineage = None
    if target is not None:
        hashes = None
        if target.spec.kind == "folder" and any(s.spec.kind == "folder" for s in pool.sources):
            # folders can hold copies of each other's files: compare what is pooled with the whole target
            hashes = {target.name: set(load_images(target, config.size, intensity=config.intensity, progress=trainer.progress).sha256),
                      **pool.hashes}
        lineage = _check_target(config, target, pool.sources, hashes).to_dict()

    pl.seed_everything(config.seed, workers=True, verbose=False)
    backbone, weight_source = create_backbone(config.arch, num_classes=0, in_chans=pool.in_chans,
                                              weights=INITS[config.init])
    norm = Preprocess.from_pretrained_cfg(backbone.pretrained_cfg, image_channels=pool.in_chans,
                                          grey_as="single" if pool.in_chans == 1 else None, size=config.size)
    views = view_settings(config.size, colour=pool.colour, mean=norm.mean, std=norm.std)
    if trainer.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    module = SimCLR(backbone, config, channels_last=trainer.channels_last)
    dataset = SimCLRViews(pool.images, simclr_transform(views), seed=config.seed)
    # drop_last: a last batch of one image has no negatives and breaks batch norm
    loader = DataLoader(dataset, sampler=EpochSampler(len(dataset), seed=config.seed),
                        batch_size=config.batch_size, drop_last=len(dataset) > config.batch_size,
                        num_workers=trainer.num_workers, persistent_workers=trainer.num_workers > 0)
    with tempfile.TemporaryDirectory(prefix="medimg-ssl-") as scratch:  # Lightning's root: nothing kept
        fit = trainer.build(max_epochs=config.epochs, default_root_dir=scratch, enable_checkpointing=False)
        start = time.perf_counter()
        fit.fit(module, loader)
        seconds = time.perf_counter() - start
    if not fit.is_global_zero:
        return out
    if not all(math.isfinite(x) for x in module.epoch_losses):
        raise MedimgError(f"SimCLR loss diverged ({module.epoch_losses}); {out} was not written: "
                          f"lower --lr or raise --temperature")

    seen = len(loader) * config.batch_size if loader.drop_last else len(dataset)
    meta = dict(
        arch=config.arch, in_chans=pool.in_chans, init=config.init, weight_source=weight_source.to_dict(),
        # what load_ssl_backbone needs to rebuild this exact network and its preprocessing
        timm_kwargs=_timm_kwargs(weight_source), pretrained_cfg=dict(backbone.pretrained_cfg),
        datasets=[s.name for s in pool.sources], pool=list(pool.record), n_images=len(pool.images),
        size=config.size, grey_as=pool.grey_as, epochs=config.epochs, seed=config.seed,
        config=config.to_dict(), lineage=lineage, transform=views, normalisation=norm.to_dict(),
        optimizer=dict(name="AdamW", lr=config.lr, weight_decay=config.weight_decay,
                       schedule="linear warm-up over 10% of steps, then cosine to 0, per step"),
        final_loss=module.epoch_losses[-1], epoch_losses=module.epoch_losses,
        trainer=trainer.to_dict(),
        timing=dict(train_seconds=seconds, images_per_second=config.epochs * seen / max(seconds, 1e-9)),
        provenance=provenance(),
    )
    save_ssl_backbone(out, module.backbone, meta)
    return out


def _timm_kwargs(source: WeightSource) -> dict:
    """Architecture options beyond the defaults that the initial weights were created with."""
    from .models.tflite_import import TIMM_KWARGS

    return dict(TIMM_KWARGS) if source.kind == "tflite-import" else {}
