"""The learning curve of self-supervised pretraining, measured online: how good are the features after N steps?

Every ``every`` optimiser steps (and at step 0 and at the end), the current backbone's frozen features of
each *curve target* are read by the MedMNIST+ probes of :mod:`medimg.probe.protocols` (a linear probe and kNN),
fitted on the target's training split with their setting (C, k) chosen by stratified cross-validation on it, and
scored on its **validation** split (never test). Each network is read with the batch-norm statistics of
:mod:`medimg.probe.batchnorm`'s rule (``bn`` column; the checkpoint's recomputed on clean pool images, as the stage
stores it). Before the first step, the same probes read the reference networks: the same architecture at random
initialisation (one per reference seed: the scratch arms' networks) and with ImageNet weights, under the rule and
under its alternative; the last point is read under both too. Rows go to ``curve.csv`` beside the checkpoint,
rewritten atomically after every point:

``kind`` (checkpoint | random | imagenet), ``step``, ``pairs`` (image pairs seen: step x batch x processes),
``train_seconds`` (pretraining time so far, evaluation excluded), ``target``, ``protocol`` (linear | knn),
``val_accuracy``, ``val_log_loss`` (linear probe only), ``setting`` (C or k), ``seed`` (random references),
``bn`` (the batch-norm rule), ``val_low`` and ``val_high`` (the accuracy's 95% bootstrap interval over the
validation images), ``n_val``, ``correct`` (which validation images were right, as hex bits: the paired test against
the random references, :func:`medimg.evaluate.stats.beats_references`), and the label-free collapse signals of the
backbone's features of clean pool images, ``rankme`` and ``feature_std`` (:mod:`medimg.probe.collapse`).
Curves made before issue #30 have only the first ten columns (probes tuned on validation, statistics as carried).

A resumed run keeps the rows up to the step it resumes from and goes on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medimg.ssl.config import SSLConfig
from medimg.data import Preprocess
from medimg.ssl.check import BEST_SEED, PAIRED, pack_bits, unpack_bits

COLUMNS = ("kind", "step", "pairs", "train_seconds", "target", "protocol", "val_accuracy", "val_log_loss", "setting",
           "seed", "bn", "val_low", "val_high", "n_val", "correct", "rankme", "feature_std")


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
    return pd.read_csv(path, dtype={"correct": str}) if path.is_file() else pd.DataFrame(columns=COLUMNS)


class Prober:
    """The probes of one backbone's features on the curve targets (data prepared once), and its collapse signals on
    clean pool images (``pool_images``, ``(N, H, W, C)`` uint8 at the model's channels; also the images the
    batch-norm statistics are recomputed on)."""

    def __init__(self, config: SSLConfig, targets: list[CurveTarget], *, in_chans: int, pool_images=None,
                 progress: bool = False):
        from medimg.data import prepare
        from medimg.ssl.pool import data_config

        self.config, self.targets, self.in_chans = config, targets, in_chans
        self.pool_images = pool_images
        self.data = {t.dataset: prepare(data_config(config, t.dataset), progress=progress) for t in targets}
        self._clean = {}

    def clean_images(self, backbone):
        """The clean pool images through ``backbone``'s preprocessing (cached per normalisation)."""
        from medimg.probe.batchnorm import clean_pool_batch

        preprocess = Preprocess.from_pretrained_cfg(backbone.pretrained_cfg, image_channels=self.in_chans,
                                                    grey_as="single" if self.in_chans == 1 else None,
                                                    size=self.config.size)
        key = (preprocess.mean, preprocess.std)
        if key not in self._clean:
            self._clean[key] = clean_pool_batch(self.pool_images, preprocess, seed=self.config.seed)
        return self._clean[key]

    def read_as(self, backbone, init: str, rule: str):
        """``backbone`` as ``rule`` reads a network of ``init`` (random, imagenet, checkpoint)."""
        from medimg.probe.batchnorm import recompute, with_statistics

        if self.pool_images is None or not recompute(rule, init):
            return backbone
        return with_statistics(backbone, self.clean_images(backbone))

    def rows(self, backbone, *, init: str = "checkpoint", rule: str | None = None, **fields) -> list[dict]:
        """One row per target and protocol for ``backbone`` (``(B, C, H, W)`` in, pooled features out), read under
        batch-norm ``rule`` (default :data:`medimg.probe.batchnorm.RULE`; none without pool images)."""
        import torch

        from medimg.evaluate.stats import accuracy_interval
        from medimg.probe.batchnorm import RULE
        from medimg.probe.collapse import normalised_std, rankme
        from medimg.probe.features import FrozenFeatures, model_features
        from medimg.probe.protocols import probes

        rule = rule or (RULE if self.pool_images is not None else None)
        net = self.read_as(backbone, init, rule) if rule else backbone
        signals = {}
        if self.pool_images is not None:
            was_training = net.training
            net.eval()
            with torch.inference_mode():
                pooled = torch.cat([net(b) for b in self.clean_images(net).split(256)]).float().numpy()
            net.train(was_training)
            signals = dict(rankme=round(rankme(pooled), 3), feature_std=round(normalised_std(pooled), 5))
        select = "cv" if rule else "val"
        out = []
        for target in self.targets:
            data = self.data[target.dataset]
            channels = data.decoded.channels
            grey_as = None if channels == 3 else ("single" if self.in_chans == 1 else "replicate")
            preprocess = Preprocess.from_pretrained_cfg(backbone.pretrained_cfg, image_channels=channels,
                                                        grey_as=grey_as, size=self.config.size)
            keep = None
            if target.max_train_images:  # the probes' stratified cap (medimg.probe.linear_knn), taken before reading
                from medimg.data.balance import stratified_subsample

                keep = dict(train=stratified_subsample(data.part("train")[1], target.max_train_images,
                                                       random_state=self.config.split_seed))
            x, y = model_features(net, data, preprocess, splits=("train", "val"), keep=keep)
            features = FrozenFeatures(x=x, y=y, classes=tuple(data.classes))
            cap = dict(max_train_images=None if keep else target.max_train_images, split_seed=self.config.split_seed,
                       select=select)
            for protocol in probes():  # every probe of the table, seeded 0
                probe = protocol.build(seed=0, **cap).fit(features)
                correct = probe.predict_proba(x["val"]).argmax(1) == y["val"]
                (setting,) = probe.setting_.values()
                row = dict(fields, target=target.dataset, protocol=protocol.name, val_accuracy=float(np.mean(correct)),
                           val_log_loss=probe.val_log_loss_[setting] if protocol.log_loss else None,
                           setting=float(setting))
                if rule:
                    interval = accuracy_interval(correct)
                    row.update(bn=rule, val_low=interval["low"], val_high=interval["high"], n_val=len(correct),
                               correct=pack_bits(correct), **signals)
                out.append(row)
        return out


