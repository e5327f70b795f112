"""Grad-CAM: the layer choice per architecture and size, the sanity checks, reloading runs, galleries."""
import io
import json

import numpy as np
import pytest
import timm
import torch

from conftest import SHARED_DATA
from medimg.errors import MedimgError
from medimg.explain.gradcam import (common_gallery, deletion_score, explain_run, gradcam_maps, layer_sizes, load_explanation,
                            pick_target_layer, randomisation_check, randomised_copy, select_gallery)
from medimg.finetune.run_model import load_run
from medimg.finetune.runs import read_predictions

ARCHS = ("legacy_xception", "resnet50", "mobilenetv2_100")


# --- maps on untrained timm models -------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_maps_at_28_and_224_px(arch):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=2).eval()
    for size, n in ((28, 4), (224, 2)):
        name, _ = pick_target_layer(model, size)
        sizes = {k: hw for k, _, hw in layer_sizes(model, size)}
        if size == 28:
            assert min(sizes[name]) >= 4
        else:  # at 224 px the last feature layer is large enough: the usual Grad-CAM layer
            assert name == list(sizes)[-1] and sizes[name] == (7, 7)
        maps = gradcam_maps(model, torch.randn(n, 3, size, size), [0, 1] * (n // 2))
        assert maps.shape == (n, size, size) and maps.dtype == np.float32
        assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
        assert (maps.std(axis=(1, 2)) > 0.05).all()


def test_last_layer_at_28_px_is_why_the_layer_is_picked():
    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False, num_classes=2).eval()
    x = torch.randn(2, 3, 28, 28)
    assert {k: hw for k, _, hw in layer_sizes(model, 28)}["layer4"] == (1, 1)
    assert np.all(gradcam_maps(model, x, [0, 1], "layer4") == 0)  # a 1x1 map says nothing
    assert pick_target_layer(model, 28)[0] == "layer2"
    # nothing reaches min_size: the largest output (here the stem's), not an error
    assert pick_target_layer(model, 8, min_size=8)[0] == "act1"


# --- a model trained on a task whose evidence is known -----------------------------------------

def squares(n, size=32, seed=0):
    """Noise; odd-numbered images (class 1) carry a bright 8x8 square somewhere."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g) * 0.5
    y = torch.arange(n) % 2
    for i in torch.nonzero(y).flatten().tolist():
        r, c = torch.randint(0, size - 8, (2,), generator=g).tolist()
        x[i, :, r:r + 8, c:c + 8] += 2.5
    return x, y


@pytest.fixture(scope="module")
def square_model():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(30):
        x, y = squares(16, seed=100 + step)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = squares(16, seed=1)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() >= 0.75, "the square task did not train"
    squares_only = x[y == 1]
    return model, squares_only, [1] * len(squares_only), pick_target_layer(model, 32)[0]


def test_randomised_model_gives_different_maps(square_model):
    model, x, targets, layer = square_model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check = randomisation_check(model, x, targets, layer, seed=0)
    print(f"\nrandomisation ({layer}): spearman {check['spearman']:.3f}, pearson {check['pearson']:.3f}")
    assert check["spearman"] < 0.8 and check["pearson"] < 0.8
    trained = gradcam_maps(model, x, targets, layer)
    assert np.abs(trained - check["random_maps"]).mean() > 0.1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the original is untouched
    clone = randomised_copy(model, seed=0)
    assert not torch.equal(clone.conv1.weight, model.conv1.weight) and not torch.equal(clone.fc.bias, model.fc.bias)
    assert torch.equal(clone.bn1.running_mean, torch.zeros_like(clone.bn1.running_mean))


def test_deletion_beats_random_order(square_model):
    model, x, targets, layer = square_model
    maps = gradcam_maps(model, x, targets, layer)
    score = deletion_score(model, x, targets, maps, steps=10, seed=0)
    print(f"\ndeletion AUC: map {score['auc'].mean():.3f}, random {score['random_auc'].mean():.3f}")
    assert score["auc"].shape == score["random_auc"].shape == (len(x),)
    assert score["curve"].shape == (len(x), 11) and np.allclose(score["curve"][:, 0], score["random_curve"][:, 0])
    assert score["auc"].mean() < score["random_auc"].mean() - 0.1
    again = deletion_score(model, x, targets, maps, steps=10, seed=0)
    assert np.array_equal(again["random_auc"], score["random_auc"])


# --- choosing images ---------------------------------------------------------------------------

def test_gallery_balances_classes_and_errors():
    true = np.array(["a"] * 10 + ["b"] * 10)
    predicted = true.copy()
    predicted[[0, 1, 2]] = "b"  # three wrong in a, one in b
    predicted[10] = "a"
    picks = select_gallery((true, predicted), 8, seed=0)
    groups = [(true[i], true[i] == predicted[i]) for i in picks]
    # groups take turns; b has one error only, so a correct "a" takes its place in the second round
    assert len(set(picks)) == 8 and {g: groups.count(g) for g in set(groups)} == {
        ("a", True): 3, ("a", False): 2, ("b", True): 2, ("b", False): 1}
    assert groups == sorted(groups, key=lambda g: (g[0], not g[1]))  # ordered class by class, correct first
    more = select_gallery((true, predicted), 12, seed=0)
    assert sum(true[i] == "b" and true[i] != predicted[i] for i in more) == 1  # all there is; others fill in
    assert len(more) == 12 and np.array_equal(more, select_gallery((true, predicted), 12, seed=0))
    assert not np.array_equal(more, select_gallery((true, predicted), 12, seed=1))
    assert len(select_gallery((true, predicted), 100, seed=0)) == 20


def test_common_gallery_uses_ids_every_run_has():
    import pandas as pd

    first = pd.DataFrame(dict(id=[f"{i:03d}" for i in range(10)], true=["x", "y"] * 5, predicted=["x"] * 10))
    second = first.iloc[3:].reset_index(drop=True)
    ids = common_gallery([first, second], 4, seed=0)
    assert len(ids) == 4 and set(ids) <= set(second["id"]) and ids == common_gallery([first, second], 4, seed=0)


# --- real runs ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def breast_runs(tmp_path_factory, module_env):
    """Two one-epoch BreastMNIST runs at 28 px: resnet18 from scratch, and the imported TFLite MobileNet."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is not here")
    from medimg.finetune.config import FinetuneConfig
    from medimg.training.trainer import TrainerSettings
    from medimg.finetune.train import finetune

    settings = TrainerSettings(accelerator="cpu", progress=False)
    root = tmp_path_factory.mktemp("breast")
    common = dict(size=28, epochs=1, head_epochs=0, batch_size=32)
    finetune(FinetuneConfig("breastmnist", "scratch", arch="resnet18", **common), root / "scratch", settings=settings)
    finetune(FinetuneConfig("breastmnist", "tl", arch="mobilenetv2_100", weights="tflite", **common), root / "tl",
             settings=settings)
    return dict(scratch=root / "scratch", tl=root / "tl")


