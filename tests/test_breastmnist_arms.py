"""The real-data check of the training issue: each arm on BreastMNIST beats the majority class.

Slow (minutes on two cores) but run in CI: it is the evidence that the arms really learn.
"""
import pytest

from medimg.train import FinetuneConfig, finetune
from medimg.trainer_settings import TrainerSettings

pytestmark = pytest.mark.slow
SETTINGS = TrainerSettings(accelerator="cpu", progress=False)
MAJORITY = 114 / 156  # 'normal, benign' in the official test split


def test_tl_with_imported_imagenet_mobilenet(shared_data, tmp_path):
    metrics = finetune(FinetuneConfig("breastmnist", "tl", arch="mobilenetv2_100", weights="tflite", size=64,
                                      epochs=12), tmp_path / "tl", settings=SETTINGS)
    assert metrics["weight_source"]["kind"] == "tflite-import"
    assert metrics["test"]["majority_accuracy"] == pytest.approx(MAJORITY)
    assert metrics["test"]["accuracy"] >= 0.80


def test_scratch(shared_data, tmp_path):
    metrics = finetune(FinetuneConfig("breastmnist", "scratch", arch="resnet18", size=32, epochs=15),
                       tmp_path / "scratch", settings=SETTINGS)
    assert metrics["weight_source"]["kind"] == "random"
    assert metrics["test"]["accuracy"] > MAJORITY


def test_ssl_pretrained_on_other_grey_datasets(shared_data, tmp_path):
    from medimg.ssl import SSLConfig, pretrain_ssl

    # the pooled grey training images that share nothing with BreastMNIST: not BUSI
    checkpoint = pretrain_ssl(SSLConfig(datasets=("pneumoniamnist", "iq_othnccd_lung_ct"), target="breastmnist",
                                        arch="resnet18", size=32, grey_as="replicate", epochs=3, max_images=2000),
                              tmp_path / "simclr.safetensors", trainer=SETTINGS)
    metrics = finetune(FinetuneConfig("breastmnist", "ssl", arch="resnet18", weights=str(checkpoint), size=32,
                                      epochs=15), tmp_path / "ssl", settings=SETTINGS)
    assert metrics["weight_source"]["kind"] == "ssl-checkpoint"
    assert metrics["weight_source"]["meta"]["datasets"] == ["pneumoniamnist", "iq_othnccd_lung_ct"]
    assert metrics["test"]["accuracy"] > MAJORITY