REFERENCES_VERSION = 1  # raise when what a reference row holds or how it is measured changes


def reference_rows(prober: Prober, arch: str, *, seeds, imagenet_weights: str | None, timm_kwargs: dict,
                   known: list[dict] = ()) -> list[dict]:
    """The reference lines: ``arch`` at random initialisation (seed by seed) and with ImageNet weights, each under
    the batch-norm rule and the alternative that differs for it (random: as carried; ImageNet: recomputed on the
    pool). Curves with a pool read the same references whatever the method, steps or recipe, so each reference
    network's rows are kept in ``$MEDIMG_CACHE_DIR/ssl-references/`` by everything that decides them (the network
    and its seed or weights, the targets and their caps, the data settings and the pool's images), and read from
    there. ``known``: reference rows a resumed curve already holds; they fill the cache where it lacks a network (a
    fresh machine), so the next curve on the same pool does not measure them again."""
    import torch

    from medimg.models.backbones import create_backbone
    from medimg.probe.batchnorm import RULE

    # the rule and its alternative; a curve before issue #30 (no pool) is read once, as it was, and never cached
    with_pool = prober.pool_images is not None

    def random_rows(seed):
        torch.manual_seed(seed)  # as the scratch arm's network of this seed (medimg.probe.features)
        model, _ = create_backbone(arch, num_classes=0, in_chans=prober.in_chans, weights="random")
        return [r for rule in ((RULE, "carried") if with_pool else (None,))
                for r in prober.rows(model, init="random", rule=rule, kind="random", seed=seed)]

    def imagenet_rows():
        model, _ = create_backbone(arch, num_classes=0, in_chans=prober.in_chans, weights=imagenet_weights)
        return [r for rule in ((RULE, "pool") if with_pool else (None,))
                for r in prober.rows(model, init="imagenet", rule=rule, kind="imagenet")]

    if not with_pool:
        return [r for seed in seeds for r in random_rows(seed)] + (imagenet_rows() if imagenet_weights else [])
    names = {t.dataset for t in prober.targets}
    known = [r for r in known if r["kind"] != "checkpoint"]
    if {r["target"] for r in known} != names:
        known = []  # measured on other targets: not these references

    def held(kind, seed=None):
        return [r for r in known if r["kind"] == kind and (seed is None or r["seed"] == seed)]

    rows = []
    for seed in seeds:
        rows += _cached(prober, dict(arch=arch, weights="random", seed=seed), lambda: random_rows(seed),
                        held("random", seed))
    if imagenet_weights:
        rows += _cached(prober, dict(arch=arch, weights=imagenet_weights), imagenet_rows, held("imagenet"))
    return rows