def reloaded_probabilities(run) -> tuple[np.ndarray, np.ndarray]:
    table = run.predictions()
    with torch.no_grad():
        probs = torch.softmax(run.model(run.inputs(run.positions(table["id"]))), 1).numpy()
    return probs, table[[f"prob_{c}" for c in run.classes]].to_numpy(float)


def test_explain_run_end_to_end(breast_runs, tmp_path):
    run = load_run(breast_runs["scratch"])
    assert not run.model.training and run.classes == ["malignant", "normal, benign"]
    assert run.config.size == 28 and run.preprocess.in_chans == 3 and run.data.decoded.size == 28
    probs, saved = reloaded_probabilities(run)
    assert len(probs) == 156 and np.abs(probs - saved).max() < 1e-5

    out = tmp_path / "gradcam"
    result = explain_run(breast_runs["scratch"], n=8, seed=0, out=out)
    summary = json.loads((out / "gradcam.json").read_text())
    print(f"\nscratch resnet18 28 px: layer {result.layer} {result.layer_size}, randomisation spearman "
          f"{summary['randomisation']['spearman']:.3f}, deletion {summary['deletion']['auc_mean']:.3f} vs random "
          f"{summary['deletion']['random_auc_mean']:.3f}")
    assert summary["n"] == 8 and summary["seed"] == 0 and summary["ids"] == result.ids and len(set(result.ids)) == 8
    assert summary["layer"] == "layer2" and summary["layer_size"] == [4, 4]
    assert summary["reproduced_max_abs_diff"] < 1e-5
    assert {"spearman", "pearson"} <= set(summary["randomisation"])
    assert len(summary["deletion"]["auc"]) == len(summary["deletion"]["random_auc"]) == 8
    table = read_predictions(breast_runs["scratch"]).set_index("id")
    assert summary["true"] == table.loc[result.ids, "true"].tolist()
    assert summary["predicted"] == table.loc[result.ids, "predicted"].tolist()
    assert {"malignant", "normal, benign"} <= set(summary["true"])  # both classes shown
    with np.load(out / "gradcam.npz") as saved_arrays:
        # the dataset's images are not copied into the result: they are read back from the data directory
        assert set(saved_arrays.files) == {"maps", "ids"}
        assert saved_arrays["maps"].shape == (8, 28, 28) and saved_arrays["ids"].tolist() == result.ids
        assert np.array_equal(saved_arrays["maps"], result.maps)
    reloaded = load_explanation(out, run_dir=breast_runs["scratch"])
    assert reloaded.images.shape == (8, 28, 28, 3) and reloaded.images.dtype == np.uint8
    assert np.array_equal(reloaded.images, result.images) and np.array_equal(reloaded.maps, result.maps)
    assert reloaded.ids == result.ids and reloaded.layer == result.layer
    with pytest.raises(MedimgError, match="gradcam.json already exists.*force"):
        explain_run(breast_runs["scratch"], n=8, seed=0, out=out)
    again = explain_run(breast_runs["scratch"], n=8, seed=0, out=out, force=True)
    assert again.ids == result.ids and np.allclose(again.maps, result.maps, atol=1e-6)


