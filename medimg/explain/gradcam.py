"""Grad-CAM for trained runs, with the checks that say whether a map can be trusted.

* :func:`gradcam_maps` computes Grad-CAM (pytorch-grad-cam) at a layer chosen by
  :func:`pick_target_layer`: the last backbone layer whose output is still at least
  ``min_size`` pixels across. At 28 px a ResNet's ``layer4`` is 1x1, and a 1x1 map upsampled
  is constant (after min-max scaling, all zero), so the usual "last conv layer" says nothing.
* :func:`randomisation_check` is the model-randomisation sanity check of Adebayo et al. (2018):
  maps from a copy with every weight re-initialised must look different, or the map shows the
  image rather than what the model learned.
* :func:`deletion_score` deletes the most salient pixels first and integrates the target-class
  probability; a lower area than deleting in random order means the map points at evidence.
* :func:`explain_run` does all of this for a gallery of test images of a run directory, the
  same images for several runs when given :func:`common_gallery`'s ids.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from medimg.atomic import atomic_path
from medimg.errors import MedimgError
from medimg.finetune.runs import write_json

HEAD_NAMES = {"global_pool", "head", "head_drop", "fc", "classifier", "pre_logits"}


# --- the layer ---------------------------------------------------------------------------------

def layer_sizes(model: nn.Module, input_size: int, in_chans: int = 3) -> list[tuple[str, nn.Module, tuple[int, int]]]:
    """Backbone blocks with a 4-D output, in forward order, with that output's (height, width).

    Blocks are the model's children and the members of its ``Sequential`` stages (ResNet
    ``layer3.1``, MobileNet ``blocks.4.2``); the classifier and global pooling are left out.
    A stage returns its last block's tensor, and an in-place activation its input's: such a
    tensor is named by the module that produced it last (``layer3``, not ``layer3.5``).
    """
    head = HEAD_NAMES | {getattr(model, "default_cfg", {}).get("classifier", "fc").split(".")[0]}
    seen: list[tuple[str, nn.Module, torch.Tensor]] = []

    def hook(name):
        def record(module, _, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                if seen and seen[-1][2] is output:
                    seen.pop()
                seen.append((name, module, output))
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in _blocks(model) if
               name.split(".")[0] not in head]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_chans, input_size, input_size, device=_device(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [(name, module, tuple(out.shape[-2:])) for name, module, out in seen]


def _blocks(module: nn.Module, prefix: str = ""):
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            if not all(isinstance(c, nn.Sequential) for c in child):  # a stage, not a list of stages
                yield full, child
            yield from _blocks(child, f"{full}.")
        else:
            yield full, child


def pick_target_layer(model: nn.Module, input_size: int, in_chans: int = 3, min_size: int = 4) -> tuple[str, nn.Module]:
    """The last backbone block whose output is at least ``min_size`` pixels high and wide.

    When none is that large (a tiny input), the block with the largest output, the latest of equals.
    """
    sizes = layer_sizes(model, input_size, in_chans)
    if not sizes:
        raise MedimgError(f"{type(model).__name__} has no convolutional blocks for Grad-CAM: use a CNN backbone")
    big = [(name, module) for name, module, hw in sizes if min(hw) >= min_size]
    if big:
        return big[-1]
    best = max(range(len(sizes)), key=lambda i: (min(sizes[i][2]), i))
    return sizes[best][:2]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --- maps --------------------------------------------------------------------------------------

def gradcam_maps(model: nn.Module, images: torch.Tensor, targets, layer: str | nn.Module | None = None,
                 batch_size: int = 32) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] for preprocessed ``images`` (N, C, H, W) and class indices ``targets``.

    ``layer`` is a module, a module name, or None for :func:`pick_target_layer`'s choice. Each
    map is scaled to [0, 1] on its own; a map that is zero everywhere stays zero.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if layer is None:
        layer = pick_target_layer(model, images.shape[-1], images.shape[1])[1]
    elif isinstance(layer, str):
        layer = model.get_submodule(layer)
    targets = [int(t) for t in targets]
    out = []
    with torch.enable_grad(), GradCAM(model=model, target_layers=[layer]) as cam:
        for start in range(0, len(images), batch_size):
            # an input that needs gradients: the map exists even when every weight is frozen
            x = images[start:start + batch_size].detach().to(_device(model)).requires_grad_(True)
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets[start:start + batch_size]])
            if maps is None:  # pytorch-grad-cam's context manager swallows IndexError
                raise RuntimeError("pytorch-grad-cam failed on this batch (an IndexError it printed)")
            out.append(maps)
    return np.clip(np.concatenate(out).astype(np.float32), 0.0, 1.0)


# --- sanity checks -----------------------------------------------------------------------------

def randomised_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every parameter and batch-norm statistic re-initialised."""
    clone = copy.deepcopy(model)
    covered = set()
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        for module in clone.modules():
            own = list(module.parameters(recurse=False))
            if own and hasattr(module, "reset_parameters"):
                module.reset_parameters()  # batch norm: also its running statistics
                covered.update(id(p) for p in own)
        for p in clone.parameters():
            if id(p) not in covered:  # layers without their own init
                nn.init.normal_(p, std=0.02)
    return clone.eval()