def reference_cache(prober: Prober, network: dict) -> tuple[dict, Path]:
    """What decides one reference network's rows (``network``: its arch and weights, and seed where random), and the
    cache file that keeps them."""
    import hashlib

    from medimg.identity import identity
    from medimg.paths import cache_dir
    from medimg.ssl.pool import data_config

    key = dict(version=REFERENCES_VERSION, network=network, in_chans=prober.in_chans,
               targets=[[t.dataset, t.max_train_images, data_config(prober.config, t.dataset).to_dict()]
                        for t in prober.targets],
               pool=hashlib.sha256(prober.pool_images.tobytes()).hexdigest(), seed=prober.config.seed)
    return key, cache_dir() / "ssl-references" / f"{identity(key, digits=16)}.json"


def _cached(prober: Prober, network: dict, make, held: list[dict] = ()) -> list[dict]:
    import json

    from medimg.atomic import write_text

    key, path = reference_cache(prober, network)
    if path.is_file():
        return json.loads(path.read_text())["rows"]
    rows = list(held) or make()
    from medimg.paths import writing_cache

    with writing_cache("write the reference cache"):
        write_text(path, json.dumps(dict(key=key, rows=rows), default=float))
    return rows


def read_curve_file(path: Path) -> list[dict]:
    if not Path(path).is_file():
        return []
    frame = pd.read_csv(path, dtype={"correct": str})  # hex: "12e4…" must not become a number
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in frame.to_dict("records")]


# --- reading a curve ---------------------------------------------------------------------------

