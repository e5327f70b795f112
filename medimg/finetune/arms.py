"""The table of arms: what each of the study's four starting points is, in one place.

An *arm* is how a network starts before it is fine-tuned on a target: ImageNet weights (``tl``), a
self-supervised checkpoint pretrained from random initialisation (``ssl``) or from ImageNet weights
(``tl+ssl``, Azizi et al. 2021), or random weights (``scratch``). Everything that differs between them —
the weights it starts from, whether it needs a checkpoint and from which initialisation that checkpoint was
pretrained, the default fine-tuning recipe and the backbone's learning-rate scale — is a field of its
:class:`ArmKind` in :data:`ARMS`. Code asks this table (``ARMS[method].needs_checkpoint``); no other module
compares arm names. A new arm is one more row.
"""
from __future__ import annotations

from dataclasses import dataclass

from medimg.errors import MedimgError


@dataclass(frozen=True)
class ArmKind:
    """One arm: ``start`` is ``imagenet``, ``random`` or ``checkpoint``; ``checkpoint_init`` the initialisation its
    self-supervised checkpoint was pretrained from (``random`` or ``imagenet``; None: it takes none); ``recipe`` the
    recipe ``auto`` means for it (:mod:`medimg.finetune.recipes`); ``backbone_lr_scale`` the backbone's learning
    rate as a multiple of the head's when none is given."""

    name: str
    start: str
    checkpoint_init: str | None
    recipe: str
    backbone_lr_scale: float
    help: str

    @property
    def needs_checkpoint(self) -> bool:
        """Starts from a self-supervised checkpoint (``--weights CKPT`` from ``medimg pretrain-ssl``)."""
        return self.checkpoint_init is not None

    @property
    def imagenet(self) -> bool:
        """Starts from ImageNet weights directly (the arm's ``tl_weights``)."""
        return self.start == "imagenet"

    @property
    def random(self) -> bool:
        """Starts from random weights: its networks differ by seed, and it takes no ``--weights``."""
        return self.start == "random"

    @property
    def ssl_only(self) -> bool:
        """Starts from a checkpoint pretrained by self-supervision alone, from random weights (the paper's SSL arm)."""
        return self.needs_checkpoint and self.checkpoint_init == "random"

    @property
    def slug(self) -> str:
        """The arm as a file or folder name: ``tl+ssl`` -> ``tl_ssl``."""
        return self.name.replace("+", "_")


ARMS: dict[str, ArmKind] = {a.name: a for a in (
    ArmKind("tl", "imagenet", None, "paper", 0.1, "ImageNet weights"),
    ArmKind("ssl", "checkpoint", "random", "paper", 0.1, "a self-supervised checkpoint (random init)"),
    ArmKind("tl+ssl", "checkpoint", "imagenet", "paper", 0.1, "a self-supervised checkpoint pretrained from ImageNet"),
    # a random backbone has nothing worth freezing or keeping close to: everything trains at the head's rate
    ArmKind("scratch", "random", None, "full", 1.0, "random initialisation"),
)}
METHODS = tuple(ARMS)  # the arms' names, in the order tables and figures show them


def arm_kind(method: str) -> ArmKind:
    """The row of arm ``method``; a one-line error naming the arms for an unknown one."""
    try:
        return ARMS[method]
    except (KeyError, TypeError):
        raise MedimgError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}") from None


def checkpoint_arms() -> tuple[str, ...]:
    """The arms that start from a self-supervised checkpoint."""
    return tuple(a.name for a in ARMS.values() if a.needs_checkpoint)


def random_init_arm() -> str:
    """The arm whose networks start from random weights (the reference every pretrained start is read against)."""
    return next(a.name for a in ARMS.values() if a.random)


def paper_pair() -> tuple[str, str]:
    """The two arms the paper's claims set against each other: ImageNet transfer and self-supervision alone."""
    return (next(a.name for a in ARMS.values() if a.imagenet), next(a.name for a in ARMS.values() if a.ssl_only))


def method_slug(method: str) -> str:
    """An arm's name as a file or folder name: ``tl+ssl`` -> ``tl_ssl``."""
    return arm_kind(method).slug
