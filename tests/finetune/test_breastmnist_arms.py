"""The real-data checks of the training and evaluation issues on BreastMNIST.

Each arm beats the majority class; then the three real runs are compared (tables and figures)
and explained with Grad-CAM side by side: the evidence that the arms really learn and that evaluation
works on real runs. Long (about 2.5 minutes on two cores): `make test-long` runs it, CI does not; there,
the workshop template trains TL and scratch on BreastMNIST under nbval, and the smoke study every arm.
"""
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import run_cli
from medimg.finetune.config import FinetuneConfig
from medimg.training.trainer import TrainerSettings
from medimg.finetune.train import finetune

pytestmark = [pytest.mark.slow, pytest.mark.long]
SETTINGS = TrainerSettings(accelerator="cpu", progress=False)
MAJORITY = 114 / 156  # 'normal, benign' in the official test split


@pytest.fixture(scope="module")
def arms(tmp_path_factory, module_env):
    return tmp_path_factory.mktemp("arms")


@pytest.fixture(scope="module")
def tl_run(arms, shared_data):
    # the quick profile's recipe with the workshop's budget: LP-FT, 3 epochs at lr 3e-5, batch 32, 64 px
    metrics = finetune(FinetuneConfig("breastmnist", "tl", arch="mobilenetv2_100", weights="tflite", size=64,
                                      recipe="lp-ft", epochs=3, lr=3e-5, batch_size=32, backbone_lr_scale=1.0),
                       arms / "tl", settings=SETTINGS)
    return arms / "tl", metrics


@pytest.fixture(scope="module")
def scratch_run(arms, shared_data):
    metrics = finetune(FinetuneConfig("breastmnist", "scratch", arch="resnet18", size=32, epochs=15),
                       arms / "scratch", settings=SETTINGS)
    return arms / "scratch", metrics


@pytest.fixture(scope="module")
def ssl_run(arms, shared_data):
    from medimg.ssl.config import SSLConfig
    from medimg.ssl.run import pretrain_ssl

    # the pooled grey training images that share nothing with BreastMNIST: not BUSI
    checkpoint = pretrain_ssl(SSLConfig(datasets=("pneumoniamnist", "iq_othnccd_lung_ct"), target="breastmnist",
                                        arch="resnet18", size=32, grey_as="replicate", epochs=3, max_images=2000),
                              arms / "simclr.safetensors", trainer=SETTINGS)
    metrics = finetune(FinetuneConfig("breastmnist", "ssl", arch="resnet18", weights=str(checkpoint), size=32,
                                      epochs=15), arms / "ssl", settings=SETTINGS)
    return arms / "ssl", metrics


@pytest.fixture(scope="module")
def shared_data():
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is not here")
    return SHARED_DATA


def test_tl_with_imported_imagenet_mobilenet(tl_run):
    _, metrics = tl_run
    assert metrics["weight_source"]["kind"] == "tflite-import"
    assert metrics["test"]["majority_accuracy"] == pytest.approx(MAJORITY)
    assert metrics["test"]["accuracy"] >= 0.80


def test_scratch(scratch_run):
    _, metrics = scratch_run
    assert metrics["weight_source"]["kind"] == "random"
    assert metrics["test"]["accuracy"] > MAJORITY


def test_ssl_pretrained_on_other_grey_datasets(ssl_run):
    _, metrics = ssl_run
    assert metrics["weight_source"]["kind"] == "ssl-checkpoint"
    assert metrics["weight_source"]["meta"]["datasets"] == ["pneumoniamnist", "iq_othnccd_lung_ct"]
    assert metrics["test"]["accuracy"] > MAJORITY


def test_compare_real_runs(tl_run, ssl_run, scratch_run, tmp_path):
    out = tmp_path / "compare"
    result = run_cli("compare", str(tl_run[0]), str(ssl_run[0]), str(scratch_run[0]), "--out", str(out))
    assert result.returncode == 0, result.stderr
    tests = pd.read_csv(out / "tests.csv")
    assert list(zip(tests["arm_a"], tests["arm_b"])) == [("tl", "ssl"), ("tl", "scratch"), ("ssl", "scratch")]
    assert (tests["test"] == "McNemar").all()  # one seed each: the per-image test
    summary = pd.read_csv(out / "summary.csv").set_index("arm")
    assert summary.loc["tl", "accuracy"] == pytest.approx(tl_run[1]["test"]["accuracy"], abs=1e-9)
    for png in sorted((out / "figures").iterdir()):
        image = np.asarray(Image.open(io.BytesIO(png.read_bytes())).convert("L"), float)
        assert image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 10, png.name


def test_gradcam_real_runs_side_by_side(tl_run, ssl_run, tmp_path):
    from medimg.explain.gradcam import common_gallery, explain_run
    from medimg.plots.gradcam import gradcam_grid

    ids = common_gallery([tl_run[0], ssl_run[0]], n=8, seed=0)
    results = [explain_run(run, ids=ids, seed=0) for run in (tl_run[0], ssl_run[0])]
    for r in results:
        assert list(r.ids) == list(ids)
        assert np.isfinite(r.maps).all() and r.maps.std(axis=(1, 2)).min() > 0
        assert r.randomisation["spearman"] < 0.9  # randomising the weights changes the maps
        assert r.reproduced_max_abs_diff < 1e-5
    buffer = io.BytesIO()
    gradcam_grid(results, ["TL", "SSL"]).savefig(buffer, format="png")
    image = np.asarray(Image.open(buffer).convert("L"), float)
    assert image.shape[0] > 400 and image.std() > 10
