"""Arms as records: resolved from a profile with a person's overrides, round-tripped, and a user's folder by name."""
import shlex

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from medimg.study.arm import Arm, parse_seeds, profile_arm
from medimg.finetune.config import FinetuneConfig
from medimg.errors import MedimgError
from medimg.study.chapter_arms import comparison_arms
from medimg.study.profiles import load_profile, read_study


def assert_one_line_error(message: str, *words: str) -> None:
    assert "\n" not in message and all(w in message for w in words), message


def smoke():
    return load_profile("smoke", REPO / "study.yml")


def test_an_arm_takes_the_profiles_settings_and_a_persons_overrides():
    p = smoke()
    arm = profile_arm(p, "synthetic_grey", "tl")
    assert arm.seeds == tuple(p["seeds"]) and arm.finetune == p["finetune"] and arm.results_dir == p["results_dir"]
    assert arm.finetune_config(0).weights == p["tl_weights"] and arm.ssl is None and arm.ssl_candidates == ()
    # what papermill's -p passes: text for lists, numbers, None for "the profile's"
    small = profile_arm(p, "synthetic_grey", "tl", seeds="0,3", size=48, epochs=None, augment=True)
    assert small.seeds == (0, 3) and small.finetune["size"] == 48 and small.finetune["epochs"] == p["finetune"]["epochs"]
    assert small.finetune_config(3) == FinetuneConfig(dataset="synthetic_grey", method="tl", weights="tflite", seed=3,
                                                      **dict(p["finetune"], size=48, augment=True))
    ssl = profile_arm(p, "synthetic_colour", "ssl")
    assert ssl.ssl == p["ssl"] and ssl.ssl_candidates == tuple(p["ssl_candidates"]["colour"]) and ssl.slug == "ssl"
    assert Arm.from_dict(ssl.to_dict()) == ssl and Arm.from_dict(small.to_dict()) == small
    # one dataset's own settings (a cap for the one large training split), under a person's override
    capped = dict(p, finetune_by_dataset={"synthetic_grey": dict(max_train_images=100, epochs=3)})
    assert profile_arm(capped, "synthetic_grey", "tl").finetune == dict(p["finetune"], max_train_images=100, epochs=3)
    assert profile_arm(capped, "synthetic_grey", "tl", epochs=2).finetune["epochs"] == 2
    assert profile_arm(capped, "synthetic_colour", "tl").finetune == p["finetune"]


@pytest.mark.parametrize("overrides, words", [
    (dict(sizes=32), ["sizes", "FinetuneConfig"]),
    (dict(seeds="0,0"), ["seeds", "different"]),
    (dict(seeds="one"), ["seeds", "whole numbers"]),
    (dict(epochs=0), ["--epochs 0", "out of range"]),
])
def test_an_arm_refuses_what_cannot_run_when_it_is_made(overrides, words):
    with pytest.raises(MedimgError) as err:
        profile_arm(smoke(), "synthetic_grey", "tl", **overrides)
    assert_one_line_error(str(err.value), *words)


def test_seeds_as_a_person_types_them():
    assert parse_seeds([0, 1]) == parse_seeds("0,1") == parse_seeds("0 1") == (0, 1) and parse_seeds(4) == (4,)


def test_the_rerun_command_gives_back_the_same_arm():
    """The chapter's rerun box: papermill's own reading of its -p arguments resolves to the arm the chapter ran."""
    from papermill.cli import _resolve_type

    from medimg.study.parameters import TEMPLATE_PARAMETERS, rerun_markdown

    p = smoke()
    # a kernel's globals: every parameter of the template (None: the profile's), and names that are not parameters
    parameters = dict(dict.fromkeys(TEMPLATE_PARAMETERS["finetune"]), profile="smoke", dataset="synthetic_grey",
                      method="tl", seeds=[0, 1], balance="down", np=None, chapter_title="x")
    text = rerun_markdown("finetune", parameters, "book/smoke/ablations/balance/synthetic_grey-tl.ipynb")
    papermill_line, study_line = text.replace(" \\\n", " ").splitlines()[1:3]
    words = shlex.split(papermill_line)
    assert words[:3] == ["papermill", "notebooks/finetune.ipynb", "ablations-balance-synthetic_grey-tl.ipynb"]
    passed = {words[i + 1]: _resolve_type(words[i + 2]) for i in range(3, len(words), 3) if words[i] == "-p"}
    assert passed == dict(profile="smoke", dataset="synthetic_grey", method="tl", seeds="0,1", balance="down")
    assert profile_arm(**{"profile": p, **passed}) == profile_arm(p, "synthetic_grey", "tl", seeds=[0, 1],
                                                                              balance="down")
    assert study_line == "medimg study --profile smoke --force --only book/smoke/ablations/balance/synthetic_grey-tl.ipynb"


