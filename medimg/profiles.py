"""study.yml read: its profiles, the user's own folders it names, and the arms each chapter runs.

The study driver (:mod:`medimg.study`) and every chapter's kernel resolve arms through the same
functions here, so a chapter given only ``profile``, ``dataset`` and ``method`` runs exactly what
the driver planned. Reading the study file needs PyYAML and the records of :mod:`medimg.configs`;
nothing here imports papermill, Lightning or the training code.

A study file may name folders of its own beside the registered datasets::

    datasets:
      my_ct: {path: ../data/ct_kidney, modality: grey}   # path relative to study.yml

Each becomes a registered dataset under its short name (:func:`medimg.data.registry.register_folder`)
for every profile of the file, so it gets a dataset card, arms and a comparison like any other, and
its name is the one every table and figure shows.
"""
from __future__ import annotations

import os
from pathlib import Path

from .configs import Arm
from .data.registry import REGISTRY, get_spec, register_folder
from .errors import MedimgError

STUDY_FILE = "study.yml"
# ablation -> the setting that tells its arms apart (compare_runs' ``by``)
# ablations whose arms start from another network than the main arms (a SimCLR checkpoint after ImageNet, another
# architecture): their comparison chapters read the probes too; the others change fine-tuning only
INITIALISATION_ABLATIONS = ("imagenet_then_simclr", "architecture")
ABLATION_BY = {"augmentation": "method,augment", "balance": "method,balance", "imagenet_then_simclr": "method",
               "double": "method,double", "architecture": "method,arch"}


def study_root(start=None) -> Path:
    """``MEDIMG_STUDY_ROOT``, else the nearest folder at or above ``start`` (default: cwd) with a study.yml."""
    if os.environ.get("MEDIMG_STUDY_ROOT"):
        return Path(os.environ["MEDIMG_STUDY_ROOT"]).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / STUDY_FILE).is_file():
            return folder
    raise MedimgError(f"no {STUDY_FILE} in {here} or above: run from the medimg checkout, or set MEDIMG_STUDY_ROOT")


def read_study(study_file=None) -> dict:
    """The whole study file, its ``datasets`` registered; a one-line error naming the file otherwise."""
    import yaml

    path = Path(study_file) if study_file else study_root() / STUDY_FILE
    try:
        document = yaml.safe_load(path.read_text())
        document["profiles"].items()
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as err:
        raise MedimgError(f"cannot read the profiles of {path} ({err}): fix the file (see the repository's study.yml)")
    register_study_datasets(document.get("datasets") or {}, path)
    return document


def register_study_datasets(datasets: dict, study_file: Path) -> None:
    """Register each ``name: {path, modality}`` of a study file (paths relative to the file's folder)."""
    if not isinstance(datasets, dict):
        raise MedimgError(f"{study_file}: 'datasets' must map short names to {{path: FOLDER, modality: grey|colour}}")
    for name, entry in datasets.items():
        if not isinstance(entry, dict) or not entry.get("path") or entry.get("modality") not in ("grey", "colour"):
            raise MedimgError(f"{study_file}: dataset {name!r} needs a path and a modality, e.g. "
                              f"{name}: {{path: ../data/{name}, modality: grey}}")
        path = (study_file.parent / os.path.expanduser(str(entry["path"]))).resolve()
        register_folder(str(name), path, entry["modality"], description=entry.get("description"),
                        citation=entry.get("citation"), licence=entry.get("licence"), where=str(study_file))


def register_study_datasets_here() -> None:
    """Register the folders of the study file at or above the working directory, if there is one (the CLI's
    start: ``medimg finetune --dataset my_ct`` and ``medimg gradcam`` of its runs then find ``my_ct``)."""
    try:
        root = study_root()
    except MedimgError:
        return
    read_study(root / STUDY_FILE)


def load_profile(profile: str, study_file=None) -> dict:
    """One profile of the study file (with ``name`` added); its folders registered."""
    path = Path(study_file) if study_file else study_root() / STUDY_FILE
    profiles = read_study(path)["profiles"]
    if profile not in profiles:
        raise MedimgError(f"{path} has no profile {profile!r}: choose one of {', '.join(profiles)}")
    return dict(profiles[profile], name=profile)


def as_profile(profile: str | dict) -> dict:
    return load_profile(profile) if isinstance(profile, str) else profile


def ssl_pool(target: str, candidates: list[str]) -> list[str]:
    """The SimCLR pool for ``target``: candidates of its modality sharing no source images with it."""
    spec = get_spec(target)
    return [c for c in candidates if REGISTRY[c].modality == spec.modality
            and not any(a.overlaps(b) for a in REGISTRY[c].lineage for b in spec.lineage)]


def available(dataset: str) -> bool:
    """Here already, or a MedMNIST set on a machine that may download it."""
    from .data.summary import dataset_table
    from .paths import offline

    if next(r["available"] for r in dataset_table() if r["name"] == dataset) != "missing":
        return True
    return get_spec(dataset).kind == "medmnist" and not offline()


# --- the arms of each kind of chapter ----------------------------------------------------------

def targets(p: dict) -> list[tuple[str, str]]:
    """(modality, dataset) of every target the profile names, grey first."""
    return [(m, d) for m in ("grey", "colour") for d in p["targets"].get(m, [])]


def main_arms(p: dict, datasets: list[str] | None = None, **overrides) -> list[Arm]:
    """Every target (or ``datasets``) with every method of the profile: what the summary answers from."""
    names = datasets if datasets is not None else [d for _, d in targets(p)]
    return [Arm.from_profile(p, d, m, **overrides) for d in names for m in p["methods"]]


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
    return [Arm.from_profile(p, d, m, **v, **overrides) for d in spec["targets"] if keep(d) for m in spec["methods"]
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
    return [Arm.from_profile(p, spec["target"], m, **{**v, **overrides}) for m in spec["methods"]
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
    return [Arm.from_profile(p, d, m, **overrides) for d in names for m in (methods or p["methods"])], "method"


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
    scratch = {c.recipe for c in configs if c.method == "scratch"}
    same = scratch and scratch == {c.recipe for c in configs if c.method != "scratch"}
    epochs = values("epochs")
    return (f"at {values('size')} px with the {values('recipe')} recipe for {epochs} epoch{'' if epochs == '1' else 's'} "
            f"(lr {values('lr')}, batch {values('batch_size')}), on the whole training split"
            + (f" ({capped})" if capped else "")
            + ("; the scratch arm gets the same recipe as the pretrained ones, so it shows what random initialisation "
               "gives under this budget, not what long training from scratch can reach" if same else ""))
