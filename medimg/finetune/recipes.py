"""The table of fine-tuning recipes: what trains in each epoch, batch-norm statistics, how the head starts, when
training stops and which weights are kept — one record per recipe, read by the classifier and the training loop.

========  =========================================  ==============  =============  ==========  =====
recipe    trains                                     batch-norm      head starts    stops       keeps
========  =========================================  ==============  =============  ==========  =====
paper     the head for ``head_epochs``, then all     where it trains random         early       best
linear    the head only (a linear probe by SGD)      where it trains random         early       best
partial   the head and the last ``unfreeze_stages``  where it trains random         early       best
full      everything                                 where it trains random         early       best
lp-ft     everything                                 kept (eval)     linear probe   fixed       last
========  =========================================  ==============  =============  ==========  =====

*Batch-norm "where it trains"*: a norm layer whose parameters are all frozen keeps its running statistics (eval
mode); *kept*: every norm layer keeps them, since LP-FT's head was fitted on features made with them and a small
medical batch's statistics would move those features away from it at the first step. *Early*: early stopping on
the validation loss (``patience``), keeping the weights of the lowest validation loss; *fixed*: all ``epochs``,
keeping the last (Kumar et al., "Fine-tuning can distort pretrained features and underperform
out-of-distribution", ICLR 2022). The backbone learns at ``lr * backbone_lr_scale``, the head at ``lr``; the
recipe ``auto`` is the arm's own (:data:`medimg.finetune.arms.ARMS`).
"""
from __future__ import annotations

from dataclasses import dataclass

from medimg.errors import MedimgError


@dataclass(frozen=True)
class Recipe:
    """One recipe. ``trains``: ``head``, ``head_then_all`` (after ``head_epochs``), ``head_and_last_stages``
    (``unfreeze_stages`` of the backbone) or ``all``; ``keep_batch_norm``: every norm layer in eval mode;
    ``head_start``: ``random`` or ``linear_probe``; ``early_stopping``: stop on the validation loss and keep the best
    weights (else a fixed schedule keeping the last)."""

    name: str
    trains: str
    keep_batch_norm: bool
    head_start: str
    early_stopping: bool
    help: str

    @property
    def keeps(self) -> str:
        """Which weights the run keeps: ``best`` (lowest validation loss) or ``last``."""
        return "best" if self.early_stopping else "last"

    @property
    def head_from_probe(self) -> bool:
        """The new head starts as the linear probe of the frozen features."""
        return self.head_start == "linear_probe"

    def trainable(self, epoch: int, head: set[str], stages: list[list[str]], *, head_epochs: int,
                  unfreeze_stages: int) -> set[str]:
        """The parameter names that train in ``epoch`` (0-based): ``head`` the classifier's, ``stages`` the backbone's
        in timm's coarse stages from input to output."""
        body = {n for g in stages for n in g}
        if self.trains == "all" or (self.trains == "head_then_all" and epoch >= head_epochs):
            return head | body
        if self.trains == "head_and_last_stages":
            return head | {n for g in stages[-unfreeze_stages:] for n in g}
        return set(head)

    def norm_layer_trains(self, any_parameter_trains: bool) -> bool:
        """Whether a batch-norm layer updates its running statistics (train mode) this epoch."""
        return any_parameter_trains and not self.keep_batch_norm


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("paper", "head_then_all", False, "random", True, "head first, then everything"),
    Recipe("linear", "head", False, "random", True, "the head only"),
    Recipe("partial", "head_and_last_stages", False, "random", True, "the head and the last backbone stages"),
    Recipe("full", "all", False, "random", True, "everything from the start"),
    Recipe("lp-ft", "all", True, "linear_probe", False, "the head starts as the linear probe of the frozen features, "
                                                       "then everything trains on a fixed schedule and the last "
                                                       "weights are kept (Kumar et al. 2022)"),
)}
RECIPE_CHOICES = ("auto", *RECIPES)  # auto: the arm's own recipe


def recipe_of(name: str) -> Recipe:
    """The recipe ``name``; a one-line error naming the recipes for an unknown one."""
    try:
        return RECIPES[name]
    except KeyError:
        raise MedimgError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}") from None
