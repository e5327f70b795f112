"""The learning curve of self-supervised pretraining, measured online: how good are the features after N steps?

Every ``every`` optimiser steps (and at step 0 and at the end), the current backbone's frozen features of
each *curve target* are read by the two MedMNIST+ probes of :mod:`medimg.probe.linear_knn` (a linear probe and kNN),
fitted on the target's training split and scored on its **validation** split (never test). Before the
first step, the same probes read the reference networks: the same architecture at random initialisation
(one per reference seed: the scratch arms' networks) and with ImageNet weights. Rows go to ``curve.csv``
beside the checkpoint, rewritten atomically after every point:

``kind`` (checkpoint | random | imagenet), ``step``, ``pairs`` (image pairs seen: step x batch x processes),
``train_seconds`` (pretraining time so far, evaluation excluded), ``target``, ``protocol`` (linear | knn),
``val_accuracy``, ``val_log_loss`` (linear probe only), ``setting`` (C or k), ``seed`` (random references).

A resumed run keeps the rows up to the step it resumes from and goes on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl

from medimg.atomic import write_text
from medimg.ssl.config import SSLConfig
from medimg.data import Preprocess

COLUMNS = ("kind", "step", "pairs", "train_seconds", "target", "protocol", "val_accuracy", "val_log_loss", "setting",
           "seed")


@dataclass(frozen=True)
class CurveTarget:
    """A dataset whose validation split scores the backbone: its name and the training cap its arms use."""

    dataset: str
    max_train_images: int | None = None


def curve_path(checkpoint) -> Path:
    """``<checkpoint stem>.curve.csv`` beside the checkpoint."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.curve.csv")


def read_curve(checkpoint) -> pd.DataFrame:
    """The curve beside ``checkpoint`` (empty with the columns when there is none)."""
    path = curve_path(checkpoint)
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=COLUMNS)


class Prober:
    """The probes of one backbone's features on the curve targets (data prepared once)."""

    def __init__(self, config: SSLConfig, targets: list[CurveTarget], *, in_chans: int, progress: bool = False):
        from medimg.data import prepare
        from medimg.ssl.pool import data_config

        self.config, self.targets, self.in_chans = config, targets, in_chans
        self.data = {t.dataset: prepare(data_config(config, t.dataset), progress=progress) for t in targets}

    def rows(self, backbone, **fields) -> list[dict]:
        """One row per target and protocol for ``backbone`` (``(B, C, H, W)`` in, pooled features out)."""
        from medimg.probe.features import FrozenFeatures, model_features
        from medimg.probe.linear_knn import KNNProbe, LinearProbe

        out = []
        for target in self.targets:
            data = self.data[target.dataset]
            channels = data.decoded.channels
            grey_as = None if channels == 3 else ("single" if self.in_chans == 1 else "replicate")
            preprocess = Preprocess.from_pretrained_cfg(backbone.pretrained_cfg, image_channels=channels,
                                                        grey_as=grey_as, size=self.config.size)
            x, y = model_features(backbone, data, preprocess, splits=("train", "val"))
            features = FrozenFeatures(x=x, y=y, classes=tuple(data.classes))
            cap = dict(max_train_images=target.max_train_images, split_seed=self.config.split_seed)
            linear = LinearProbe(random_state=0, **cap).fit(features)
            knn = KNNProbe(**cap).fit(features)
            for protocol, probe, setting in (("linear", linear, linear.C_), ("knn", knn, knn.k_)):
                accuracy = float(np.mean(probe.predict_proba(x["val"]).argmax(1) == y["val"]))
                out.append(dict(fields, target=target.dataset, protocol=protocol, val_accuracy=accuracy,
                                val_log_loss=linear.val_log_loss_[linear.C_] if protocol == "linear" else None,
                                setting=float(setting)))
        return out


def reference_rows(prober: Prober, arch: str, *, seeds, imagenet_weights: str | None, timm_kwargs: dict) -> list[dict]:
    """The reference lines: ``arch`` at random initialisation (seed by seed) and with ImageNet weights."""
    import torch

    from medimg.models.backbones import create_backbone

    rows = []
    for seed in seeds:
        torch.manual_seed(seed)  # as the scratch arm's network of this seed (medimg.probe.features)
        model, _ = create_backbone(arch, num_classes=0, in_chans=prober.in_chans, weights="random")
        rows += prober.rows(model, kind="random", seed=seed)
    if imagenet_weights:
        model, _ = create_backbone(arch, num_classes=0, in_chans=prober.in_chans, weights=imagenet_weights)
        rows += prober.rows(model, kind="imagenet")
    return rows