def crossings(curve: pd.DataFrame) -> pd.DataFrame:
    """Per target and protocol: the references (best and mean random initialisation, ImageNet), the checkpoint's
    first and last points, its best, and the first step at which it beats random features (NaN when it never does
    within the curve) and whether it does at the last point.

    On a curve with the batch-norm rule's rows (issue #30) only those are read, and "beats random features" is the
    paired test :func:`medimg.evaluate.stats.beats_references` against the random seeds on the validation images
    (``rule`` "paired bootstrap"); the last point also gets its difference to ImageNet's features with the lower
    and upper ends of its 90% paired interval (``imagenet_difference``, ``imagenet_low``, ``imagenet_high``). On an
    older curve it is the last point above the best random seed (``rule`` "above the best seed").

    Columns: target, protocol, random_best, random_mean, imagenet, step0, last_step, last, best, best_step,
    first_step_above_random, above_random_at_end, first_step_at_imagenet (the first point at or above ImageNet's
    accuracy), rule (and the ImageNet columns on a new curve).
    """
    from medimg.evaluate.stats import beats_references
    from medimg.probe.batchnorm import RULE

    paired = "correct" in curve and curve["correct"].notna().any()
    if paired:
        curve = curve[curve.bn == RULE]
    rows = []
    points = curve[curve.kind == "checkpoint"].sort_values("step", kind="stable")  # targets in curve order
    for (target, protocol), group in points.groupby(["target", "protocol"], sort=False):
        refs = curve[(curve.target == target) & (curve.protocol == protocol)]
        random = refs[refs.kind == "random"]
        imagenet = refs[refs.kind == "imagenet"]
        bar = float(random.val_accuracy.max()) if len(random) else np.nan
        if paired and len(random):
            n = int(group.n_val.iloc[0])
            seeds = np.stack([unpack_bits(c, n) for c in random.correct])
            beats = [beats_references(unpack_bits(c, n), seeds)["beats"] for c in group.correct]
        else:
            beats = list(group.val_accuracy > bar)
        above = group[beats]
        reach = group[group.val_accuracy >= float(imagenet.val_accuracy.iloc[0])] if len(imagenet) else group.iloc[0:0]
        best = group.loc[group.val_accuracy.idxmax()]
        row = dict(target=target, protocol=protocol, random_best=bar,
                   random_mean=float(random.val_accuracy.mean()) if len(random) else np.nan,
                   imagenet=float(imagenet.val_accuracy.iloc[0]) if len(imagenet) else np.nan,
                   step0=float(group.val_accuracy.iloc[0]), last_step=int(group.step.iloc[-1]),
                   last=float(group.val_accuracy.iloc[-1]), best=float(best.val_accuracy),
                   best_step=int(best.step), first_step_above_random=float(above.step.iloc[0]) if len(above) else np.nan,
                   above_random_at_end=bool(beats[-1]) if beats else False,
                   first_step_at_imagenet=float(reach.step.iloc[0]) if len(reach) else np.nan,
                   rule=PAIRED if paired else BEST_SEED)
        if paired and len(imagenet):
            n = int(group.n_val.iloc[0])
            last, ref = unpack_bits(group.correct.iloc[-1], n), unpack_bits(imagenet.correct.iloc[0], n)
            test = beats_references(last, ref[None], level=0.95)
            low = test["low"]  # one-sided 95% lower bound = the lower end of a two-sided 90% interval
            high = -beats_references(ref, last[None], level=0.95)["low"]
            row.update(imagenet_difference=test["difference"], imagenet_low=low, imagenet_high=high)
        rows.append(row)
    return pd.DataFrame(rows)


NETWORKS_READ = {"checkpoint": "the checkpoint", "imagenet": "ImageNet weights", "random": "random init (seeds' mean)"}


def batchnorm_effect(curve: pd.DataFrame, protocol: str | None = None) -> pd.DataFrame:
    """What the batch-norm rule (:mod:`medimg.probe.batchnorm`) does to a curve's verdicts: per target and network
    read (the checkpoint at its last point, ImageNet weights, random initialisation as the mean over its seeds), the
    validation accuracy of ``protocol`` (default: the lead probe, the linear probe) under the rule and under the
    alternative the curve measured for that network (``carried``: the statistics as stored; ``pool``: recomputed on
    the pool, ImageNet's included), and their difference. Columns: target, network, rule, alternative, under the
    rule, under the alternative, difference. Empty for a curve made before issue #30 (read as carried only)."""
    from medimg.probe.batchnorm import RULE
    from medimg.probe.protocols import lead_probe

    columns = ["target", "network", "alternative", "under the rule", "under the alternative", "difference"]
    if "bn" not in curve or curve["bn"].isna().all():
        return pd.DataFrame(columns=columns)
    own = curve[curve.protocol == (protocol or lead_probe().name)]
    last = own[own.kind == "checkpoint"].step.max()
    own = own[(own.kind != "checkpoint") | (own.step == last)]
    rows = []
    for (target, kind), group in own.groupby(["target", "kind"], sort=False):
        means = group.groupby("bn").val_accuracy.mean()
        for alternative in (b for b in means.index if b != RULE):
            if RULE in means:
                rows.append({"target": target, "network": NETWORKS_READ.get(kind, kind), "alternative": alternative,
                             "under the rule": float(means[RULE]), "under the alternative": float(means[alternative]),
                             "difference": float(means[alternative] - means[RULE])})
    return pd.DataFrame(rows, columns=columns)


