"""The Lightning modules of the self-supervised methods (:data:`medimg.ssl.methods.METHODS` says which is which):
:class:`TwoViews`, a backbone's pooled features through a method's projection head into its loss on two views, and
each method's head and loss (:class:`SimCLR`, :class:`VICReg`); the learning-rate schedule they share.

The module keeps what a resumed run needs beyond Lightning's own checkpoint (optimiser, scheduler, step,
loops): the loss of every step, the seconds spent training and evaluating, and the state of Python's,
numpy's and torch's generators.
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from medimg.ssl.config import SSLConfig

SCHEDULE = "linear warm-up over 10% of steps, then cosine to 0, per step"


class schedule_factor:
    """The learning rate's factor at a step: 0 for the first ``hold`` steps, then a linear warm-up over a tenth of
    the ``total`` steps after them and a cosine decay to 0 at their end (a picklable callable for ``LambdaLR``)."""

    def __init__(self, total: int, hold: int = 0):
        self.total, self.hold = max(1, int(total)), int(hold)
        self.warmup = max(1, self.total // 10)

    def __call__(self, step: int) -> float:
        if step < self.hold:
            return 0.0
        step -= self.hold
        return min(1.0, (step + 1) / self.warmup) * 0.5 * (1 + math.cos(math.pi * min(step, self.total) / self.total))


class TwoViews(pl.LightningModule):
    """A backbone's pooled features through a method's projection head into its loss on two views.

    ``forward`` maps ``(B, C, H, W)`` views to ``(B, D)`` projections; a batch is the pair of view tensors
    ``(x0, x1)``. ``step_losses`` holds the loss of every optimiser step so far, resumed runs included.
    """

    def __init__(self, backbone: nn.Module, config: SSLConfig, *, channels_last: bool, views=None):
        super().__init__()
        self.backbone, self.config, self.channels_last = backbone, config, channels_last
        self.views = views  # medimg.ssl.tensor_views.BatchViews: batches are uint8 images; None: pairs of views
        self.projection, self.criterion = self.head_and_loss(backbone.num_features, config)
        self.step_losses: list[float] = []
        self.step_seconds: list[float] = []  # wall time of each step, views included (medimg.ssl.progress)
        self.clock = dict(train_seconds=0.0, curve_seconds=0.0)  # summed over every (resumed) part of the run
        self.resumed_at: list[int] = []  # steps at which the run was resumed
        self.optimizer_reset_at: list[int] = []  # ... of those, from a carried state (AdamW's moments afresh)

    def forward(self, x):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.backbone_frozen:
            with torch.no_grad():
                features = self.backbone(x)
        else:
            features = self.backbone(x)
        return self.projection(features)

    @property
    def backbone_frozen(self) -> bool:
        """True during the head's warm-up (``head_warmup_steps``): the backbone is read, not trained."""
        trainer = self._trainer
        step = trainer.global_step if trainer is not None else 0
        return step < self.config.head_warmup_steps and self.training

    def on_train_batch_start(self, batch, batch_idx):
        if self.config.backbone_bn == "frozen":  # normalise with the statistics the backbone was initialised with
            for m in self.backbone.modules():  # (again at every step: the curve's probes switch modes)
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def views_of(self, batch):
        """The two view tensors of a batch: made here from uint8 images (on the step's device), or given."""
        if self.views is None:
            return batch
        return self.views(batch, step=self.global_step, rank=self.global_rank)

    def training_step(self, batch, _):
        x0, x1 = self.views_of(batch)
        loss = self.criterion(self(x0), self(x1))
        self.step_losses.append(float(loss.detach()))
        return loss

    def configure_optimizers(self):
        """AdamW in two groups, the projection head at ``lr`` and the backbone at ``lr x backbone_lr_scale``;
        each warms up linearly over the first tenth of its steps and decays on a cosine to zero. The backbone's
        steps start after the head's warm-up (``head_warmup_steps``; its rate is 0 until then)."""
        c = self.config
        opt = torch.optim.AdamW([dict(params=self.projection.parameters(), lr=c.lr),
                                 dict(params=self.backbone.parameters(), lr=c.lr * c.backbone_lr_scale)],
                                lr=c.lr, weight_decay=c.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        hold = min(c.head_warmup_steps, total - 1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, [schedule_factor(total), schedule_factor(total - hold, hold)])
        return dict(optimizer=opt, lr_scheduler=dict(scheduler=sched, interval="step"))

    @staticmethod
    def head_and_loss(width: int, config: SSLConfig) -> tuple[nn.Module, nn.Module]:
        """The projection head for ``width`` backbone features and the loss of two batches of projections."""
        raise NotImplementedError

    # --- what a resumed run needs beyond Lightning's state -------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["medimg"] = dict(step_losses=list(self.step_losses), step_seconds=list(self.step_seconds),
                                    clock=dict(self.clock), resumed_at=list(self.resumed_at),
                                    optimizer_reset_at=list(self.optimizer_reset_at), rng=_rng_state())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["medimg"]
        self.step_losses = list(state["step_losses"])
        self.step_seconds = list(state.get("step_seconds", []))
        self.clock, self.resumed_at = dict(state["clock"]), list(state["resumed_at"]) + [len(state["step_losses"])]
        if len(self.step_seconds) == len(self.step_losses):  # every step timed: pauses taken out of the clock
            from medimg.ssl.progress import train_seconds

            self.clock["train_seconds"], self.clock["paused_seconds"] = train_seconds(self.step_seconds)
        self.optimizer_reset_at = list(state.get("optimizer_reset_at", [])) + (
            [len(state["step_losses"])] if state.get("carry") else [])
        _set_rng_state(state["rng"])


def _rng_state() -> dict:
    """Python's, numpy's and torch's generator states in types ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, python_gauss = random.getstate()
    return dict(python=[version, list(words), python_gauss], numpy=[kind, keys.tolist(), pos, has_gauss, gauss],
                torch=torch.get_rng_state())


def _set_rng_state(state: dict) -> None:
    version, words, python_gauss = state["python"]
    random.setstate((version, tuple(words), python_gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])


class SimCLR(TwoViews):
    """SimCLR: lightly's ``SimCLRProjectionHead`` (width -> width -> ``projection_dim``) into NT-Xent at
    ``temperature``; with DDP, negatives come from every process's batch, as in SimCLR."""

    @staticmethod
    def head_and_loss(width, config):
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        return (SimCLRProjectionHead(input_dim=width, hidden_dim=width, output_dim=config.projection_dim),
                NTXentLoss(temperature=config.temperature, gather_distributed=True))


class VICReg(TwoViews):
    """VICReg: lightly's ``VICRegProjectionHead`` (width -> 2048 -> 2048, two layers, as lightly's example) into
    ``VICRegLoss`` (invariance 25, variance 25, covariance 1); ``projection_dim`` and ``temperature`` are unused."""

    @staticmethod
    def head_and_loss(width, config):
        from lightly.loss import VICRegLoss
        from lightly.models.modules.heads import VICRegProjectionHead

        return (VICRegProjectionHead(input_dim=width, hidden_dim=2048, output_dim=2048, num_layers=2),
                VICRegLoss(gather_distributed=True))


def module_of(method) -> type[TwoViews]:
    """The Lightning module class of ``method`` (a row of :data:`medimg.ssl.methods.METHODS`): its ``module_name``
    here."""
    module = globals().get(method.module_name)
    if not (isinstance(module, type) and issubclass(module, TwoViews)):
        raise TypeError(f"medimg.ssl.modules has no module {method.module_name!r} for method {method.key!r}")
    return module