class LearningCurve(pl.Callback):
    """Writes the curve's points during training (only on the first process of a DDP run)."""

    def __init__(self, path: Path, prober: Prober, *, every: int, batch_size: int, references=None):
        self.path, self.prober, self.every, self.batch_size = Path(path), prober, every, batch_size
        self.references = references  # callable giving the reference rows, run once before the first point

    def _write(self, rows: list[dict]) -> None:
        write_text(self.path, pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(index=False))

    def _point(self, trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        start = time.perf_counter()
        step = trainer.global_step
        old = read_curve_file(self.path)
        rows = [r for r in old if not (r["kind"] == "checkpoint" and r["step"] >= step)]
        if self.references and not any(r["kind"] != "checkpoint" for r in rows):
            rows += self.references()
        world = trainer.world_size
        rows += self.prober.rows(module.backbone, kind="checkpoint", step=step,
                                 pairs=step * self.batch_size * world,
                                 train_seconds=round(module.clock["train_seconds"], 1))
        self._write(rows)
        module.clock["curve_seconds"] += time.perf_counter() - start

    def on_train_start(self, trainer, module):
        done = {r["step"] for r in read_curve_file(self.path) if r["kind"] == "checkpoint"}
        if trainer.global_step not in done:
            self._point(trainer, module)

    def on_train_batch_end(self, trainer, module, *_):
        if trainer.global_step % self.every == 0:
            self._point(trainer, module)

    def on_train_end(self, trainer, module):
        done = {r["step"] for r in read_curve_file(self.path) if r["kind"] == "checkpoint"}
        if trainer.global_step not in done:
            self._point(trainer, module)


def read_curve_file(path: Path) -> list[dict]:
    if not Path(path).is_file():
        return []
    frame = pd.read_csv(path)
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in frame.to_dict("records")]


# --- reading a curve ---------------------------------------------------------------------------

def crossings(curve: pd.DataFrame) -> pd.DataFrame:
    """Per target and protocol: the references (best and mean random initialisation, ImageNet), the checkpoint's
    first and last points, its best, and the first step at which it beats the best random initialisation (NaN
    when it never does within the curve) and stays above it at the last point.

    Columns: target, protocol, random_best, random_mean, imagenet, step0, last_step, last, best, best_step,
    first_step_above_random, above_random_at_end.
    """
    rows = []
    points = curve[curve.kind == "checkpoint"].sort_values("step", kind="stable")  # targets in curve order
    for (target, protocol), group in points.groupby(["target", "protocol"], sort=False):
        refs = curve[(curve.target == target) & (curve.protocol == protocol)]
        random = refs[refs.kind == "random"].val_accuracy
        imagenet = refs[refs.kind == "imagenet"].val_accuracy
        bar = float(random.max()) if len(random) else np.nan
        above = group[group.val_accuracy > bar]
        best = group.loc[group.val_accuracy.idxmax()]
        rows.append(dict(target=target, protocol=protocol, random_best=bar,
                         random_mean=float(random.mean()) if len(random) else np.nan,
                         imagenet=float(imagenet.iloc[0]) if len(imagenet) else np.nan,
                         step0=float(group.val_accuracy.iloc[0]), last_step=int(group.step.iloc[-1]),
                         last=float(group.val_accuracy.iloc[-1]), best=float(best.val_accuracy),
                         best_step=int(best.step),
                         first_step_above_random=float(above.step.iloc[0]) if len(above) else np.nan,
                         above_random_at_end=bool(group.val_accuracy.iloc[-1] > bar)))
    return pd.DataFrame(rows)


def crossing_sentence(row, hours_per_step: float | None = None) -> str:
    """One line for the book about one target and protocol of :func:`crossings`."""
    name = "linear probe" if row["protocol"] == "linear" else "kNN"
    at = (f"{row['last_step']:,} steps" + (f" ({row['last_step'] * hours_per_step:.2f} CPU core-hours)"
                                           if hours_per_step else ""))
    if row["above_random_at_end"]:
        first = int(row["first_step_above_random"])
        return (f"**{row['target']}**, {name}: beats the best random initialisation from step {first:,} on its way "
                f"to {row['last']:.3f} at {at} (random best {row['random_best']:.3f}, ImageNet {row['imagenet']:.3f}).")
    return (f"**{row['target']}**, {name}: does **not** beat the best random initialisation at {at} "
            f"({row['last']:.3f} against {row['random_best']:.3f}; its best was {row['best']:.3f} at step "
            f"{row['best_step']:,}; ImageNet {row['imagenet']:.3f}).")