def crossing_table(found: pd.DataFrame, protocol: str | None = None) -> pd.DataFrame:
    """The budget chapter's opening table: one row per target, one column per checkpoint (``found`` holds
    :func:`crossings` rows with a ``checkpoint`` column naming each), each cell "random @ N; ImageNet @ M" (the first
    steps it beats random features, holding it at its last point, and reaches ImageNet's accuracy), either part
    "not by N" (its budget) where it does not. ``protocol``: the probe read (default the lead probe of
    :data:`medimg.probe.protocols.PROTOCOLS`, the linear probe)."""
    from medimg.probe.protocols import lead_probe

    own = found[found.protocol == (protocol or lead_probe().name)]
    cells = {}
    for _, r in own.iterrows():
        budget = f"not by {int(r['last_step']):,}"
        random = (f"random @ {int(r['first_step_above_random']):,}"
                  if r["above_random_at_end"] and np.isfinite(r["first_step_above_random"]) else f"random: {budget}")
        at = r.get("first_step_at_imagenet", np.nan)
        imagenet = f"ImageNet @ {int(at):,}" if np.isfinite(at) else f"ImageNet: {budget}"
        cells.setdefault(r["target"], {})[r["checkpoint"]] = f"{random}; {imagenet}"
    return pd.DataFrame.from_dict(cells, orient="index").rename_axis("target")


def _beats(rule: str, verb: str = "beats") -> str:
    """How "beats random features" was decided, as the book says it, with ``verb`` ("beats", or "beat" after a
    plural or "not")."""
    return f"{verb} random features (paired test)" if rule == PAIRED else f"{verb} the best random initialisation"


def crossing_sentence(row, hours_per_step: float | None = None) -> str:
    """One line for the book about one target and protocol of :func:`crossings`, in the words of the rule that
    decided it; on a curve with ImageNet's paired interval, the last point's difference to ImageNet with it."""
    from medimg.probe.protocols import protocol_of

    name = protocol_of(row["protocol"]).display
    at = (f"{row['last_step']:,} steps" + (f" ({row['last_step'] * hours_per_step:.2f} CPU core-hours)"
                                           if hours_per_step else ""))
    beats = _beats(row.get("rule", ""))
    imagenet = f"ImageNet {row['imagenet']:.3f}"
    if np.isfinite(row.get("imagenet_difference", np.nan)):
        imagenet += (f"; the difference to ImageNet {row['imagenet_difference']:+.3f}, 90% interval "
                     f"{row['imagenet_low']:+.3f} to {row['imagenet_high']:+.3f}")
    if row["above_random_at_end"]:
        first = int(row["first_step_above_random"])
        return (f"**{row['target']}**, {name}: {beats} from step {first:,} on its way to {row['last']:.3f} at {at} "
                f"(random mean {row['random_mean']:.3f}, best {row['random_best']:.3f}; {imagenet}).")
    return (f"**{row['target']}**, {name}: does **not** {_beats(row.get('rule', ''), 'beat')} at {at} "
            f"({row['last']:.3f} against random mean {row['random_mean']:.3f}, best {row['random_best']:.3f}; its "
            f"best was {row['best']:.3f} at step {row['best_step']:,}; {imagenet}).")


