"""A probe of an arm's initial network, kept as a run directory that evaluation reads like a fine-tuning run.

A probe run (:func:`probe_run`) extracts the frozen features of the network a fine-tuning run would
start from (its config's :attr:`~medimg.finetune.config.FinetuneConfig.network`, read by
:func:`medimg.probe.features.extract_features`: ImageNet weights, a SimCLR checkpoint, or the seed's random init),
fits the probe of a protocol of :data:`medimg.probe.protocols.PROTOCOLS` (``linear`` or ``knn``, tuned on the
validation split) and writes ``config.json`` (the run's settings plus ``protocol``), ``predictions.csv``
(test split) and ``metrics.json`` last, as :mod:`medimg.finetune.runs` lays out a run. So
:func:`medimg.compare.comparison.compare_runs` compares TL, SSL and scratch under a probe exactly as under
fine-tuning, and a committed study reads its probes back without the SimCLR checkpoints. The study asks for them
(:func:`medimg.study.arm_runs.ensure_probes`): a probe run is named by the fine-tuning config of the arm's run.
"""
from __future__ import annotations

from pathlib import Path

from medimg.data.fingerprint import FINGERPRINT_OF
from medimg.errors import MedimgError
from medimg.finetune.config import FinetuneConfig
from medimg.finetune.runs import FINISHED_MARKER, config_record, prediction_rows, write_csv, write_json
from medimg.identity import identity, provenance

# features are extracted in fp32 on the CPU, deterministically, whatever the trainer settings
PROBE_NUMERICS = dict(precision="32-true", deterministic=True)


def probe_name(config: FinetuneConfig, protocol: str) -> str:
    """``PROTOCOL-<12 hex digits>``: a hash of every setting that changes the probe's result (the features'
    network, data and size, the training cap, the seed) and the protocol."""
    return f"{protocol}-{identity(dict(config_record(config), protocol=protocol, numerics=PROBE_NUMERICS))}"


def probe_run(config: FinetuneConfig, protocol: str, run_dir: Path) -> dict:
    """Probe ``config``'s initial network with ``protocol`` and write the run into ``run_dir`` (replaced if it
    holds an unfinished one). Returns metrics.json's content: ``test`` and ``val`` as
    :func:`~medimg.evaluate.metrics.summary_metrics` gives them, and the probe's chosen ``setting``.
    Raises :class:`MedimgError` for an unknown protocol or weights that cannot be had."""
    from medimg.data import prepare
    from medimg.evaluate.metrics import summary_metrics
    from medimg.probe.features import extract_features
    from medimg.probe.protocols import protocol_of

    run_dir = Path(run_dir)
    if (run_dir / FINISHED_MARKER).is_file():
        raise MedimgError(f"{run_dir} holds a finished probe: delete it to run it again")
    network = config.network
    probe = protocol_of(protocol).build(seed=network.seed, max_train_images=network.max_train_images,
                                        split_seed=network.split_seed)
    data = prepare(network.data, progress=False)
    features = extract_features(network, data=data)
    probe.fit(features)
    classes = list(data.classes)
    test_probs, val_probs = probe.predict_proba(features.x["test"]), probe.predict_proba(features.x["val"])
    rows = prediction_rows(data, test_probs)
    name = probe_name(config, protocol)  # the run's identity, in config.json and metrics.json alike (read_run)
    record = dict(run=config.to_dict(), identity=name, protocol=protocol, trainer=dict(PROBE_NUMERICS, resolved_precision="32-true"),
                  data=dict(target=dict(name=data.source.name, classes=classes, channels=data.decoded.channels,
                                        modality=data.decoded.modality, fingerprint=data.source.fingerprint,
                                        fingerprint_of=FINGERPRINT_OF)),
                  features=features.key, provenance=provenance())
    metrics = dict(identity=name, dataset=data.source.name, method=config.method, arch=config.arch, seed=config.seed,
                   channels=data.decoded.channels, modality=data.decoded.modality, protocol=protocol,
                   setting=probe.setting_, test=summary_metrics(features.y["test"], test_probs, classes),
                   val=summary_metrics(features.y["val"], val_probs, classes, split="validation"),
                   timing=dict(feature_seconds=features.seconds))
    from medimg.errors import environment_errors
    from medimg.atomic import run_lock

    with run_lock(run_dir, option="run folder", command=f"a {protocol} probe of {config.dataset}"), \
            environment_errors(run_dir, what="write the probe run"):
        write_json(run_dir / "config.json", record)
        write_csv(run_dir / "predictions.csv", rows)
        write_json(run_dir / FINISHED_MARKER, metrics)
    return metrics
