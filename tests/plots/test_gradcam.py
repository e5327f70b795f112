"""medimg.plots.gradcam draws one row per image: the image, then each arm's own image and map, captioned right."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from medimg.errors import MedimgError  # noqa: E402
from medimg.plots.gradcam import gradcam_grid  # noqa: E402


def _explanation(method, arch, ids, true, predicted, *, size, offset, layer="layer4", layer_size=(2, 2)):
    """A stand-in for medimg.explain.gradcam.Explanation with the fields the gallery reads."""
    n = len(ids)
    rng = np.random.default_rng(offset)
    return SimpleNamespace(method=method, arch=arch, ids=list(ids), true=list(true), predicted=list(predicted),
                           images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                           maps=rng.random((n, size, size)).astype(np.float32), layer=layer, layer_size=layer_size)


IDS, TRUE = ["img-1", "img-2", "img-3"], ["benign", "malignant", "benign"]


def _pair():
    tl = _explanation("tl", "resnet18", IDS, TRUE, ["benign", "benign", "benign"], size=16, offset=0)
    ssl = _explanation("ssl", "efficientnet_b0", IDS, TRUE, ["malignant", "malignant", "benign"], size=12, offset=1,
                       layer="conv_head", layer_size=(4, 4))
    return tl, ssl


def test_gradcam_grid_one_row_per_image_first_the_image_then_each_arms_overlay():
    tl, ssl = _pair()
    fig = gradcam_grid([tl, ssl], ["TL", "SSL"], alpha=0.3)
    axes = np.array(fig.axes).reshape(len(IDS), 3)
    for i, row in enumerate(axes):
        assert np.array_equal(row[0].images[0].get_array(), tl.images[i]) and len(row[0].images) == 1
        for ax, result in zip(row[1:], (tl, ssl)):
            image, heat = ax.images
            assert np.array_equal(image.get_array(), result.images[i])  # each arm at its own input size
            assert np.array_equal(heat.get_array(), result.maps[i])
            assert heat.get_alpha() == 0.3 and heat.get_clim() == (0, 1) and heat.get_cmap().name == "jet"
        assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in row)


def test_gradcam_grid_captions_name_the_image_true_class_arm_and_wrong_predictions():
    tl, ssl = _pair()
    axes = np.array(gradcam_grid([tl, ssl], ["TL", "SSL"]).axes).reshape(len(IDS), 3)
    assert [ax.get_title() for ax in axes[:, 0]] == [f"{i}\ntrue: {t}" for i, t in zip(IDS, TRUE)]
    assert [ax.get_title() for ax in axes[0, 1:]] == ["TL\npred: benign", "SSL\npred: malignant  (wrong)"]
    assert [ax.get_title() for ax in axes[1, 1:]] == ["pred: benign  (wrong)", "pred: malignant"]
    assert [ax.get_title() for ax in axes[2, 1:]] == ["pred: benign", "pred: benign"]
    assert gradcam_grid([tl, ssl], ["TL", "SSL"]).get_suptitle() == \
        "Grad-CAM (predicted class); layers: TL layer4 2x2, SSL conv_head 4x4"


@pytest.mark.parametrize("arms", [1, 3])
def test_gradcam_grid_columns_are_the_image_and_one_per_arm_with_default_titles(arms):
    results = [_explanation(f"m{k}", "resnet18", IDS[:2], TRUE[:2], TRUE[:2], size=8, offset=k) for k in range(arms)]
    fig = gradcam_grid(results)
    assert len(fig.axes) == 2 * (1 + arms)
    assert [ax.get_title().split("\n")[0] for ax in fig.axes[1:1 + arms]] == [f"m{k} resnet18" for k in range(arms)]


def test_gradcam_grid_refuses_results_on_other_images_or_a_wrong_number_of_titles():
    tl, ssl = _pair()
    other = _explanation("ssl", "resnet18", ["img-9", *IDS[1:]], TRUE, TRUE, size=8, offset=2)
    with pytest.raises(MedimgError, match="different images"):
        gradcam_grid([tl, other])
    with pytest.raises(MedimgError, match="1 titles for 2 results"):
        gradcam_grid([tl, ssl], ["TL"])
    with pytest.raises(MedimgError, match="no Grad-CAM results"):
        gradcam_grid([])