def budget_answer(found: pd.DataFrame) -> str:
    """The chapter's answer in a few sentences, from :func:`crossings` rows of every checkpoint (with ``method``,
    ``pool`` and ``hours_per_step`` columns, and ``init``, random where it is missing): per method of the
    random-initialised checkpoints and protocol, on how many targets the last point beats the best random
    initialisation, and the budget that was spent; with several methods, the same count for the checkpoint each
    target's SSL arm fine-tunes from (the best last linear-probe point on validation,
    :func:`medimg.study.pretraining.arm_checkpoint`); for ImageNet-initialised checkpoints (TL+SSL's start), on how many
    targets they beat ImageNet's own features."""
    from medimg.probe.protocols import lead_probe
    from medimg.ssl.methods import METHODS

    if found.empty:
        return "No checkpoint of this profile's pretraining stage is finished yet, so nothing can be read off a curve."
    found = found.assign(**{k: found[k].fillna(v) if k in found else v for k, v in (("method", "simclr"),
                                                                                     ("init", "random"))})
    sentences = []
    random = found[found.init == "random"]
    for method, rows in random.groupby("method", sort=False):
        sentences.append(f"**{METHODS[method].name}** ({_budgets(rows)}): its frozen features "
                         f"{_beats(rows['rule'].iloc[0], 'beat')} on validation {_counts(rows)}. "
                         f"Against the *mean* random initialisation "
                         f"(the best of several seeds is a high bar on small validation splits) they are above on "
                         f"{int((rows['last'] > rows.random_mean).sum())} of {len(rows)} target-protocol pairs, and "
                         f"against ImageNet's features on {int((rows['last'] > rows.imagenet).sum())} of {len(rows)}.")
    if random.method.nunique() > 1:
        linear = random[random.protocol == lead_probe().name]
        chosen = linear.loc[linear.groupby("target", sort=False)["last"].idxmax(), ["target", "method"]]
        picked = random[[(t, m) in set(zip(chosen.target, chosen.method)) for t, m in zip(random.target, random.method)]]
        names = ", ".join(f"{t}: {METHODS[m].name}" for t, m in zip(chosen.target, chosen.method))
        sentences.append(f"Taking for each target the checkpoint with the better last linear-probe point on "
                         f"validation, the one its SSL arm fine-tunes from ({names}), the features "
                         f"{_beats(picked['rule'].iloc[0], 'beat')} {_counts(picked)}.")
    for method, rows in found[found.init == "imagenet"].groupby("method", sort=False):
        held = (f"; they are not below ImageNet's beyond the 90% paired interval {_counts(rows, above='held')}"
                if "imagenet_high" in rows and rows.imagenet_high.notna().any() else "")
        sentences.append(f"**{METHODS[method].name} continued from ImageNet weights** (where the TL+SSL arms start; "
                         f"{_budgets(rows)}): its features beat ImageNet's own on validation "
                         f"{_counts(rows, above='imagenet')}{held}; and they "
                         f"{_beats(rows['rule'].iloc[0], 'beat')} {_counts(rows)}.")
    return "At the end of each checkpoint's budget: " + " ".join(sentences)


def _budgets(rows: pd.DataFrame) -> str:
    """"grey pool 3,000 steps, 1.80 CPU core-hours; colour pool ..." for one checkpoint per pool."""
    return "; ".join(f"{pool} pool {int(g.last_step.max()):,} steps, "
                     f"{g.last_step.max() * g.hours_per_step.iloc[0]:.2f} CPU core-hours"
                     for pool, g in rows.groupby("pool", sort=False))


def _counts(rows: pd.DataFrame, above: str = "random") -> str:
    """"under the linear probe on **a of b** targets (names) and under the kNN on ..." for :func:`crossings` rows, a
    part per probe of :data:`medimg.probe.protocols.PROTOCOLS`: where the last point beats random features by the
    curve's rule (``above="random"``), is above ImageNet's features (``"imagenet"``), or is not below them beyond the
    90% paired interval (``"held"``: the upper end of the difference's interval at or above 0)."""
    from medimg.probe.protocols import probes

    parts = []
    for protocol in probes():
        own = rows[rows.protocol == protocol.name]
        won = (own[own.above_random_at_end] if above == "random" else own[own["last"] > own.imagenet]
               if above == "imagenet" else own[own.imagenet_high >= 0])
        parts.append(f"under the {protocol.display} on **{len(won)} of {len(own)}** targets"
                     + (f" ({', '.join(won.target)})" if len(won) else ""))
    return " and ".join(parts)