def randomisation_check(model: nn.Module, images: torch.Tensor, targets, layer_name: str, seed: int = 0,
                        maps: np.ndarray | None = None) -> dict:
    """Similarity of the trained model's maps to those of a fully re-initialised copy (Adebayo et al. 2018).

    Per image, Spearman's rank correlation and Pearson's correlation of the two maps, averaged.
    Near 1 fails the check (the map ignores the weights). A constant map (Grad-CAM zero
    everywhere) shares no spatial structure with anything and counts as correlation 0.
    ``maps``: the trained model's maps when already computed; the randomised ones come back as
    ``random_maps``.
    """
    from scipy.stats import spearmanr

    trained = gradcam_maps(model, images, targets, layer_name) if maps is None else maps
    random = gradcam_maps(randomised_copy(model, seed), images, targets, layer_name)
    spearman, pearson, constant = [], [], 0
    for a, b in zip(trained.reshape(len(trained), -1), random.reshape(len(random), -1)):
        if a.std() == 0 or b.std() == 0:
            constant += 1
            spearman.append(0.0)
            pearson.append(0.0)
            continue
        spearman.append(float(spearmanr(a, b).statistic))
        pearson.append(float(np.corrcoef(a, b)[0, 1]))
    return dict(spearman=float(np.mean(spearman)), pearson=float(np.mean(pearson)), spearman_per_image=spearman,
                constant_maps=constant, seed=seed, layer=layer_name, random_maps=random)


@torch.no_grad()
def deletion_score(model: nn.Module, images: torch.Tensor, targets, maps: np.ndarray, steps: int = 10,
                   seed: int = 0) -> dict:
    """Area under the target-class probability as pixels are deleted, most salient first, per image.

    Deleted pixels become 0, which in preprocessed space is the dataset mean. The same curve for a
    random deletion order (``random_auc``) is the yardstick: ``auc`` below it means the map found
    pixels the prediction depends on. Ties in the map (large zero areas) are broken at random.
    """
    model.eval()
    n, _, h, w = images.shape
    if maps.shape != (n, h, w):
        raise ValueError(f"maps {maps.shape} do not match images {tuple(images.shape)}")
    rng = np.random.default_rng(seed)
    flat = maps.reshape(n, -1)
    orders = dict(map=np.lexsort((rng.random(flat.shape), -flat)),  # last key sorts first
                  random=np.argsort(rng.random(flat.shape), axis=1))
    fractions = np.linspace(0, 1, steps + 1)
    idx = torch.as_tensor([int(t) for t in targets])
    x = images.to(_device(model))
    curves = {}
    for kind, order in orders.items():
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(h * w)[None].repeat(n, 0), axis=1)  # each pixel's place in the order
        curve = []
        for f in fractions:
            keep = torch.as_tensor(rank >= round(f * h * w)).view(n, 1, h, w).to(x.device)
            probs = torch.softmax(model(x * keep).float(), 1).cpu()
            curve.append(probs[torch.arange(n), idx].numpy())
        curves[kind] = np.stack(curve, 1)
    return dict(auc=np.trapezoid(curves["map"], fractions, axis=1),
                random_auc=np.trapezoid(curves["random"], fractions, axis=1),
                curve=curves["map"], random_curve=curves["random"], fractions=fractions)


# --- which images ------------------------------------------------------------------------------

def select_gallery(predictions, n: int, seed: int = 0) -> np.ndarray:
    """Positions of ``n`` predictions to show: per true class, correct and wrong ones, balanced where possible.

    ``predictions`` is a ``predictions.csv`` table (``true``, ``predicted``) or a pair of arrays
    (true, predicted). Groups take turns (class by class, correct before wrong) until ``n`` are
    chosen or none are left; which members a group gives is drawn with ``seed``. The result is
    ordered by group, so a grid reads class by class.
    """
    true, predicted = (predictions["true"], predictions["predicted"]) if isinstance(predictions, pd.DataFrame) \
        else predictions
    true, predicted = np.asarray(true), np.asarray(predicted)
    rng = np.random.default_rng(seed)
    groups = {}
    for cls in sorted(set(true.tolist())):
        for correct in (True, False):
            members = np.flatnonzero((true == cls) & ((predicted == true) == correct))
            groups[(cls, not correct)] = list(rng.permutation(members))
    chosen = {key: [] for key in groups}
    left = min(n, len(true))
    while left:
        for key, pool in groups.items():
            if pool and left:
                chosen[key].append(int(pool.pop(0)))
                left -= 1
    return np.array([i for key in chosen for i in chosen[key]], dtype=np.int64)