def test_a_comparison_takes_names_as_text_or_lists():
    p = smoke()
    arms, by = comparison_arms(p, datasets="synthetic_grey", methods="tl,scratch", seeds="0")
    assert by == "method" and [(a.dataset, a.method, a.seeds) for a in arms] == [
        ("synthetic_grey", "tl", (0,)), ("synthetic_grey", "scratch", (0,))]
    assert comparison_arms(p, datasets=["synthetic_grey"], methods=["tl", "scratch"], seeds=[0])[0] == arms


# --- a user's folder in study.yml ---------------------------------------------------------------

def write_folder(root, colour_in="", n=12):
    rng = np.random.default_rng(0)
    for label in ("cyst", "stone"):
        (root / "images" / label).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (40, 40), dtype=np.uint8)
            image = Image.fromarray(pixels)
            if label == colour_in and i == 0:
                image = Image.fromarray(np.stack([pixels, pixels // 2, pixels], -1))
            image.save(root / "images" / label / f"{label}_{i:02d}.png")


def study_with_folder(tmp_path, entry):
    (tmp_path / "study.yml").write_text(f"datasets:\n  my_scans: {entry}\n" + (REPO / "study.yml").read_text())
    return tmp_path / "study.yml"


def test_a_folder_named_in_the_study_file_is_a_dataset_by_its_short_name(tmp_path):
    from medimg.data import DataConfig, prepare
    from medimg.data.registry import REGISTRY

    write_folder(tmp_path / "scans")
    study = study_with_folder(tmp_path, "{path: scans, modality: grey}")
    try:
        p = load_profile("smoke", study)
        assert REGISTRY["my_scans"].modality == "grey"
        data = prepare(DataConfig("my_scans", size=16), progress=False)
        assert data.source.name == "my_scans" and data.classes == ("cyst", "stone") and data.decoded.images.shape[-1] == 1
        arm = profile_arm(p, "my_scans", "ssl")
        assert arm.ssl_candidates == tuple(p["ssl_candidates"]["grey"])  # planned as grey without decoding
    finally:
        REGISTRY.pop("my_scans", None)


@pytest.mark.parametrize("entry, colour_in, words", [
    ("{path: scans, modality: grey}", "stone", ["my_scans is grey", "its images are colour", "modality: colour"]),
    ("{path: scans}", "", ["study.yml", "my_scans", "needs a path and a modality"]),
    ("{path: elsewhere, modality: grey}", "", ["elsewhere", "put the folder there or fix its path"]),
])
def test_a_study_files_folder_that_does_not_fit_is_refused(tmp_path, entry, colour_in, words):
    from medimg.data import DataConfig, prepare
    from medimg.data.registry import REGISTRY

    write_folder(tmp_path / "scans", colour_in=colour_in)
    study = study_with_folder(tmp_path, entry)
    try:
        with pytest.raises(MedimgError) as err:
            read_study(study)
            prepare(DataConfig("my_scans", size=16), progress=False)
        assert_one_line_error(str(err.value), *words)
    finally:
        REGISTRY.pop("my_scans", None)


def test_a_study_file_cannot_rename_a_registered_dataset(tmp_path):
    write_folder(tmp_path / "scans")
    (tmp_path / "study.yml").write_text("datasets:\n  breastmnist: {path: scans, modality: grey}\nprofiles: {}\n")
    with pytest.raises(MedimgError) as err:
        read_study(tmp_path / "study.yml")
    assert_one_line_error(str(err.value), "breastmnist", "already", "another short name")
