"""Every committed product is still found under the name its record gives it (one identity function names runs,
probe runs and self-supervised checkpoints): the quick book's runs, its probe runs and its pretraining stage, read
from results/quick and never trained here."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def quick():
    from medimg.study.chapter_arms import book_arms
    from medimg.study.profiles import available, load_profile, targets

    p = load_profile("quick", REPO / "study.yml")
    here = [d for _, d in targets(p) if available(d)]
    if not here:
        pytest.skip("no quick target's data here (MEDIMG_DATA_DIR)")
    return p, [arm for _, arm in book_arms(p, here)] + ahead_of_the_switch(p, here)


def ahead_of_the_switch(p: dict, here: list[str]) -> list:
    """The arms the book will read once the next stage (issue #30) replaces the stage, that start from one of its
    finished checkpoints: their runs are made before the switch (as the switch names them) and committed."""
    from medimg.finetune.arms import arm_kind
    from medimg.study.arm_runs import arm_ssl_checkpoint
    from medimg.study.chapter_arms import book_arms

    following = dict(p, pretraining=p["pretraining_next"])
    return [arm for _, arm in book_arms(following, here)
            if arm_kind(arm.method).needs_checkpoint and (REPO / arm_ssl_checkpoint(arm, create=False)).is_file()]


def _committed(kind: str) -> set:
    return {d for d in (REPO / "results" / "quick" / kind).glob("*/*/*") if (d / "metrics.json").is_file()}


def test_every_committed_run_is_found_under_its_name(quick, monkeypatch):
    from medimg.study.arm_runs import finished_arm_runs

    monkeypatch.setenv("MEDIMG_STUDY_ROOT", str(REPO))
    _, arms = quick
    found = {d.resolve() for arm in arms for d in finished_arm_runs(arm)}  # a run not found is an error here
    assert found and found <= {d.resolve() for d in _committed("runs")}
    assert {d.resolve() for d in _committed("runs")} - found == set(), "committed runs no arm of the book names"


def test_every_committed_probe_run_is_found_under_its_name(quick, monkeypatch):
    from medimg.finetune.arms import arm_kind
    from medimg.probe.protocols import probes
    from medimg.study.arm_runs import arm_ssl_checkpoint
    from medimg.study.probe_runs import probe_name

    monkeypatch.setenv("MEDIMG_STUDY_ROOT", str(REPO))
    p, arms = quick
    named = set()
    for arm in arms:
        weights = str(arm_ssl_checkpoint(arm, create=False)) if arm_kind(arm.method).needs_checkpoint else None
        for seed in arm.seeds:
            for protocol in probes():
                named.add((REPO / p["results_dir"] / "probes" / arm.dataset / arm.slug
                           / probe_name(arm.finetune_config(seed, weights), protocol.name)).resolve())
    committed = {d.resolve() for d in _committed("probes")}
    assert committed and committed <= named, sorted(str(d.relative_to(REPO)) for d in committed - named)[:5]


def test_every_committed_probe_record_gives_back_its_name_and_its_features_key():
    """A committed probe run's ``config.json`` (the fine-tuning config it probes, and the key of the features it
    read) gives back, through today's code, the folder it lies in and the same feature key: the network record a
    probe reads (``FinetuneConfig.network``) names and keys exactly what the fine-tuning config did before it."""
    import json

    from medimg.finetune.config import FinetuneConfig
    from medimg.probe.features import feature_cache_path, feature_key
    from medimg.study.probe_runs import probe_name

    records = sorted((REPO / "results" / "quick" / "probes").glob("*/*/*/config.json"))
    if not records:
        pytest.skip("no committed probe runs")
    protocols, paths = set(), set()
    for path in records:
        record = json.loads(path.read_text())
        run = dict(record["run"])
        if run.get("weights") and run["weights"].endswith(".safetensors"):  # committed beside the results
            run["weights"] = str(REPO / "results" / "quick" / "ssl" / Path(run["weights"]).name)
        config = FinetuneConfig.from_dict(run)
        assert probe_name(config, record["protocol"]) == path.parent.name, path
        key = feature_key(config.network, record["features"]["fingerprint"])
        assert json.loads(json.dumps(key)) == record["features"], path
        protocols.add(record["protocol"])
        paths.add(feature_cache_path(config.network, key).name)
    assert protocols == {"linear", "knn"}
    # feature cache names as they were before issue #32 (a TL, a random and a checkpoint's network), 60 networks,
    # and the 6 of the TL+SSL arms made ahead of issue #30's switch (one checkpoint network per target)
    assert {"breastmnist-31dde8fa48ab3192.npz", "breastmnist-64743ba6faca2736.npz",
            "busi_256-e7559378da9e42f5.npz"} <= paths
    assert len(paths) == 60 + 6


def test_every_pretraining_checkpoint_is_found_under_its_name(quick, monkeypatch):
    from medimg.finetune.arms import arm_kind
    from medimg.study.arm_runs import arm_ssl_checkpoint
    from medimg.study.pretraining import pretraining_runs

    monkeypatch.setenv("MEDIMG_STUDY_ROOT", str(REPO))
    p, arms = quick
    stage = [r.path for r in pretraining_runs(p)]
    assert stage and all(path.is_file() for path in stage), [str(s) for s in stage if not s.is_file()]
    # every committed learning curve is of a checkpoint the stage names, or the next stage (issue #30) being pretrained
    curves = {c.name.removesuffix(".curve.csv") + ".safetensors" for c in (REPO / "results/quick/ssl").glob("*.curve.csv")}
    following = {r.path.name for r in pretraining_runs(p, stage="pretraining_next")}
    assert {path.name for path in stage} == curves - following
    ahead = [r.path for r in pretraining_runs(p, stage="pretraining_next")]
    for arm in arms:  # the book's arms read the stage; those made ahead of the switch, the next stage
        if arm_kind(arm.method).needs_checkpoint:
            assert arm_ssl_checkpoint(arm, create=False) in stage + ahead