def common_gallery(runs, n: int, seed: int = 0) -> list[str]:
    """Ids of test images for a side-by-side gallery: chosen from the first run's predictions among
    the ids that every run predicted. ``runs`` are run directories or ``predictions.csv`` tables."""
    from medimg.finetune.runs import read_predictions

    tables = [r if isinstance(r, pd.DataFrame) else read_predictions(r) for r in runs]
    shared = set.intersection(*(set(t["id"].astype(str)) for t in tables))
    if not shared:
        raise MedimgError("the runs share no test images: compare runs on the same dataset and split")
    first = tables[0][tables[0]["id"].astype(str).isin(shared)].reset_index(drop=True)
    return [str(first["id"][i]) for i in select_gallery(first, n, seed)]


# --- a whole run -------------------------------------------------------------------------------

@dataclass
class Explanation:
    """Grad-CAM of one run on a gallery of its test images, with the sanity checks' numbers."""

    run_dir: str
    arch: str
    method: str
    classes: list[str]
    ids: list[str]
    true: list[str]
    predicted: list[str]  # also the class each map explains
    probability: np.ndarray  # of the predicted class, by the reloaded model
    maps: np.ndarray  # (N, H, W) float32 in [0, 1]
    images: np.ndarray  # (N, H, W, 3) uint8, as the model saw them before normalisation
    layer: str
    layer_size: tuple[int, int]
    randomisation: dict  # spearman, pearson, constant_maps
    deletion: dict  # auc, random_auc per image
    reproduced_max_abs_diff: float  # reloaded model vs predictions.csv probabilities
    n: int
    seed: int

    def summary(self) -> dict:
        """What ``gradcam.json`` holds: everything but the pixel arrays."""
        d = self.deletion
        return dict(
            run_dir=self.run_dir, arch=self.arch, method=self.method, classes=self.classes, n=self.n, seed=self.seed,
            ids=self.ids, true=self.true, predicted=self.predicted, probability=self.probability.round(6).tolist(),
            layer=self.layer, layer_size=list(self.layer_size), map_size=list(self.maps.shape[1:]),
            randomisation={k: self.randomisation[k] for k in ("spearman", "pearson", "constant_maps", "seed")},
            deletion=dict(steps=len(d["fractions"]) - 1, auc_mean=float(np.mean(d["auc"])),
                          random_auc_mean=float(np.mean(d["random_auc"])),
                          below_random=float(np.mean(d["auc"] < d["random_auc"])),
                          auc=d["auc"].round(6).tolist(), random_auc=d["random_auc"].round(6).tolist()),
            reproduced_max_abs_diff=self.reproduced_max_abs_diff,
        )


def explain_run(run_dir, n: int = 16, seed: int = 0, out=None, *, ids: list[str] | None = None, force: bool = False,
                min_size: int = 4, steps: int = 10) -> Explanation:
    """Grad-CAM of the run in ``run_dir`` on ``n`` test images (or on ``ids``), each map for the predicted class.

    With ``out``, writes ``gradcam.npz`` (maps, ids), ``gradcam.png`` (the gallery) and
    ``gradcam.json`` (summary) there; an existing ``gradcam.json`` is only replaced with ``force``.
    """
    from medimg.finetune.run_model import load_run

    json_path = None if out is None else Path(out) / "gradcam.json"
    if json_path is not None and json_path.exists() and not force:
        raise MedimgError(f"{json_path} already exists: choose another output folder, or pass force=True to replace it")
    run = load_run(run_dir)
    table = run.predictions()
    if ids is None:
        ids = table["id"].iloc[select_gallery(table, n, seed)].tolist()
    rows = table.set_index("id").reindex(ids)
    if rows["predicted"].isna().any():
        raise MedimgError(f"some ids are not among the test predictions of {run_dir}: use common_gallery to pick "
                          f"ids every run predicted")
    positions = run.positions(ids)
    x = run.inputs(positions)
    targets = [run.classes.index(c) for c in rows["predicted"]]
    with torch.no_grad():
        probs = torch.softmax(run.model(x).float(), 1).numpy()
    saved = rows[[f"prob_{c}" for c in run.classes]].to_numpy(float)
    diff = float(np.abs(probs - saved).max())
    if diff > 0.05:  # far beyond numerics: the network is not the one that was trained
        raise MedimgError(f"the reloaded model of {run_dir} does not reproduce predictions.csv (off by {diff:.3f}): "
                          f"the run directory was changed after training, or written by another medimg version")

    name, layer = pick_target_layer(run.model, run.config.size, run.preprocess.in_chans, min_size)
    size = {k: hw for k, _, hw in layer_sizes(run.model, run.config.size, run.preprocess.in_chans)}[name]
    maps = gradcam_maps(run.model, x, targets, layer)
    result = Explanation(
        run_dir=str(run_dir), arch=run.config.arch, method=run.config.method, classes=run.classes, ids=list(ids),
        true=rows["true"].tolist(), predicted=rows["predicted"].tolist(),
        probability=probs[np.arange(len(ids)), targets], maps=maps,
        images=_shown_images(run.data, positions), layer=name, layer_size=size,
        randomisation=randomisation_check(run.model, x, targets, name, seed, maps=maps),
        deletion=deletion_score(run.model, x, targets, maps, steps=steps, seed=seed),
        reproduced_max_abs_diff=diff, n=len(ids), seed=seed)
    if out is not None:
        with atomic_path(Path(out) / "gradcam.npz") as tmp, open(tmp, "wb") as fh:
            # no images: they are the dataset's, read back from the data directory by id
            np.savez_compressed(fh, maps=result.maps, ids=np.array(result.ids))
        from medimg.plots.gradcam import gradcam_grid

        with atomic_path(Path(out) / "gradcam.png") as tmp:
            gradcam_grid([result], [f"{run.config.method} ({run.config.arch})"]).savefig(tmp, format="png", dpi=110)
        write_json(json_path, result.summary())  # last: its presence marks the output complete
    return result



