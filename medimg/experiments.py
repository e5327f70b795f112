"""The study's runs, found or made: one arm of one dataset over its seeds, and the SimCLR checkpoints they need.

A run directory is named by a hash of its config, so asking for the same run twice finds the
finished one instead of training again; an interrupted one is resumed. Paths in the study are
relative to the study root (the folder holding ``study.yml``), so a committed result set reads
the same on any machine.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .data.registry import REGISTRY
from .errors import MedimgError
from .runs import FINISHED_MARKER, run_name

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


def config_key(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def ssl_pool(target: str, candidates: list[str]) -> list[str]:
    """The SimCLR pool for ``target``: candidates of its modality sharing no source images with it."""
    spec = REGISTRY[target]
    return [c for c in candidates if REGISTRY[c].modality == spec.modality
            and not any(a.overlaps(b) for a in REGISTRY[c].lineage for b in spec.lineage)]


def ensure_ssl_checkpoint(target: str, method: str, pool: list[str], ssl: dict, results: Path, settings) -> Path:
    """The SimCLR checkpoint of the ``ssl`` (random init) or ``tl+ssl`` (ImageNet init) arm, pretrained if missing.

    With ``settings=None`` only its path is returned: finished runs need no checkpoint, so a study
    read back from committed results (checkpoints are not committed) never pretrains again.

    Named by the pool and settings, not the target: targets with the same pool share it. The lineage
    check against ``target`` runs when it is made; the pool excludes every target's overlaps anyway.
    """
    from .configs import SSLConfig
    from .ssl import pretrain_ssl

    config = SSLConfig(datasets=tuple(pool), target=target, init="imagenet" if method == "tl+ssl" else "random", **ssl)
    key = config_key({k: v for k, v in config.__dict__.items() if k != "target"})
    path = results / "ssl" / f"simclr-{config.init}-{key}.safetensors"
    if settings is not None and not path.is_file():
        pretrain_ssl(config, path, trainer=settings)
    return path


def ensure_arm(dataset: str, method: str, seeds: list[int], finetune: dict, *, results_dir: str,
               ssl: dict | None = None, ssl_candidates: list[str] = (), tl_weights: str = "auto",
               trainer: dict | None = None) -> list[Path]:
    """Run directories of ``dataset`` x ``method`` for every seed, training only what is not finished."""
    from .configs import FinetuneConfig
    from .train import finetune as run_finetune
    from .configs import TrainerSettings

    results = study_root() / results_dir
    settings = TrainerSettings(**(trainer or {}))
    ssl_arm = method in ("ssl", "tl+ssl")
    weights = tl_weights if method == "tl" else None
    if ssl_arm:  # the path only: the checkpoint is made when a run needs it
        weights = arm_ssl_checkpoint(dataset=dataset, method=method, ssl=ssl, ssl_candidates=ssl_candidates,
                                     results_dir=results_dir, trainer=trainer, create=False)
    out = []
    for seed in seeds:
        config = FinetuneConfig(dataset=dataset, method=method, weights=None if weights is None else str(weights),
                                seed=seed, **finetune)
        run_dir = results / "runs" / dataset / method.replace("+", "_") / run_name(config, settings)
        if not (run_dir / FINISHED_MARKER).is_file():
            if ssl_arm:
                arm_ssl_checkpoint(dataset=dataset, method=method, ssl=ssl, ssl_candidates=ssl_candidates,
                                   results_dir=results_dir, trainer=trainer)
            run_finetune(config, run_dir, settings=settings, resume=(run_dir / "config.json").is_file())
        out.append(run_dir)
    return out


def arm_ssl_checkpoint(*, dataset: str, method: str, ssl: dict | None, ssl_candidates=(), results_dir: str,
                       trainer: dict | None = None, create: bool = True, **_) -> Path:
    """The SimCLR checkpoint an ``ssl`` or ``tl+ssl`` arm (a study chapter's ``arm``) starts from (made if missing)."""
    from .configs import TrainerSettings

    if not ssl:
        raise MedimgError(f"the {method} arm needs SimCLR settings: give the profile an 'ssl' section")
    pool = ssl_pool(dataset, list(ssl_candidates))
    if not pool:
        raise MedimgError(f"no SimCLR data for {dataset}: every candidate shares images with it; add another "
                          f"dataset of its modality to the profile's ssl_candidates")
    return ensure_ssl_checkpoint(dataset, method, pool, ssl, study_root() / results_dir,
                                 TrainerSettings(**(trainer or {})) if create else None)
