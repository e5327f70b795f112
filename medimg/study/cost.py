"""``medimg study --plan``: every chapter of a profile with the runs it makes, their settings and their cost,
without training anything.

Cost is counted in images passed through the network: a fine-tuning run trains on its training split for
its epochs (and its first stage's, for double fine-tuning), a SimCLR checkpoint on its pool's images for its
epochs with two views of each, and a comparison extracts probe features once per arm (a forward pass, counted
as a third of a training image: backward costs about twice forward). With an images-per-second figure
measured on the machine that will run it (``benchmarks/bench_train_step.py --arch ARCH --size SIZE`` there),
each is also given in hours. Training-split sizes: MedMNIST files are read (their labels only); image
folders here are counted, and a folder not here is sized from its publication
(:data:`medimg.data.registry.PUBLISHED_IMAGES`), both times the profile's training fraction (0.7): estimates,
marked ``~``.
"""
from __future__ import annotations

from dataclasses import dataclass

from medimg.study.arm import Arm
from medimg.data.registry import get_spec
from medimg.data.splits import DEFAULT_RATIOS
from medimg.study.profiles import ssl_pool
from medimg.study.plan import Chapter, flatten, plan

FORWARD_SHARE = 1 / 3  # a forward pass, as a share of a training step's cost per image


@dataclass(frozen=True)
class TrainImages:
    """A dataset's training images: ``n`` (None: unknown), and whether it is an estimate."""

    n: int | None
    estimate: bool

    def __str__(self) -> str:
        return "unknown" if self.n is None else f"{'~' if self.estimate else ''}{self.n:,}"


def train_images(dataset: str) -> TrainImages:
    """How many training images ``dataset`` has: exact for a MedMNIST file here, else estimated (see module)."""
    from medimg.data.image_file import DICOM_SUFFIXES
    from medimg.data.image_folder import image_suffixes
    from medimg.data.medmnist_files import find_medmnist_file
    from medimg.paths import data_dir

    spec = get_spec(dataset)
    if spec.kind == "synthetic":
        return TrainImages(None, True)
    base = data_dir(must_exist=False)  # a plan is made before any data is here, too
    if spec.kind == "medmnist":
        import numpy as np

        path = find_medmnist_file(base, spec.location, 28) if base.is_dir() else None
        if path is not None:
            with np.load(path) as npz:
                return TrainImages(len(npz["train_labels"]), False)
        return TrainImages(None, True)
    root = base / (spec.location or spec.name) if spec.location else None
    if root is not None and root.is_dir():
        suffixes = image_suffixes() | set(DICOM_SUFFIXES)
        n = sum(1 for p in root.rglob("*") if p.suffix.lower() in suffixes and "mask" not in p.name)
        return TrainImages(round(n * DEFAULT_RATIOS[0]), True)
    published = spec.extra.get("published_images")
    return TrainImages(round(published * DEFAULT_RATIOS[0]) if published else None, True)


