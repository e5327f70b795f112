"""The table of protocols: the ways the book reads an arm's network, in one place.

A *protocol* is how a network is scored: fine-tuned end to end (``fine-tuning``), or frozen and read by one of the
two probes of MedMNIST+ (Doerrich et al. 2025), a linear probe (``linear``) or k-nearest neighbours (``knn``).
Everything that differs between them — the name the book gives it, the probe it fits
(:mod:`medimg.probe.linear_knn`) and whether that probe takes the run's seed, whether the learning curve records its
log loss, which probe the book reads first, and how a figure draws it — is a field of its :class:`Protocol` in
:data:`PROTOCOLS`. Code asks this table (``protocol_of(name).display``); no other module compares protocol names.
A new probe is one more row.
"""
from __future__ import annotations

from dataclasses import dataclass

from medimg.errors import MedimgError
from medimg.probe.linear_knn import KNNProbe, LinearProbe


@dataclass(frozen=True)
class Protocol:
    """One protocol: ``name`` as runs, probe runs and learning curves record it; ``display`` as the book names it
    (tables, sentences, legends); ``probe`` the probe class fitted on frozen features (None: the network is
    fine-tuned, no probe); ``seeded`` whether that probe takes the run's seed as its ``random_state``; ``log_loss``
    whether the learning curve records its validation log loss at the chosen setting (the loss that chose it);
    ``lead`` whether it is the probe the book reads first (the crossing table, the checkpoint an SSL arm starts
    from, what fine-tuning should keep); ``line_style`` and ``colour`` how a learning-curve figure draws it."""

    name: str
    display: str
    probe: type | None
    seeded: bool
    log_loss: bool
    lead: bool
    line_style: str | None
    colour: str | None
    help: str

    @property
    def frozen(self) -> bool:
        """Reads a network's frozen features: with fixed weights (ImageNet, a checkpoint) its seeds are one network,
        no replicates; fine-tuning's seeds always are."""
        return self.probe is not None

    def build(self, *, seed: int = 0, **options):
        """The protocol's probe, not yet fitted: ``options`` (``max_train_images``, ``split_seed``, ``select``, ...)
        and, where it is ``seeded``, ``random_state=seed``. :class:`MedimgError` for a protocol that fits none."""
        if self.probe is None:
            raise MedimgError(f"the {self.name} protocol fits no probe: choose one of "
                              f"{', '.join(p.name for p in probes())}")
        return self.probe(**options, **({"random_state": seed} if self.seeded else {}))


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("fine-tuning", "fine-tuning", None, False, False, False, None, None, "the whole network trained"),
    # C chosen by log loss, so the curve records that loss; its seed is the run's (lbfgs's tie-breaking)
    Protocol("linear", "linear probe", LinearProbe, True, True, True, "-", "tab:blue",
             "logistic regression on standardised frozen features"),
    Protocol("knn", "kNN", KNNProbe, False, False, False, "--", "tab:orange",
             "k-nearest neighbours (cosine, distance-weighted) on frozen features"),
)}


def protocol_of(name: str) -> Protocol:
    """The row of protocol ``name``; a one-line error naming the protocols for an unknown one."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise MedimgError(f"unknown protocol {name!r}: choose one of {', '.join(PROTOCOLS)}") from None


def probes() -> tuple[Protocol, ...]:
    """The protocols that read frozen features, in the table's order (the order tables and figures show them)."""
    return tuple(p for p in PROTOCOLS.values() if p.frozen)


def fine_tuning() -> Protocol:
    """The protocol that trains the whole network (the one without a probe)."""
    return next(p for p in PROTOCOLS.values() if not p.frozen)


def lead_probe() -> Protocol:
    """The probe the book reads first: the crossing table's, the one that picks an SSL arm's checkpoint, the one
    fine-tuning should keep."""
    return next(p for p in PROTOCOLS.values() if p.lead)