def budget_answer(found: pd.DataFrame) -> str:
    """The chapter's answer in a few sentences, from :func:`crossings` rows of every checkpoint (with ``method``,
    ``pool`` and ``hours_per_step`` columns, and ``init``, random where it is missing): per method of the
    random-initialised checkpoints and protocol, on how many targets the last point beats the best random
    initialisation, and the budget that was spent; with several methods, the same count for the checkpoint each
    target's SSL arm fine-tunes from (the best last linear-probe point on validation,
    :func:`medimg.study.pretraining.arm_checkpoint`); for ImageNet-initialised checkpoints (TL+SSL's start), on how many
    targets they beat ImageNet's own features."""
    from medimg.ssl.methods import METHODS

    if found.empty:
        return "No checkpoint of this profile's pretraining stage is finished yet, so nothing can be read off a curve."
    found = found.assign(**{k: found[k].fillna(v) if k in found else v for k, v in (("method", "simclr"),
                                                                                     ("init", "random"))})
    sentences = []
    random = found[found.init == "random"]
    for method, rows in random.groupby("method", sort=False):
        sentences.append(f"**{METHODS[method]['name']}** ({_budgets(rows)}): its frozen features beat the best random "
                         f"initialisation on validation {_counts(rows)}. Against the *mean* random initialisation "
                         f"(the best of several seeds is a high bar on small validation splits) they are above on "
                         f"{int((rows['last'] > rows.random_mean).sum())} of {len(rows)} target-protocol pairs, and "
                         f"against ImageNet's features on {int((rows['last'] > rows.imagenet).sum())} of {len(rows)}.")
    if random.method.nunique() > 1:
        linear = random[random.protocol == "linear"]
        chosen = linear.loc[linear.groupby("target", sort=False)["last"].idxmax(), ["target", "method"]]
        picked = random[[(t, m) in set(zip(chosen.target, chosen.method)) for t, m in zip(random.target, random.method)]]
        names = ", ".join(f"{t}: {METHODS[m]['name']}" for t, m in zip(chosen.target, chosen.method))
        sentences.append(f"Taking for each target the checkpoint with the better last linear-probe point on "
                         f"validation, the one its SSL arm fine-tunes from ({names}), the features beat the best "
                         f"random initialisation {_counts(picked)}.")
    for method, rows in found[found.init == "imagenet"].groupby("method", sort=False):
        sentences.append(f"**{METHODS[method]['name']} continued from ImageNet weights** (where the TL+SSL arms start; "
                         f"{_budgets(rows)}): its features beat ImageNet's own on validation "
                         f"{_counts(rows, above='imagenet')}, and the best random initialisation {_counts(rows)}.")
    return "At the end of each checkpoint's budget: " + " ".join(sentences)


def _budgets(rows: pd.DataFrame) -> str:
    """"grey pool 3,000 steps, 1.80 CPU core-hours; colour pool ..." for one checkpoint per pool."""
    return "; ".join(f"{pool} pool {int(g.last_step.max()):,} steps, "
                     f"{g.last_step.max() * g.hours_per_step.iloc[0]:.2f} CPU core-hours"
                     for pool, g in rows.groupby("pool", sort=False))


def _counts(rows: pd.DataFrame, above: str = "random") -> str:
    """"under the linear probe on **a of b** targets (names) and under the kNN on ..." for :func:`crossings` rows:
    where the last point beats the best random initialisation (``above="random"``) or ImageNet's features
    (``"imagenet"``)."""
    parts = []
    for protocol, name in (("linear", "linear probe"), ("knn", "kNN")):
        own = rows[rows.protocol == protocol]
        won = own[own.above_random_at_end] if above == "random" else own[own["last"] > own.imagenet]
        parts.append(f"under the {name} on **{len(won)} of {len(own)}** targets"
                     + (f" ({', '.join(won.target)})" if len(won) else ""))
    return " and ".join(parts)
