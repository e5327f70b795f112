"""The fine-tuning LightningModule (:class:`Classifier`) and prediction with a trained model.

What trains in each epoch and which batch-norm layers update their statistics follow the run's recipe, a row of
:data:`medimg.finetune.recipes.RECIPES`; the backbone learns at ``lr * backbone_lr_scale``, the head at ``lr``.
"""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from medimg.finetune.config import FinetuneConfig
from medimg.finetune.recipes import recipe_of
from medimg.data.transforms import mix_seed
from medimg.models.backbones import classifier_parameters, parameter_groups


class Classifier(pl.LightningModule):
    """A timm model trained with cross-entropy under one of the recipes."""

    def __init__(self, model: nn.Module, *, config: FinetuneConfig, max_epochs: int, stage: str,
                 channels_last: bool):
        super().__init__()
        self.model, self.config, self.max_epochs, self.stage = model, config, max_epochs, stage
        self.channels_last = channels_last
        self.groups = parameter_groups(model)
        self.recipe = recipe_of(config.recipe)
        self.history: list[dict] = []
        self._sums = np.zeros(3)  # this epoch's training loss * n, correct, n
        self._val = np.zeros(3)  # the same for validation

    # which parameters train in a given epoch
    def trainable(self, epoch: int) -> set[str]:
        return self.recipe.trainable(epoch, set(classifier_parameters(self.model)), self.groups[:-1],
                                     head_epochs=self.config.head_epochs, unfreeze_stages=self.config.unfreeze_stages)

    def on_train_epoch_start(self):
        torch.manual_seed(mix_seed(self.config.seed, self.current_epoch, 1))  # anything not seeded per item
        trainable = self.trainable(self.current_epoch)
        for name, p in self.model.named_parameters():
            p.requires_grad_(name in trainable)
        # wholly frozen norm layers keep their statistics (eval mode); a recipe may keep every layer's (LP-FT)
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train(self.recipe.norm_layer_trains(any(p.requires_grad for p in module.parameters())))
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
