"""From prepared data to DataLoaders: the training subsample and balance, the model's preprocessing."""
from __future__ import annotations

import numpy as np
from torch.utils.data import DataLoader

from medimg.finetune.config import FinetuneConfig
from medimg.training.trainer import TrainerSettings
from medimg.data import EpochSampler, ImageDataset, Preprocess, class_balance
from medimg.data.balance import stratified_subsample


def training_loaders(data, preprocess: Preprocess, config: FinetuneConfig, settings: TrainerSettings):
    """(train, val, test) DataLoaders of prepared ``data`` and the class-balance plan of the training images.

    The training loader draws the epoch's order from :class:`EpochSampler` (seeded by ``config.seed``),
    after ``max_train_images`` and balancing; validation and test keep record order.
    """
    x_train, y_train, _ = data.part("train")
    keep, plan = training_plan(y_train, config)
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


def training_plan(y_train: np.ndarray, config: FinetuneConfig):
    """The training images a stage uses: (positions kept by ``max_train_images``, or None for all; the
    class-balance plan over the kept labels, whose ``indices`` are what one epoch trains on)."""
    keep = (stratified_subsample(y_train, config.max_train_images, random_state=config.split_seed)
            if config.max_train_images else None)
    return keep, class_balance(y_train if keep is None else y_train[keep], config.balance, random_state=config.seed)
