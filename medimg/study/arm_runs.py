"""The study's runs, found or made: one arm of one dataset over its seeds, and the SimCLR checkpoints they need.

A run directory is named by a hash of its config, so asking for the same run twice finds the
finished one instead of training again; an interrupted one is resumed. Paths in the study are
relative to the study root (the folder holding ``study.yml``), so a committed result set reads
the same on any machine.
"""
from __future__ import annotations

from pathlib import Path

from medimg.finetune.arms import arm_kind, checkpoint_arms, random_init_arm
from medimg.study.arm import Arm
from medimg.errors import MedimgError
from medimg.study.profiles import ssl_pool, study_root
from medimg.finetune.runs import FINISHED_MARKER, run_name


def _each_seed(arm: Arm, folder: str, name, make, *, checkpoint: bool = True) -> list[Path]:
    """``RESULTS/FOLDER/DATASET/METHOD/<name(config)>`` for each seed's config of ``arm``, calling
    ``make(config, run_dir)`` where it is not finished; an SSL arm's checkpoint is made only if one is."""
    results = study_root() / arm.results_dir
    # an SSL arm's checkpoint path only: the checkpoint is made when a run needs it
    weights = str(arm_ssl_checkpoint(arm, create=False)) if arm.uses_ssl else None
    out = []
    for seed in arm.seeds:
        config = arm.finetune_config(seed, weights)
        run_dir = results / folder / arm.dataset / arm.slug / name(config)
        if not (run_dir / FINISHED_MARKER).is_file():
            if arm.uses_ssl and checkpoint:
                arm_ssl_checkpoint(arm)
            make(config, run_dir)
        out.append(run_dir)
    return out


def ensure_arm(arm: Arm | dict) -> list[Path]:
    """Run directories of ``arm`` (an :class:`~medimg.study.arm.Arm`, or its dict) for every seed, training only
    what is not finished. Runs land in ``RESULTS/runs/DATASET/METHOD/<run name>`` under the study root."""
    from medimg.finetune.train import finetune as run_finetune

    arm = arm if isinstance(arm, Arm) else Arm.from_dict(arm)
    settings = arm.settings()
    return _each_seed(arm, "runs", lambda config: run_name(config, settings),
                      lambda config, run_dir: run_finetune(config, run_dir, settings=settings,
                                                           resume=(run_dir / "config.json").is_file()))


def finished_arm_runs(arm: Arm | dict) -> list[Path]:
    """Run directories of ``arm`` for every seed, read and never trained: :class:`MedimgError` naming the runs
    that are not finished (for reading committed results, as the headline checks do)."""
    arm = arm if isinstance(arm, Arm) else Arm.from_dict(arm)
    settings = arm.settings()
    missing = []
    runs = _each_seed(arm, "runs", lambda config: run_name(config, settings),
                      lambda config, run_dir: missing.append(run_dir), checkpoint=False)
    if missing:
        raise MedimgError(f"{len(missing)} run(s) of {arm.dataset} {arm.method} are not finished, e.g. {missing[0]}: "
                          f"run `medimg study --profile PROFILE` to make them")
    return runs


def arm_ssl_checkpoint(arm: Arm | dict, *, create: bool = True) -> Path:
    """The self-supervised checkpoint an ``ssl`` or ``tl+ssl`` arm starts from, pretrained if missing and ``create``: the
    profile's pretraining-stage checkpoint where the arm names one (``Arm.ssl_checkpoint``; missing, it is refused
    with the command that makes it), else one of the arm's own.

    With ``create=False`` only its path: finished runs need no checkpoint, so a study read back from
    committed results (checkpoints are not committed) never pretrains again. The lineage check against
    the target runs when it is made; the pool already excludes the target's overlaps.
    """
    arm = arm if isinstance(arm, Arm) else Arm.from_dict(arm)
    if not arm.uses_ssl:
        raise MedimgError(f"the {arm.method} arm starts from no self-supervised checkpoint: only {' and '.join(checkpoint_arms())} do")
    if arm.ssl_checkpoint:  # the profile's pretraining stage: made by its own command, never by the study
        path = study_root() / arm.ssl_checkpoint
        if create and not path.is_file():
            raise MedimgError(f"{arm.dataset} {arm.method} fine-tunes from {arm.ssl_checkpoint}, which is not "
                              f"pretrained yet: run `make pretrain` (medimg pretrain-ssl --profile PROFILE --resume) "
                              f"first; the study never pretrains the stage's checkpoints")
        return path
    pool = ssl_pool(arm.dataset, list(arm.ssl_candidates))
    if not pool:
        raise MedimgError(f"no self-supervised pretraining data for {arm.dataset}: every candidate shares images with it; add another "
                          f"dataset of its modality to the profile's ssl_candidates")
    # named by the pool and settings, not the target: targets with the same pool share it
    config = arm.ssl_config(pool)
    path = study_root() / arm.results_dir / "ssl" / config.checkpoint_name()
    if create and not path.is_file():
        from medimg.ssl.run import pretrain_ssl

        pretrain_ssl(config, path, trainer=arm.settings())
    return path


