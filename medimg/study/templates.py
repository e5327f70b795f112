"""The templates table: one row per notebook template of ``notebooks/`` that the study executes, saying everything
the study asks of a template: the parameters its parameters cell takes (and the record that checks them), what a
chapter of it provides to others and waits for, what it costs, its cluster resources' key in ``study.yml``, and
whether it closes the book (it reads every chapter before it). :mod:`~medimg.study.plan`,
:mod:`~medimg.study.cost`, :mod:`~medimg.study.parameters` and the executors read it; no template's name is
compared anywhere else. Adding a template is a row here, its notebook, and the code that plans its chapters.

What a chapter waits for is said with keys: a chapter *provides* keys (a dataset card ``("card", DATASET)``, a
pretraining chapter ``("pretraining", POOL)``, a dataset's comparison ``("comparison", DATASET)``) and *waits for*
keys or chapter paths; :func:`~medimg.study.plan.dependencies` joins them. A key nobody provides (a dataset with no
card in this book) is no wait.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from medimg.study.chapter import Chapter
from medimg.study.train_sizes import FORWARD_SHARE, TrainImages

# the settings of one arm a fine-tuning chapter may change from its profile (an ablation's variant): what
# medimg.study.plan passes, what the finetune template takes and hands to profile_arm
ARM_PARAMETERS = ("seeds", "size", "epochs", "arch", "tl_weights", "augment", "balance", "intermediate",
                  "intermediate_epochs", "intermediate_max_train_images")


def _nothing(chapter: Chapter, parent: Chapter | None) -> tuple:
    return ()


@dataclass(frozen=True)
class Template:
    """One template. ``parameters``: its parameters cell's names in order (each chapter also takes
    :data:`~medimg.study.parameters.CHAPTER_PARAMETERS`); ``record``: the record whose fields check them (``"data"``:
    :class:`~medimg.data.pipeline.DataConfig`, ``"finetune"``: :class:`~medimg.finetune.config.FinetuneConfig`);
    ``provides(chapter, parent)`` and ``waits_for(chapter, parent)``: keys (and, for ``waits_for``, chapter paths)
    with ``parent`` the chapter it is a section of, or None; ``closes``: 0, or the place among the closing chapters
    (each waits for every chapter that closes less); ``cost(chapter, size_of)``: what it runs
    (:func:`~medimg.study.cost.chapter_cost`'s fields, ``size_of(dataset) -> TrainImages``), None: nothing that
    counts; ``resources``: its key under the profile's ``slurm.by_template`` (default: its name)."""

    name: str
    parameters: tuple[str, ...]
    record: str = "finetune"
    provides: Callable[[Chapter, Chapter | None], tuple] = _nothing
    waits_for: Callable[[Chapter, Chapter | None], tuple] = _nothing
    closes: int = 0
    cost: Callable[[Chapter, Callable[[str], TrainImages]], dict] | None = None
    resources: str = ""
    plan: Callable[[dict, str], list[Chapter]] | None = None
    place: str = "start"

    def __post_init__(self):
        if self.place not in ("start", "end"):
            raise ValueError(f"template {self.name}: place is 'start' or 'end', not {self.place!r}")

    @property
    def resources_key(self) -> str:
        return self.resources or self.name


def _arm(chapter: Chapter):
    from medimg.study.arm import Arm

    return Arm.from_dict(chapter.resolved["arm"])


def pool_key(arm) -> tuple:
    """What makes two arms' self-supervised checkpoints one: the initialisation, the settings and the pool."""
    from medimg.study.profiles import ssl_pool

    if arm.ssl_checkpoint:  # the pretraining stage's: made before the study, by no chapter
        return arm.method, arm.ssl_checkpoint
    return arm.method, tuple(sorted(arm.ssl.items(), key=str)), tuple(ssl_pool(arm.dataset, list(arm.ssl_candidates)))


def _finetune_waits(chapter: Chapter, parent: Chapter | None) -> tuple:
    """Its dataset's card (which prepares the data) and, for an arm that starts from a self-supervised checkpoint,
    the chapter that pretrains it."""
    arm = _arm(chapter)
    return (("card", arm.dataset),) + ((("pretraining", pool_key(arm)),) if arm.uses_ssl else ())


def _comparison_provides(chapter: Chapter, parent: Chapter | None) -> tuple:
    """A dataset's comparison (a section of its card) extracts the probe features of its arms."""
    return (("comparison", chapter.resolved["arms"][0]["dataset"]),) if parent else ()


def _comparison_waits(chapter: Chapter, parent: Chapter | None) -> tuple:
    """A dataset's comparison waits for its card and its arms (the card's other sections); an ablation for its own
    new arms (its sections) and the comparison of every dataset whose arms it reads."""
    if parent:
        return (parent.path, *(s.path for s in parent.sections if s.path != chapter.path))
    return (*(s.path for s in chapter.sections), *(("comparison", a["dataset"]) for a in chapter.resolved["arms"]))


def _pretraining_cost(chapter: Chapter, size_of) -> dict:
    from medimg.ssl.methods import METHODS
    from medimg.study.profiles import ssl_pool

    arm = _arm(chapter)
    config = arm.ssl_config(ssl_pool(arm.dataset, list(arm.ssl_candidates)))
    counts = [size_of(d) for d in config.datasets]
    known = None if any(c.n is None for c in counts) else sum(c.n for c in counts)
    if known is not None and config.max_images:
        known = min(known, config.max_images)
    estimate = any(c.estimate for c in counts)
    return dict(checkpoints=1, network=f"{METHODS[config.method].name} {config.arch} {config.size} px",
                epochs=config.epochs, images=str(TrainImages(known, estimate)),
                passes=None if known is None else 2.0 * known * config.epochs)


def _finetune_cost(chapter: Chapter, size_of) -> dict:
    arm = _arm(chapter)
    config = arm.finetune_config(arm.seeds[0], weights="checkpoint" if arm.uses_ssl else None)
    own = size_of(config.dataset)
    n = own.n if own.n is None or not config.max_train_images else min(own.n, config.max_train_images)
    per_seed = None if n is None else float(n * config.epochs)
    if config.intermediate and per_seed is not None:
        first = size_of(config.intermediate)
        m = first.n if first.n is None or not config.intermediate_max_train_images else min(
            first.n, config.intermediate_max_train_images)
        per_seed = None if m is None else per_seed + m * (config.intermediate_epochs or config.epochs)
    return dict(runs=len(arm.seeds), network=f"{config.arch} {config.size} px", epochs=config.epochs,
                images=str(TrainImages(n, own.estimate)), passes=None if per_seed is None else per_seed * len(arm.seeds))


def _comparison_cost(chapter: Chapter, size_of) -> dict:
    """Probe features of every split (train is 0.7 of them) for each arm, once: forward passes."""
    from medimg.data.splits import DEFAULT_RATIOS

    counts = [size_of(a["dataset"]) for a in chapter.resolved["arms"]]
    if any(c.n is None for c in counts):
        return dict(passes=None)
    return dict(network="probe features", passes=sum(c.n / DEFAULT_RATIOS[0] for c in counts) * FORWARD_SHARE)


def _plan_workshop(p: dict, book: str) -> list[Chapter]:
    """The workshop chapter, first in the book, for a profile with a ``workshop`` section (:mod:`medimg.study.workshop`):
    its arms are resolved, so a change of the section makes the chapter stale."""
    from medimg.study.workshop import workshop_arms

    if not p.get("workshop"):
        return []
    arms = workshop_arms(p)
    return [Chapter(f"{book}/workshop.ipynb", "workshop", "Workshop: transfer learning against training from scratch",
                    dict(profile=p["name"]), dict(arms=[a.to_dict() for a in arms]), part="Workshop")]


def _plan_budget(p: dict, book: str) -> list[Chapter]:
    """The chapter that reads the pretraining stage's committed learning curves (profiles with a ``pretraining``
    section): it trains nothing, so it waits for no other chapter."""
    from medimg.study.pretraining import pretraining_runs

    if not p.get("pretraining"):
        return []
    # the finished checkpoints are part of what it shows: one that lands later makes the chapter stale
    finished = [r.path.name for r in pretraining_runs(p) if r.path.is_file()]
    return [Chapter(f"{book}/ssl/budget.ipynb", "ssl_budget", "How much pretraining does self-supervision need?",
                    dict(profile=p["name"]), dict(pretraining=p["pretraining"], finished=finished),
                    part="Pretraining")]


TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template("workshop", ("profile", "dataset", "seeds", "size", "epochs"), plan=_plan_workshop,
             waits_for=lambda c, parent: (("card", c.resolved["arms"][0]["dataset"]),)),
    Template("ssl_budget", ("profile",), plan=_plan_budget),
    Template("dataset_card", ("profile", "dataset", "size"), record="data",
             provides=lambda c, parent: (("card", c.parameters["dataset"]),)),
    Template("ssl_pretraining", ("profile", "dataset", "method", "arch"),
             provides=lambda c, parent: (("pretraining", pool_key(_arm(c))),), cost=_pretraining_cost),
    Template("finetune", ("profile", "dataset", "method", *ARM_PARAMETERS), waits_for=_finetune_waits,
             cost=_finetune_cost),
    Template("comparison", ("profile", "datasets", "methods", "ablation", "seeds", "size", "epochs"),
             provides=_comparison_provides, waits_for=_comparison_waits, cost=_comparison_cost),
    Template("summary", ("profile",), closes=1),
    Template("reproducibility", ("profile",), closes=2),
)}