def test_tflite_mobilenet_reloads_exactly(breast_runs):
    run = load_run(breast_runs["tl"])
    assert run.metrics["weight_source"]["kind"] == "tflite-import"
    assert run.model.conv_stem.padding == (0, 0)  # TensorFlow SAME padding, added at run time
    probs, saved = reloaded_probabilities(run)
    assert np.abs(probs - saved).max() < 1e-5
    # the same weights in timm's default (symmetric padding) network predict something else
    plain = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=2).eval()
    plain.load_state_dict(run.model.state_dict())
    with torch.no_grad():
        other = torch.softmax(plain(run.inputs(run.positions(run.predictions()["id"]))), 1).numpy()
    assert np.abs(other - saved).max() > 1e-3


def test_single_channel_run_reloads_with_one_input_channel(tmp_path):
    from medimg.finetune.config import FinetuneConfig
    from medimg.training.trainer import TrainerSettings
    from medimg.finetune.train import finetune

    finetune(FinetuneConfig("synthetic_grey", "scratch", arch="resnet18", grey_as="single", size=32, epochs=1),
             tmp_path / "run", settings=TrainerSettings(accelerator="cpu", progress=False))
    run = load_run(tmp_path / "run")
    assert run.model.conv1.in_channels == 1 and run.preprocess.in_chans == 1
    probs, saved = reloaded_probabilities(run)
    assert np.abs(probs - saved).max() < 1e-5
    result = explain_run(tmp_path / "run", n=6, seed=0)
    assert result.images.shape == (6, 32, 32, 3) and result.maps.shape == (6, 32, 32)
    assert sorted(set(result.true)) == ["cross", "disc", "square"]


def test_gradcam_grid_side_by_side(breast_runs):
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    from medimg.plots.gradcam import gradcam_grid

    ids = common_gallery([breast_runs["scratch"], breast_runs["tl"]], 4, seed=0)
    results = [explain_run(breast_runs[arm], ids=ids) for arm in ("scratch", "tl")]
    assert results[1].layer == "blocks.2" and results[1].layer_size == (4, 4)
    fig = gradcam_grid(results, ["scratch", "TL"])
    assert isinstance(fig, Figure) and len(fig.axes) == 4 * 3
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    assert buffer.tell() > 20_000
    buffer.seek(0)
    assert imread(buffer, format="png")[..., :3].std() > 0.05
    with pytest.raises(MedimgError, match="same ids"):
        gradcam_grid([results[0], explain_run(breast_runs["tl"], n=3, seed=0)], ["a", "b"])


# --- bad input ---------------------------------------------------------------------------------

def test_load_run_refuses_what_is_not_a_finished_run(tmp_path):
    with pytest.raises(MedimgError, match=f"{tmp_path}.*not a finished medimg run"):
        load_run(tmp_path)
    with pytest.raises(MedimgError, match="missing"):
        load_run(tmp_path / "nope")
