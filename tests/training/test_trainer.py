"""The training stage: what a TrainerSettings record gives Lightning (precision resolved on this CPU, deterministic
kernels, no distributed sampler), what it records, and Lightning's start-up lines kept quiet."""
from __future__ import annotations

import logging

import pytest

from medimg.training.trainer import TrainerSettings, quiet_lightning


def test_auto_precision_is_fp32_on_a_cpu_and_a_given_one_is_kept():
    assert TrainerSettings(accelerator="cpu").resolved_precision() == "32-true"
    assert TrainerSettings(accelerator="cpu", precision="bf16-mixed").resolved_precision() == "bf16-mixed"
    record = TrainerSettings(accelerator="cpu", progress=False).to_dict()
    assert record["resolved_precision"] == "32-true" and record["precision"] == "auto" and record["progress"] is False


def test_the_trainer_is_built_from_the_settings(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    trainer = TrainerSettings(accelerator="cpu", progress=False, deterministic=True).build(max_epochs=3)
    assert trainer.max_epochs == 3 and trainer.precision == "32-true" and trainer.num_devices == 1
    assert trainer.progress_bar_callback is None and trainer.logger is None
    assert not trainer._accelerator_connector.use_distributed_sampler  # medimg's sampler shards the images itself
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # deterministic cuBLAS needs it
    shown = TrainerSettings(accelerator="cpu", progress=True, deterministic=False).build(max_epochs=1)
    assert shown.progress_bar_callback is not None


@pytest.mark.parametrize("name", ["pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.seed"])
def test_quiet_lightning_keeps_its_informational_lines_out(name):
    logger = logging.getLogger(name)
    before = logger.level
    try:
        logger.setLevel(logging.INFO)
        quiet_lightning()
        assert logger.getEffectiveLevel() == logging.WARNING and not logger.isEnabledFor(logging.INFO)
    finally:
        logger.setLevel(before)
