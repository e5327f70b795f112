"""Which arms each kind of chapter runs: the summary's main arms, each ablation's, double fine-tuning's, and every
arm the book rests on; and what their fine-tuning budget was, in a sentence.

Every function returns :class:`~medimg.study.arm.Arm` records made by :func:`~medimg.study.arm.profile_arm`, so
the study driver and a chapter's kernel agree on what a chapter runs.
"""
from __future__ import annotations

from medimg.errors import MedimgError
from medimg.finetune.arms import arm_kind
from medimg.study.arm import Arm, profile_arm
from medimg.study.profiles import as_profile, available, targets

# ablation -> the setting that tells its arms apart (compare_runs' ``by``)
# ablations whose arms start from another network than the main arms (a SimCLR checkpoint after ImageNet, another
# architecture): their comparison chapters read the probes too; the others change fine-tuning only
INITIALISATION_ABLATIONS = ("imagenet_then_simclr", "architecture")
ABLATION_BY = {"augmentation": "method,augment", "balance": "method,balance", "imagenet_then_simclr": "method",
               "double": "method,double", "architecture": "method,arch"}


def main_arms(p: dict, datasets: list[str] | None = None, **overrides) -> list[Arm]:
    """Every target (or ``datasets``) with every method of the profile: what the summary answers from."""
    names = datasets if datasets is not None else [d for _, d in targets(p)]
    return [profile_arm(p, d, m, **overrides) for d in names for m in p["methods"]]


def book_arms(p: dict, datasets: list[str] | None = None) -> list[tuple[str, Arm]]:
    """Every fine-tuning arm a profile's book rests on, each once, with the part of the book it first appears in:
    ``("main", arm)`` for :func:`main_arms`, then ``(ablation, arm)`` for each ablation's arms not already listed
    (an ablation's arm without its setting is a main arm). ``datasets``: those here (default: every target)."""
    out: list[tuple[str, Arm]] = [("main", a) for a in main_arms(p, datasets)]
    for ablation in p.get("ablations", {}):
        for arm in ablation_arms(p, ablation, datasets):
            if all(arm != known for _, known in out):
                out.append((ablation, arm))
    return out


def ablation_arms(p: dict, ablation: str, datasets: list[str] | None = None, *, every_dataset: bool = False,
                  **overrides) -> list[Arm]:
    """The arms one ablation of the profile compares (each with and without its setting, or TL+SSL beside the
    arms it combines), on its targets that are among ``datasets`` (default: all of them)."""
    spec = p.get("ablations", {}).get(ablation)
    if ablation not in ABLATION_BY:
        raise MedimgError(f"unknown ablation {ablation!r}: choose one of {', '.join(ABLATION_BY)}")
    if not spec:
        raise MedimgError(f"profile {p['name']!r} has no {ablation} ablation: add it under 'ablations' in study.yml")
    if ablation == "double":  # only where the intermediate dataset is here
        return [a for group in double_groups(p, datasets if datasets is not None else [d for _, d in targets(p)],
                                             every_dataset=every_dataset, **overrides) for a in group]
    keep = (lambda d: True) if datasets is None else (lambda d: d in datasets)
    variant = {"augmentation": {"augment": True}, "balance": {"balance": spec.get("mode", "down")}}.get(ablation)
    if ablation == "architecture":
        variant = architecture_variant(spec)
    variants = ({}, variant) if variant else ({},)
    return [profile_arm(p, d, m, **v, **overrides) for d in spec["targets"] if keep(d) for m in spec["methods"]
            for v in variants]


def architecture_variant(spec: dict) -> dict:
    """The architecture ablation's other network: its ``arch`` and, for the TL arm, its ImageNet ``tl_weights``
    (``{arch: tf_efficientnet_lite0, tl_weights: efficientnet-lite0}`` in study.yml)."""
    if not spec.get("arch"):
        raise MedimgError("the architecture ablation needs an 'arch' (and its 'tl_weights'): e.g. "
                          "{targets: [...], methods: [tl, ssl, scratch], arch: tf_efficientnet_lite0, "
                          "tl_weights: efficientnet-lite0}")
    return dict(arch=spec["arch"], **({"tl_weights": spec["tl_weights"]} if spec.get("tl_weights") else {}))