def _shown_images(data, positions) -> np.ndarray:
    """The images at ``positions`` as the gallery shows them: (N, H, W, 3) uint8, grey copied to 3 channels."""
    images = data.decoded.images[np.asarray(positions)]
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def load_explanation(out, run_dir=None) -> Explanation:
    """An explanation written by :func:`explain_run` (``gradcam.json`` and ``gradcam.npz`` in ``out``).

    The images come from the data directory, by id, through the run's data settings: ``run_dir``,
    or the run directory recorded in ``gradcam.json`` (which a moved or cloned folder no longer has).
    """
    import json

    from medimg.finetune.run_model import image_positions
    from medimg.finetune.runs import read_run

    out = Path(out)
    try:
        summary = json.loads((out / "gradcam.json").read_text())
        with np.load(out / "gradcam.npz") as arrays:
            maps, ids = arrays["maps"], arrays["ids"].tolist()
    except (OSError, ValueError, KeyError) as err:
        raise MedimgError(f"cannot read the Grad-CAM result in {out} ({err}): rerun 'medimg gradcam' with --force")
    if ids != summary["ids"]:
        raise MedimgError(f"{out / 'gradcam.npz'} and gradcam.json name different images: rerun 'medimg gradcam' "
                          f"with --force")
    run_dir = Path(run_dir or summary["run_dir"])
    data = read_run(run_dir).prepared_data()
    images = _shown_images(data, image_positions(data, ids, run_dir))
    d = summary["deletion"]
    return Explanation(
        run_dir=str(run_dir), arch=summary["arch"], method=summary["method"], classes=summary["classes"],
        ids=summary["ids"], true=summary["true"], predicted=summary["predicted"],
        probability=np.asarray(summary["probability"]), maps=maps, images=images,
        layer=summary["layer"], layer_size=tuple(summary["layer_size"]), randomisation=summary["randomisation"],
        deletion=dict(auc=np.asarray(d["auc"]), random_auc=np.asarray(d["random_auc"]),
                      fractions=np.linspace(0, 1, d["steps"] + 1)),
        reproduced_max_abs_diff=summary["reproduced_max_abs_diff"], n=summary["n"], seed=summary["seed"])


def gallery(run_dirs: dict[str, Path], n: int = 8, seed: int = 0) -> dict[str, Explanation]:
    """Grad-CAM of the same ``n`` test images for each arm's run, kept in ``RUN_DIR/gradcam``.

    Computed once (that needs the run's ``best.ckpt``) and read back afterwards, so a book built
    from committed results shows its galleries without the checkpoints (the images come from the data directory).
    """
    cached = {arm: load_explanation(Path(d) / "gradcam", run_dir=d) for arm, d in run_dirs.items()
              if (Path(d) / "gradcam" / "gradcam.json").is_file()}
    ids = next(iter(cached.values())).ids if cached else common_gallery(list(run_dirs.values()), n, seed)
    return {arm: cached[arm] if arm in cached and cached[arm].ids == ids
            else explain_run(d, ids=ids, seed=seed, out=Path(d) / "gradcam", force=True)
            for arm, d in run_dirs.items()}
