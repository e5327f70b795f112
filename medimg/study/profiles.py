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

from medimg.data.registry import REGISTRY, get_spec, register_folder
from medimg.errors import MedimgError

STUDY_FILE = "study.yml"
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
    from medimg.data.summary import dataset_table
    from medimg.paths import offline

    if next(r["available"] for r in dataset_table() if r["name"] == dataset) != "missing":
        return True
    return get_spec(dataset).kind == "medmnist" and not offline()


def targets(p: dict) -> list[tuple[str, str]]:
    """(modality, dataset) of every target the profile names, grey first."""
    return [(m, d) for m in ("grey", "colour") for d in p["targets"].get(m, [])]