def double_arms(p: dict, spec: dict, **overrides) -> list[Arm]:
    """One double fine-tuning target's arms: each method once directly and once after its intermediate dataset."""
    stage1 = {"intermediate": spec["intermediate"], **spec.get("finetune", {})}  # stage 1's own settings
    return [profile_arm(p, spec["target"], m, **{**v, **overrides}) for m in spec["methods"]
            for v in ({}, stage1)]


def comparison_arms(profile: str | dict, *, datasets: list[str] | str | None = None,
                    methods: list[str] | str | None = None, ablation: str | None = None,
                    **overrides) -> tuple[list[Arm], str]:
    """The arms a comparison chapter compares and the setting that tells them apart.

    Without ``ablation``: every dataset of ``datasets`` with every method of ``methods`` (default: the
    profile's targets and methods). With it: that ablation's arms (on ``datasets`` only, if given).
    Lists may be given as text, ``"busi_256,breastmnist"`` (papermill's ``-p datasets busi_256``);
    ``overrides`` (``seeds``, ``size``, ``epochs``, ...) apply to every arm.
    """
    p = as_profile(profile)
    datasets, methods = as_names(datasets), as_names(methods)
    if ablation:
        return ablation_arms(p, ablation, datasets, **overrides), ABLATION_BY[ablation]
    names = datasets if datasets is not None else [d for _, d in targets(p)]
    return [profile_arm(p, d, m, **overrides) for d in names for m in (methods or p["methods"])], "method"


def as_names(value: list[str] | str | None) -> list[str] | None:
    """A list of names as a person types it: a list, or text separated by commas or spaces."""
    return value.replace(",", " ").split() if isinstance(value, str) else value


def double_groups(p: dict, present: list[str], *, every_dataset: bool = False, **overrides) -> list[list[Arm]]:
    """The double fine-tuning specs whose target is among ``present`` and whose intermediate is here (or
    ``every_dataset``: whether or not it is)."""
    return [double_arms(p, s, **overrides) for s in p.get("ablations", {}).get("double", [])
            if s["target"] in present and (every_dataset or available(s["intermediate"]))]


def training_budget(arms: list[Arm]) -> str:
    """What every fine-tuning run of ``arms`` was given, in a sentence's words, e.g. ``"at 64 px with the lp-ft
    recipe for 5 epochs (lr 3e-05, batch 32), on the whole training split (pneumoniamnist: at most 1000
    images)"``, saying so when scratch trains with the pretrained arms' recipe. A setting that differs between arms
    lists its values."""
    configs = [a.finetune_config(a.seeds[0], weights="checkpoint" if a.uses_ssl else None) for a in arms]

    def values(key):
        return " or ".join(str(v) for v in sorted({getattr(c, key) for c in configs}, key=str))

    caps = {c.dataset: c.max_train_images for c in configs if c.max_train_images}
    capped = ", ".join(f"{d}: at most {n} images" for d, n in sorted(caps.items()))
    scratch = {c.recipe for c in configs if arm_kind(c.method).random}
    same = scratch and scratch == {c.recipe for c in configs if not arm_kind(c.method).random}
    epochs = values("epochs")
    return (f"at {values('size')} px with the {values('recipe')} recipe for {epochs} epoch{'' if epochs == '1' else 's'} "
            f"(lr {values('lr')}, batch {values('batch_size')}), on the whole training split"
            + (f" ({capped})" if capped else "")
            + ("; the scratch arm gets the same recipe as the pretrained ones, so it shows what random initialisation "
               "gives under this budget, not what long training from scratch can reach" if same else ""))
