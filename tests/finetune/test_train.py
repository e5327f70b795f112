"""Fine-tuning end to end on generated data: run directories, determinism, resume, double fine-tuning."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from conftest import REPO, assert_one_line_error, run_cli
from medimg.finetune.classifier import predict
from medimg.finetune.config import FinetuneConfig
from medimg.training.trainer import TrainerSettings
from medimg.data import ImageDataset
from medimg.models.backbones import create_backbone
from medimg.finetune.run_model import load_run
from medimg.finetune.train import finetune

FAST = TrainerSettings(accelerator="cpu", progress=False)
SMALL = dict(arch="resnet18", size=32, epochs=3, batch_size=32)


def without_timing(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "timing"}


def test_run_directory_contents(tmp_path):
    run = tmp_path / "run"
    metrics = finetune(FinetuneConfig("synthetic_colour", "scratch", seed=1, **SMALL), run, settings=FAST)
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.json", "predictions.csv", "history.csv",
                                                "best.ckpt"}
    config = json.loads((run / "config.json").read_text())
    assert config["run"]["seed"] == 1 and config["run"]["method"] == "scratch"
    assert config["provenance"]["versions"]["torch"] and "commit" in config["provenance"]["git"]
    assert metrics["weight_source"]["kind"] == "random"
    predictions = pd.read_csv(run / "predictions.csv")
    assert len(predictions) == metrics["test"]["n"] == 60
    assert {"id", "true", "predicted", "prob_disc", "prob_square", "prob_cross"} <= set(predictions.columns)
    assert (predictions[["prob_disc", "prob_square", "prob_cross"]].sum(axis=1) - 1).abs().max() < 1e-4
    assert (predictions["true"] == predictions["predicted"]).mean() == pytest.approx(metrics["test"]["accuracy"])
    history = pd.read_csv(run / "history.csv")
    assert len(history) == metrics["epochs_run"] and history["epoch"].tolist() == list(range(len(history)))
    # kept: the best weights only; the training checkpoints (optimiser state, for --resume) are gone
    checkpoint = torch.load(run / "best.ckpt", map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"state_dict"} and not (run / "checkpoints").exists()
    loaded = load_run(run)  # and they are the model that made predictions.csv
    x, y = loaded.data.part("test")[:2]
    probs = predict(loaded.model, DataLoader(ImageDataset(x, y, loaded.preprocess), batch_size=64))
    assert np.allclose(probs, predictions[["prob_disc", "prob_square", "prob_cross"]].to_numpy(), atol=1e-5)


def test_same_seed_same_metrics(tmp_path):
    config = FinetuneConfig("synthetic_grey", "scratch", grey_as="single", augment=True, balance="over", **SMALL)
    a = finetune(config, tmp_path / "a", settings=FAST)
    b = finetune(config, tmp_path / "b", settings=FAST)
    assert without_timing(a) == without_timing(b)
    c = finetune(FinetuneConfig("synthetic_grey", "scratch", grey_as="single", augment=True, balance="over",
                                **{**SMALL, "epochs": 3}, seed=5), tmp_path / "c", settings=FAST)
    assert without_timing(c)["test"] != without_timing(a)["test"]


def test_existing_run_is_never_overwritten(tmp_path):
    args = ["finetune", "--dataset", "synthetic_colour", "--method", "scratch", "--arch", "resnet18", "--size", "32",
            "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"]
    assert run_cli(*args).returncode == 0
    before = (tmp_path / "run" / "metrics.json").read_text()
    again = run_cli(*args)
    assert again.returncode == 2 and "finished run" in again.stderr and "--force" in again.stderr
    assert (tmp_path / "run" / "metrics.json").read_text() == before
    assert run_cli(*args, "--force").returncode == 0


def test_killed_run_resumes_to_the_same_result(tmp_path):
    args = ["finetune", "--dataset", "synthetic_colour", "--method", "scratch", "--arch", "resnet18", "--size", "32",
            "--epochs", "5", "--patience", "10", "--augment", "--no-progress"]
    assert run_cli(*args, "--out", str(tmp_path / "whole")).returncode == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "medimg", *args, "--out", str(killed)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and torch.load(last, map_location="cpu", weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()
    refused = run_cli(*args, "--out", str(killed))
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = run_cli(*args, "--out", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    again = json.loads((killed / "metrics.json").read_text())
    assert without_timing(again) == without_timing(whole)
    assert pd.read_csv(killed / "history.csv").equals(pd.read_csv(tmp_path / "whole" / "history.csv"))


def test_double_finetuning_keeps_both_stages(tmp_path):
    config = FinetuneConfig("synthetic_grey", "scratch", intermediate=str(_grey_folder(tmp_path)),
                            grey_as="replicate", intermediate_epochs=2, max_train_images=50,
                            intermediate_max_train_images=12, **SMALL)
    metrics = finetune(config, tmp_path / "run", settings=FAST)
    # each stage has its own cap: stage 1 trains on 12 images, the target on 50
    assert sum(metrics["balance"]["counts_before"].values()) == 50
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(dict.fromkeys(history["stage"])) == ["intermediate", "target"]
    assert metrics["intermediate"]["epochs_run"] == 2 and metrics["test"]["n"] == 60
    stage1 = json.loads((tmp_path / "run" / "stage1" / "stage.json").read_text())
    assert len(stage1["history"]) == 2
    assert sum(stage1["balance"]["counts_before"].values()) == 12
    # the target head is new: the intermediate set has 2 classes, the target 3
    state = torch.load(tmp_path / "run" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state["model.fc.weight"].shape[0] == 3


def test_a_stage_one_cap_leaves_the_names_of_earlier_runs_alone():
    """Study runs are named by a hash of to_dict(): a field added with its default must not rename them."""
    assert "intermediate_max_train_images" not in FinetuneConfig("breastmnist", "scratch").to_dict()
    capped = FinetuneConfig("breastmnist", "scratch", intermediate="pneumoniamnist", intermediate_max_train_images=9)
    assert capped.to_dict()["intermediate_max_train_images"] == 9
    assert FinetuneConfig.from_dict(capped.to_dict()) == capped


def _grey_folder(tmp_path):
    from medimg.data.synthetic import write_image_folder

    root = write_image_folder(tmp_path / "inter", n_per_class=20, size=32, colour=False, seed=9)
    import shutil

    shutil.rmtree(root / "images" / "cross")  # two classes, unlike the target
    return root


def test_overlapping_intermediate_is_refused(shared_data, tmp_path):
    result = run_cli("finetune", "--dataset", "breastmnist", "--method", "scratch", "--intermediate", "busi_256",
                     "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "share images from busi" in result.stderr and "--allow-overlap" in result.stderr
    assert not (tmp_path / "run").exists()


def test_weight_sources(tmp_path, shared_data):
    model, source = create_backbone("mobilenetv2_100", num_classes=2, in_chans=1, weights="tflite")
    assert source.kind == "tflite-import" and model.conv_stem.in_channels == 1
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert create_backbone("mobilenetv2_100", num_classes=2, in_chans=3, weights="auto")[1].kind == "tflite-import"
    # an explicit file: what timm saved is what comes back (the head is fresh)
    reference = timm.create_model("resnet18", num_classes=5)
    for suffix in (".safetensors", ".pth"):
        path = tmp_path / f"r18{suffix}"
        if suffix == ".pth":
            torch.save(reference.state_dict(), path)
        else:
            save_file(reference.state_dict(), str(path))
        loaded, source = create_backbone("resnet18", num_classes=3, in_chans=3, weights=str(path))
        assert source.kind == "file" and source.sha256
        assert torch.equal(loaded.conv1.weight, reference.conv1.weight)
    from medimg.errors import MedimgError

    with pytest.raises(MedimgError, match="does not exist"):
        create_backbone("resnet18", num_classes=2, in_chans=3, weights=str(tmp_path / "missing.pth"))
    with pytest.raises(MedimgError, match=r"no ImageNet weights for legacy_xception .*local timm cache.*--weights FILE.*--weights tflite"):
        create_backbone("legacy_xception", num_classes=2, in_chans=3, weights="timm")
    assert create_backbone("resnet18", num_classes=2, in_chans=3, weights="random")[1].kind == "random"


def test_grey_and_colour_inputs(tmp_path):
    grey = finetune(FinetuneConfig("synthetic_grey", "scratch", grey_as="single", **{**SMALL, "epochs": 1}),
                    tmp_path / "g", settings=FAST)
    colour = finetune(FinetuneConfig("synthetic_colour", "scratch", **{**SMALL, "epochs": 1}),
                      tmp_path / "c", settings=FAST)
    assert grey["preprocess"]["in_chans"] == 1 and grey["preprocess"]["grey_as"] == "single"
    assert colour["preprocess"]["in_chans"] == 3 and colour["preprocess"]["grey_as"] is None
    state = torch.load(tmp_path / "g" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state["model.conv1.weight"].shape[1] == 1


@pytest.mark.parametrize("recipe", ["paper", "linear", "partial", "full"])
def test_recipes_unfreeze_what_they_say(recipe):
    from medimg.finetune.classifier import Classifier

    model, _ = create_backbone("resnet18", num_classes=2, in_chans=3, weights="random")
    config = FinetuneConfig("synthetic_colour", "tl", weights="random.pth", recipe=recipe, head_epochs=2,
                            unfreeze_stages=1)
    module = Classifier(model, config=config, max_epochs=4, stage="target", channels_last=False)
    head = {"fc.weight", "fc.bias"}
    everything = {n for n, _ in model.named_parameters()}
    layer4 = {n for n in everything if n.startswith("layer4.")}
    expected = {
        "paper": (head, everything),
        "linear": (head, head),
        "partial": (head | layer4, head | layer4),
        "full": (everything, everything),
    }[recipe]
    assert (module.trainable(0), module.trainable(3)) == expected


def test_weights_import_tflite_command(shared_data, tmp_path):
    out = tmp_path / "mnv2.safetensors"
    tflite = shared_data / "imagenet_mobilenet_tflite" / "mobilenet_v2_1.0_224_quant.tflite"
    result = run_cli("weights", "import-tflite", str(tflite), "--out", str(out))
    assert result.returncode == 0, result.stderr
    model, source = create_backbone("mobilenetv2_100", num_classes=1001, in_chans=3, weights=str(out))
    assert source.kind == "tflite-import" and model.pretrained_cfg["file"] == str(out)
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5) and model.conv_stem.padding == (0, 0)  # TF "same"
    again = run_cli("weights", "import-tflite", str(tflite), "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr
    missing = run_cli("weights", "import-tflite", str(tmp_path / "nope.tflite"), "--out", str(tmp_path / "x.safetensors"))
    assert missing.returncode == 2 and "nope.tflite" in missing.stderr


def test_missing_weights_leave_no_run_directory(tmp_path):
    result = run_cli("finetune", "--dataset", "synthetic_colour", "--method", "tl", "--arch", "legacy_xception",
                     "--weights", "timm", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "no ImageNet weights for legacy_xception" in result.stderr
    assert not (tmp_path / "run").exists()


def assert_refused(result, out, *must_mention):
    """Exit 2 with one line naming the fix, and no run directory written."""
    assert_one_line_error(result, *must_mention)
    assert not out.exists()


def test_batch_of_one_with_batch_norm_is_refused_before_the_run_directory(tmp_path):
    out = tmp_path / "X"
    result = run_cli("finetune", "--dataset", "synthetic_grey", "--method", "scratch", "--arch", "resnet18",
                     "--size", "16", "--epochs", "1", "--batch-size", "1", "--out", str(out), "--no-progress")
    assert_refused(result, out, "batch norm", "--batch-size")


def test_head_epochs_that_leave_the_backbone_untrained_are_refused(tmp_path):
    from medimg.errors import MedimgError

    out = tmp_path / "X"
    result = run_cli("finetune", "--dataset", "synthetic_grey", "--method", "scratch", "--recipe", "paper",
                     "--epochs", "2", "--head-epochs", "2", "--out", str(out))
    assert_refused(result, out, "--head-epochs 2", "--epochs 2", "--recipe paper")
    FinetuneConfig("synthetic_grey", "scratch", recipe="paper", epochs=3, head_epochs=2)  # one epoch for the backbone
    FinetuneConfig("synthetic_grey", "scratch", epochs=2, head_epochs=2)  # scratch trains everything: no head phase
    with pytest.raises(MedimgError, match="--head-epochs 2 leaves none of --epochs 2"):
        FinetuneConfig("synthetic_grey", "tl", epochs=2)  # tl's recipe is paper, with 2 head epochs by default
    with pytest.raises(MedimgError, match="--intermediate-epochs 1"):
        FinetuneConfig("synthetic_grey", "tl", weights="x.pth", intermediate="synthetic_colour", epochs=5,
                       head_epochs=1, intermediate_epochs=1)


def test_a_size_the_architecture_cannot_take_is_refused(tmp_path, monkeypatch):
    # every allowed architecture takes the smallest size the data layer allows (8 px; legacy_xception's
    # unpadded entry convolutions need 7): a resnet18 whose stem is an unpadded 9x9 convolution does not
    import medimg.finetune.train
    from medimg.errors import MedimgError

    def narrow_stem(*args, **kwargs):
        model, source = create_backbone(*args, **kwargs)
        model.conv1 = torch.nn.Conv2d(kwargs["in_chans"], 64, kernel_size=9, stride=2, padding=0, bias=False)
        return model, source

    monkeypatch.setattr(medimg.finetune.train, "create_backbone", narrow_stem)
    out = tmp_path / "X"
    refusal = r"--size 8 is too small for resnet18: .*use a larger --size, e\.g\. --size 32"
    with pytest.raises(MedimgError, match=refusal):
        finetune(FinetuneConfig("synthetic_colour", "scratch", arch="resnet18", size=8, epochs=1), out, settings=FAST)
    assert not out.exists()


def test_a_training_set_of_one_image_is_refused():
    from types import SimpleNamespace

    import numpy as np

    from medimg.errors import MedimgError
    from medimg.finetune.train import check_trainable

    model, _ = create_backbone("resnet18", num_classes=2, in_chans=3, weights="random")
    one = SimpleNamespace(decoded=SimpleNamespace(labels=np.array([0, 1]), ids=("a", "b")),
                          split=SimpleNamespace(indices=lambda split, ids: np.array([0])),
                          source=SimpleNamespace(name="tiny"))
    with pytest.raises(MedimgError, match="tiny leaves 1 training image after --max-train-images"):
        check_trainable(model, [(FinetuneConfig("tiny", "scratch", size=32), one)], in_chans=3)


@pytest.mark.parametrize("change, option", [(dict(lr=-1.0), "--lr"), (dict(lr=0.0), "--lr"),
                                            (dict(weight_decay=-0.1), "--weight-decay"), (dict(patience=0), "--patience")])
def test_settings_out_of_range_are_refused_by_name(change, option):
    from medimg.errors import MedimgError

    with pytest.raises(MedimgError, match=f"{option} .* is out of range"):
        FinetuneConfig(dataset="synthetic_grey", method="scratch", arch="resnet18", **change)
