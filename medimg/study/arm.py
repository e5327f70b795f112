"""One arm of the study (:class:`Arm`): a dataset and a starting point, fine-tuned with one set of settings once
per seed, and :func:`profile_arm`, the arm a profile of study.yml defines.

The study driver and every chapter's kernel resolve arms through :func:`profile_arm`, so a chapter given only
``profile``, ``dataset`` and ``method`` runs exactly what the driver planned.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from medimg.data.registry import get_spec
from medimg.errors import MedimgError
from medimg.finetune.arms import arm_kind
from medimg.finetune.config import FinetuneConfig
from medimg.training.trainer import TrainerSettings
from medimg.ssl.config import SSLConfig
from medimg.study.pretraining import arm_checkpoint
from medimg.study.profiles import as_profile, study_root

ARM_SETTINGS = ("seeds", "tl_weights", "results_dir")  # overrides that are the arm's own, not fine-tuning settings
PER_RUN = ("dataset", "method", "weights", "seed")  # FinetuneConfig fields an arm sets for each run itself


@dataclass(frozen=True)
class Arm:
    """One arm of the study: a dataset and an initialisation, fine-tuned with one set of settings once per seed.

    ``finetune`` holds :class:`FinetuneConfig` fields other than dataset, method, weights and seed; ``ssl``
    the :class:`SSLConfig` fields of the SimCLR checkpoint an ``ssl`` or ``tl+ssl`` arm starts from (None
    otherwise), pretrained on ``ssl_candidates`` less those sharing images with the dataset, unless
    ``ssl_checkpoint`` names the profile's pretraining-stage checkpoint it starts from (relative to the study
    root; :func:`medimg.study.pretraining.arm_checkpoint`), which the study never pretrains; ``trainer`` the
    :class:`TrainerSettings`; ``results_dir`` is relative to the study root. ``to_dict`` gives the form the
    study's chapters recorded before they took flat parameters, and ``from_dict`` reads it back.
    """

    dataset: str
    method: str
    seeds: tuple[int, ...]
    finetune: dict = field(default_factory=dict)
    ssl: dict | None = None
    ssl_candidates: tuple[str, ...] = ()
    ssl_checkpoint: str | None = None
    tl_weights: str = "auto"
    results_dir: str = "results"
    trainer: dict = field(default_factory=dict)

    def __post_init__(self):
        arm_kind(self.method)  # a one-line error for an unknown one
        object.__setattr__(self, "seeds", parse_seeds(self.seeds))
        object.__setattr__(self, "ssl_candidates", tuple(self.ssl_candidates))
        unknown = sorted(set(self.finetune) - FINETUNE_SETTINGS)
        if unknown:
            raise MedimgError(f"unknown fine-tuning setting(s) {', '.join(unknown)} for {self.dataset} {self.method}: "
                              f"use FinetuneConfig's fields ({', '.join(sorted(FINETUNE_SETTINGS))})")
        if self.uses_ssl and not (self.ssl or self.ssl_checkpoint):
            raise MedimgError(f"the {self.method} arm needs SimCLR settings: give the profile an 'ssl' section (or a "
                              f"'pretraining' stage whose pools serve {self.dataset})")
        if self.ssl_checkpoint and not self.uses_ssl:
            raise MedimgError(f"the {self.method} arm starts from no self-supervised checkpoint: drop ssl_checkpoint")
        self.finetune_config(self.seeds[0], weights="checkpoint" if self.uses_ssl else None)  # refuse bad settings now
        TrainerSettings(**self.trainer)

    @classmethod
    def from_dict(cls, d: dict) -> "Arm":
        return cls(**d)

    def to_dict(self) -> dict:
        return dict(dataset=self.dataset, method=self.method, seeds=list(self.seeds), finetune=dict(self.finetune),
                    ssl=dict(self.ssl) if self.ssl else None, ssl_candidates=list(self.ssl_candidates),
                    **({"ssl_checkpoint": self.ssl_checkpoint} if self.ssl_checkpoint else {}), tl_weights=self.tl_weights, results_dir=self.results_dir, trainer=dict(self.trainer))

    @property
    def uses_ssl(self) -> bool:
        return arm_kind(self.method).needs_checkpoint

    @property
    def slug(self) -> str:
        return arm_kind(self.method).slug

    def finetune_config(self, seed: int, weights: str | None = None) -> FinetuneConfig:
        """The run of one seed; ``weights`` is the SimCLR checkpoint of an SSL arm (TL arms take ``tl_weights``)."""
        if arm_kind(self.method).imagenet:
            weights = self.tl_weights
        return FinetuneConfig(dataset=self.dataset, method=self.method, weights=weights, seed=seed, **self.finetune)

    def ssl_config(self, pool: list[str]) -> SSLConfig:
        """The SimCLR checkpoint's settings for pool ``pool``; ImageNet init for TL+SSL."""
        return SSLConfig(datasets=tuple(pool), target=self.dataset, init=arm_kind(self.method).checkpoint_init,
                         **self.ssl)

    def settings(self) -> TrainerSettings:
        return TrainerSettings(**self.trainer)