def ensure_probes(arm: Arm | dict, protocol: str) -> list[Path]:
    """Probe runs of ``arm``'s initial network under ``protocol`` (a probe of :data:`medimg.probe.protocols.PROTOCOLS`)
    for every seed, made only where missing: ``RESULTS/probes/DATASET/METHOD/<probe name>`` under the study root
    (:func:`medimg.study.probe_runs.probe_name`). An SSL arm's checkpoint is pretrained only if a probe needs it."""
    from medimg.study.probe_runs import probe_name, probe_run

    arm = arm if isinstance(arm, Arm) else Arm.from_dict(arm)
    return _each_seed(arm, "probes", lambda config: probe_name(config, protocol),
                      lambda config, run_dir: probe_run(config, protocol, run_dir))


def protocol_comparisons(arms: list[Arm], by: str, finetuned) -> dict:
    """The same arms read under every protocol of :data:`medimg.probe.protocols.PROTOCOLS` (the MedMNIST+
    protocols), keyed by the book's names: ``{"fine-tuning": finetuned, "linear probe": ..., "kNN": ...}``, each
    probe a :class:`~medimg.compare.comparison.Comparison` by ``by`` of every seed's probe run (:func:`ensure_probes`,
    made where missing)."""
    from medimg.compare.comparison import compare_runs
    from medimg.probe.protocols import fine_tuning, probes

    out = {fine_tuning().display: finetuned}
    for protocol in probes():
        out[protocol.display] = compare_runs([d for a in arms for d in ensure_probes(a, protocol.name)], by=by)
    return out


def ensure_ssl_check(arm: Arm | dict):
    """The check of ``arm``'s self-supervised checkpoint against random features (:mod:`medimg.ssl.check`), read
    from beside the checkpoint when it was made before (so a committed study needs no checkpoint), else made and
    kept there: from the checkpoint's learning curve where it has the paired rows for the arm's target and seeds
    (:func:`medimg.ssl.check.check_from_curve`: the curve's last point, the same rule), else by probing the
    checkpoint and random networks on validation. Refuses (:class:`MedimgError`) an arm that starts from no
    self-supervised checkpoint."""
    from medimg.finetune.runs import write_json
    from medimg.ssl.check import check_from_curve, check_path, check_ssl_checkpoint, read_check
    from medimg.ssl.curve import read_curve

    arm = arm if isinstance(arm, Arm) else Arm.from_dict(arm)
    if not arm_kind(arm.method).needs_checkpoint:
        raise MedimgError(f"the {arm.method} arm starts from no self-supervised checkpoint: check an arm that "
                          f"does ({', '.join(checkpoint_arms())})")
    checkpoint = arm_ssl_checkpoint(arm, create=False)
    found = read_check(checkpoint, arm.dataset)
    if found is not None and found.seeds == tuple(arm.seeds):
        return found
    check = check_from_curve(read_curve(checkpoint), arm.dataset, checkpoint.name, arm.seeds)
    if check is not None:
        write_json(check_path(checkpoint, arm.dataset), check.to_dict())
        return check
    twin = random_init_twin(arm)
    check = check_ssl_checkpoint(arm.finetune_config(arm.seeds[0], str(arm_ssl_checkpoint(arm))).network,
                                 [twin.finetune_config(seed).network for seed in arm.seeds])
    write_json(check_path(checkpoint, arm.dataset), check.to_dict())
    return check


def random_init_twin(arm: Arm) -> Arm:
    """``arm`` as the random-initialisation arm (same target, seeds, fine-tuning settings), whose features are the
    random reference of the self-supervised check: it starts from no checkpoint, a stage's or its own."""
    return Arm.from_dict(dict(arm.to_dict(), method=random_init_arm(), ssl_checkpoint=None))


def start_phrase(arm: Arm) -> str:
    """What the arm's networks start from, in the book's words (Markdown): the self-supervised checkpoint and its
    budget, the ImageNet weights, or random weights."""
    kind = arm_kind(arm.method)
    if kind.needs_checkpoint:
        from medimg.study.pretraining import budget_phrase

        checkpoint = arm_ssl_checkpoint(arm, create=False)
        return f"the self-supervised checkpoint `{checkpoint.name}` ({budget_phrase(checkpoint)})"
    return f"ImageNet weights (`{arm.tl_weights}`)" if kind.imagenet else "random weights"
