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

from medimg.study.plan import Chapter, flatten, plan
from medimg.study.templates import TEMPLATES
from medimg.study.train_sizes import TrainImages, train_images


def chapter_cost(chapter: Chapter, sizes: dict[str, TrainImages]) -> dict:
    """What one chapter runs, as its template's row says (:data:`~medimg.study.templates.TEMPLATES`): ``runs``
    (fine-tuning runs) and ``checkpoints`` (self-supervised ones) it makes, the network and size, epochs, training
    images and the images it passes (``passes``: None when a dataset's size is unknown). ``sizes`` caches the
    datasets' :func:`~medimg.study.train_sizes.train_images` across calls."""
    def size_of(name):
        if name not in sizes:
            sizes[name] = train_images(name)
        return sizes[name]

    empty = dict(chapter=chapter.path, runs=0, checkpoints=0, network="", epochs="", images="", passes=0.0)
    cost = TEMPLATES[chapter.template].cost
    return empty if cost is None else dict(empty, **cost(chapter, size_of))


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
    runs, checkpoints = int(table.pop("runs").sum()), int(table["checkpoints"].sum())
    table.insert(1, "runs", [r["runs"] + r["checkpoints"] for r in rows])  # what the chapter makes
    table = table.drop(columns="checkpoints")
    known = table["passes"].notna()
    table["passes"] = [("?" if v is None or pd.isna(v) else f"{v:,.0f}") for v in table["passes"]]
    if img_per_s:
        hours = [r["passes"] / img_per_s / 3600 if r["passes"] is not None else None for r in rows]
        table["hours"] = ["?" if h is None else f"{h:.2f}" for h in hours]
    table["epochs"] = table["epochs"].astype(str)
    total = float(sum(r["passes"] for r in rows if r["passes"] is not None))
    lines = [f"Plan of profile {p['name']!r}{f' (chapters with {only!r} in their path)' if only else ''}: "
             f"{len(rows)} chapters, {runs} fine-tuning runs, {checkpoints} self-supervised checkpoints; "
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
