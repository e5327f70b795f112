"""Lightning's DDP on this CPU (``--accelerator cpu --devices 2 --strategy ddp``, gloo): the path that scales to
several GPUs and nodes, run for real on generated data.

Lightning starts the second process by running the same command again; only the first prepares the run
directory, predicts the test set and writes. The training shards come from medimg's own sampler.
"""
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import REPO, run_cli
from medimg.data.transforms import EpochSampler

DDP = ("--accelerator", "cpu", "--devices", "2", "--strategy", "ddp")
FINETUNE = ("finetune", "--dataset", "synthetic_grey", "--method", "scratch", "--arch", "resnet18", "--size", "32",
            "--batch-size", "16", "--recipe", "full", "--precision", "32-true", "--no-progress")


def test_epoch_sampler_shards_are_disjoint_and_equal():
    """Each of 3 processes takes every third position of the same epoch order; none repeats, all step alike."""
    whole = [i for i, _ in EpochSampler(10, seed=4)]
    for epoch in (0, 1):
        shards = []
        for rank in range(3):
            sampler = EpochSampler(10, seed=4, rank=rank, world_size=3)
            sampler.set_epoch(epoch)
            shards.append([i for i, e in sampler])
            assert len(sampler) == 3 and len(shards[-1]) == 3
        order = [i for i, _ in _at_epoch(EpochSampler(10, seed=4), epoch)]
        assert sorted(sum(shards, [])) == sorted(order[:9])  # the 10th waits, as a last partial batch does
        assert [shards[r][k] for k in range(3) for r in range(3)] == order[:9]
    assert whole == [i for i, _ in _at_epoch(EpochSampler(10, seed=4), 0)]


def _at_epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return sampler


def _predictions_match_metrics(run_dir, reference_ids):
    """Every test image once, in the single-process run's order, and metrics.json's accuracy is theirs."""
    import json

    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert list(predictions["id"]) == list(reference_ids)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == pytest.approx((predictions["true"] == predictions["predicted"]).mean())
    return metrics


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The test images in the order a single-process run writes them."""
    out = tmp_path_factory.mktemp("single") / "run"
    single = run_cli(*FINETUNE, "--epochs", "1", "--out", str(out))
    assert single.returncode == 0, single.stderr
    return pd.read_csv(out / "predictions.csv")["id"]


@pytest.mark.slow
@pytest.mark.long  # make test-long: one process's kill-and-resume is in CI (tests/finetune/test_train.py)
def test_ddp_finetune_resumes_after_both_processes_are_killed(tmp_path, reference):

    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "medimg", *FINETUNE, "--epochs", "2", *DDP, "--out", str(out)]
    first = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoints" / "last.ckpt").is_file() and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert (out / "checkpoints" / "last.ckpt").is_file(), first.communicate()[0][-2000:]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # both processes: Lightning's second is in the same group
        first.wait()
    assert not (out / "metrics.json").exists()

    resumed = run_cli(*FINETUNE, "--epochs", "2", *DDP, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("test accuracy") == 1  # one process reports
    metrics = _predictions_match_metrics(out, reference)
    assert metrics["epochs_run"] == 2 and len(pd.read_csv(out / "history.csv")) == 2
    import json

    config = json.loads((out / "config.json").read_text())
    assert config["trainer"]["devices"] == 2 and config["trainer"]["strategy"] == "ddp"


@pytest.mark.slow
def test_ddp_double_finetune_and_simclr(tmp_path, reference):
    double = run_cli(*FINETUNE, "--epochs", "1", "--intermediate", "breastmnist", "--intermediate-max-train-images", "64",
                     "--intermediate-epochs", "1", *DDP, "--out", str(tmp_path / "double"))
    assert double.returncode == 0, double.stderr[-3000:]
    assert double.stdout.count("test accuracy") == 1
    _predictions_match_metrics(tmp_path / "double", reference)
    assert (tmp_path / "double" / "stage1" / "stage.json").is_file()

    ssl = run_cli("pretrain-ssl", "--datasets", "synthetic_grey", "--arch", "resnet18", "--size", "32", "--epochs", "1",
                  "--batch-size", "32", "--max-images", "128", "--grey-as", "replicate", "--precision", "32-true",
                  "--no-progress", *DDP,
                  "--out", str(tmp_path / "ssl.safetensors"))
    assert ssl.returncode == 0, ssl.stderr[-3000:]
    assert ssl.stdout.count("wrote ") == 1
    from medimg.models.backbones import read_ssl_meta

    meta = read_ssl_meta(tmp_path / "ssl.safetensors")
    assert meta["arch"] == "resnet18" and meta["trainer"]["devices"] == 2 and len(meta["epoch_losses"]) == 1