FINETUNE_SETTINGS = {f for f in FinetuneConfig.__dataclass_fields__ if f not in PER_RUN}


def parse_seeds(seeds) -> tuple[int, ...]:
    """Seeds as a person types them: ``[0, 1]``, ``3`` or ``"0,1"`` (papermill's ``-p seeds 0,1``)."""
    if isinstance(seeds, str):
        seeds = [s for s in seeds.replace(",", " ").split()]
    elif isinstance(seeds, int):
        seeds = [seeds]
    try:
        out = tuple(int(s) for s in seeds)
    except (TypeError, ValueError):
        raise MedimgError(f"seeds {seeds!r} are not whole numbers: give a list such as [0, 1] or 0,1") from None
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise MedimgError(f"seeds {seeds!r}: give one or more different non-negative numbers, e.g. 0,1")
    return out


def profile_arm(profile: "str | dict", dataset: str, method: str, **overrides) -> Arm:
    """The arm of ``dataset`` x ``method`` as profile ``profile`` of study.yml (a name, or the loaded
    profile) defines it (its ``finetune`` settings, then ``arch_by_method``, ``size_by_method`` and
    ``finetune_by_dataset``), with ``overrides``: ``seeds`` (a list, one number or ``"0,1"``), ``tl_weights``,
    ``results_dir``, or any fine-tuning setting (``size=64``, ``epochs=3``, ``augment=True``). An override of
    None keeps the profile's value, so a template can pass its parameters through unchanged.
    """
    p = as_profile(profile)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    finetune = dict(p["finetune"])
    for key, by_method in (("arch", p.get("arch_by_method", {})), ("size", p.get("size_by_method", {}))):
        if method in by_method:
            finetune[key] = by_method[method]
    finetune.update(p.get("finetune_by_dataset", {}).get(dataset, {}))  # e.g. a cap for one large dataset
    own = {k: overrides.pop(k) for k in ARM_SETTINGS if k in overrides}
    finetune.update(overrides)
    kind = arm_kind(method)
    ssl_arm = kind.needs_checkpoint
    # the pretraining stage's checkpoint of the arm's network and initialisation, where one serves the dataset
    staged = arm_checkpoint(p, dataset, kind.checkpoint_init,
                            finetune.get("arch", FinetuneConfig.arch)) if ssl_arm else None
    # else a SimCLR checkpoint of its own, pretrained on the network the arm fine-tunes
    ssl = (dict(p["ssl"], arch=finetune.get("arch", p["ssl"].get("arch"))) if ssl_arm and p.get("ssl")
           and not staged else None)
    return Arm(dataset=dataset, method=method, seeds=own.get("seeds", p["seeds"]), finetune=finetune, ssl=ssl,
               ssl_candidates=tuple(p["ssl_candidates"][get_spec(dataset).modality]) if ssl and ssl_arm else (),
               ssl_checkpoint=str(staged.path.relative_to(study_root())) if staged else None,
               tl_weights=own.get("tl_weights", p.get("tl_weights", "auto")),
               results_dir=own.get("results_dir", p["results_dir"]), trainer=dict(p["trainer"]))