def chapter_cost(chapter: Chapter, sizes: dict[str, TrainImages]) -> dict:
    """What one chapter runs: ``runs``, the network and size, epochs, training images and the images it passes
    (``passes``: None when a dataset's size is unknown)."""
    def size_of(name):
        if name not in sizes:
            sizes[name] = train_images(name)
        return sizes[name]

    empty = dict(chapter=chapter.path, runs=0, network="", epochs="", images="", passes=0.0)
    if chapter.template == "ssl_pretraining":
        arm = Arm.from_dict(chapter.resolved["arm"])
        config = arm.ssl_config(ssl_pool(arm.dataset, list(arm.ssl_candidates)))
        counts = [size_of(d) for d in config.datasets]
        known = None if any(c.n is None for c in counts) else sum(c.n for c in counts)
        if known is not None and config.max_images:
            known = min(known, config.max_images)
        estimate = any(c.estimate for c in counts)
        return dict(empty, runs=1, network=f"SimCLR {config.arch} {config.size} px", epochs=config.epochs,
                    images=str(TrainImages(known, estimate)), passes=None if known is None else 2.0 * known * config.epochs)
    if chapter.template == "finetune":
        arm = Arm.from_dict(chapter.resolved["arm"])
        config = arm.finetune_config(arm.seeds[0], weights="checkpoint" if arm.uses_ssl else None)
        own = size_of(config.dataset)
        n = own.n if own.n is None or not config.max_train_images else min(own.n, config.max_train_images)
        per_seed = None if n is None else float(n * config.epochs)
        if config.intermediate and per_seed is not None:
            first = size_of(config.intermediate)
            m = first.n if first.n is None or not config.intermediate_max_train_images else min(
                first.n, config.intermediate_max_train_images)
            per_seed = None if m is None else per_seed + m * (config.intermediate_epochs or config.epochs)
        return dict(empty, runs=len(arm.seeds), network=f"{config.arch} {config.size} px", epochs=config.epochs,
                    images=str(TrainImages(n, own.estimate)), passes=None if per_seed is None else per_seed * len(arm.seeds))
    if chapter.template == "comparison":
        arms = [Arm.from_dict(a) for a in chapter.resolved["arms"]]
        counts = [size_of(a.dataset) for a in arms]
        if any(c.n is None for c in counts):
            return dict(empty, passes=None)
        # features of every split (train is 0.7 of them) for each arm, once
        forward = sum(c.n / DEFAULT_RATIOS[0] for c in counts)
        return dict(empty, network="probe features", passes=forward * FORWARD_SHARE)
    return empty


def cost_plan(p: dict, only: str | None = None) -> list[dict]:
    """One row per chapter of profile ``p`` (:func:`chapter_cost`), in execution order, every dataset planned
    whether or not it is here; with ``only``, the chapters whose path contains it (as ``medimg study --only``)."""
    chapters, _ = plan(p, every_dataset=True)
    sizes: dict[str, TrainImages] = {}
    return [chapter_cost(c, sizes) for c in flatten(chapters) if only is None or only in c.path]


def plan_text(p: dict, img_per_s: float | None = None, only: str | None = None) -> str:
    """The plan as the console shows it: a table, the totals and, given ``img_per_s``, hours; with ``only``, of the
    chapters whose path contains it. A one-line error when no chapter's does."""
    import pandas as pd

    from medimg.errors import MedimgError

    rows = cost_plan(p, only)
    if not rows:
        raise MedimgError(f"--only {only}: no chapter of profile {p['name']!r} has it in its path; "
                          f"drop --only to see them all")
    table = pd.DataFrame(rows)
    known = table["passes"].notna()
    table["passes"] = [("?" if v is None or pd.isna(v) else f"{v:,.0f}") for v in table["passes"]]
    if img_per_s:
        hours = [r["passes"] / img_per_s / 3600 if r["passes"] is not None else None for r in rows]
        table["hours"] = ["?" if h is None else f"{h:.2f}" for h in hours]
    table["epochs"] = table["epochs"].astype(str)
    total = float(sum(r["passes"] for r in rows if r["passes"] is not None))
    runs = int(table["runs"][table["network"].str.startswith("SimCLR") == False].sum())  # noqa: E712
    ssl = int((table["network"].str.startswith("SimCLR")).sum())
    lines = [f"Plan of profile {p['name']!r}{f' (chapters with {only!r} in their path)' if only else ''}: "
             f"{len(rows)} chapters, {runs} fine-tuning runs, {ssl} SimCLR checkpoints; "
             f"results in {p['results_dir']}, trainer {p['trainer']}.", "",
             table.to_string(index=False), "",
             f"Total: {total:,.0f} training-image passes"
             + ("" if known.all() else f", not counting {int((~known).sum())} chapter(s) whose data size is unknown")
             + "."]
    if img_per_s:
        lines.append(f"At {img_per_s:,.0f} images/s: about {total / img_per_s / 3600:.1f} hours of training, before "
                     f"overhead (kernels, evaluation, statistics).")
    else:
        lines.append("For hours, pass --img-per-s N, measured on the machine that will run it: python "
                     "benchmarks/bench_train_step.py --arch ARCH --size SIZE (the profile's network and size).")
    lines.append("~: estimated, from the files here or the dataset's publication, times the training fraction 0.7.")
    return "\n".join(lines)
