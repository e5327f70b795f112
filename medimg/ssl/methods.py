"""The self-supervised methods, one table (:data:`METHODS`): a method is a setting of the pretraining stage, not a
code path. The recipe of each, and where its parts are:

=========  ===========================================  ==================  =====================================
method     projection head and loss (here)              views               optimiser and schedule
=========  ===========================================  ==================  =====================================
simclr     lightly's ``SimCLRProjectionHead``,          :mod:`.views`       AdamW, linear warm-up over 10% of the
           ``NTXentLoss`` (temperature 0.1)             (lightly's          steps then cosine to 0, per step
vicreg     lightly's ``VICRegProjectionHead``,          ``SimCLRTransform``  (:data:`~.modules.SCHEDULE`)
           ``VICRegLoss``                               settings)
=========  ===========================================  ==================  =====================================

The numbers (batch 128, lr 1e-3, temperature, projection size, crop scale, jitter) are the fields of
:class:`~medimg.ssl.config.SSLConfig`, each with its default and help.

Each entry builds the Lightning module that trains a backbone on two views of each pooled image; the methods
differ only in their projection head and loss (:meth:`medimg.ssl.modules.TwoViews.head_and_loss`). SimCLR (Chen et al. 2020) with
lightly's ``SimCLRProjectionHead`` and ``NTXentLoss`` is the paper's method; VICReg (Bardes et al. 2022) with
lightly's ``VICRegProjectionHead`` and ``VICRegLoss`` needs no negatives, so no large batch. Another method from
lightly (BYOL, DINO) joins by a row here and its module in :mod:`medimg.ssl.modules`. The table is light (no torch):
the pretraining record (:class:`~medimg.ssl.config.SSLConfig`) takes its method names from it, and a module is
imported only when a run is built (:func:`medimg.ssl.modules.module_of`).

"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One self-supervised method: ``key`` as records and checkpoint names hold it, ``name`` as the book shows it,
    its ``loss`` and ``paper``, and ``module_name``, the class in :mod:`medimg.ssl.modules` that trains it."""

    key: str
    name: str
    loss: str
    paper: str
    module_name: str


METHODS: dict[str, Method] = {m.key: m for m in (
    Method("simclr", "SimCLR", "NT-Xent", "Chen et al. 2020, SimCLR", "SimCLR"),
    Method("vicreg", "VICReg", "VICReg", "Bardes et al. 2022, VICReg", "VICReg"),
)}
