"""SimCLR step throughput: medimg's pretraining step against a bare lightly loop, the views' share, and the step's
views per second against the supervised step's images per second at the same size.

    python benchmarks/bench_ssl_step.py [--datasets pneumoniamnist iq_othnccd_lung_ct] [--arch mobilenetv2_100]
                                        [--size 64] [--batch-size 128] [--steps 8] [--repeats 2]
                                        [--num-workers 0] [--views tensor] [--no-train-step]

Both train the same network (timm backbone, lightly's ``SimCLRProjectionHead`` and ``NTXentLoss``, AdamW)
from the same weights on the same views: medimg's through :func:`medimg.ssl.run.pretrain_ssl` (Lightning, its
resumable state, progress and clocks), the bare one through a plain ``for`` loop. With ``--views tensor`` (the
default, the stage's) the loader hands over uint8 batches and the views are made as batched tensor operations in
the step (:mod:`medimg.ssl.tensor_views`); ``--views pil`` times lightly's ``SimCLRTransform`` one image at a time
in the loader (checkpoints before issue #30). The first step of each is a warm-up and is not counted; the two
alternate (best of ``--repeats`` each). Also times the views alone (for every timed step's batch), as a share of
medimg's step, and, unless ``--no-train-step``, runs ``benchmarks/bench_train_step.py`` (plain loop, batch 32,
fp32, same size) in the same invocation, for the ratio of views per second to its images per second.
Targets: medimg >= 0.95 x the bare loop; views alone <= 10% of a step; views/s >= 1.2 x the supervised img/s.
Exits 0 either way: the figures are the result.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["pneumoniamnist", "iq_othnccd_lung_ct"])
    parser.add_argument("--arch", default="mobilenetv2_100")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps, after one warm-up step")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    parser.add_argument("--views", choices=("tensor", "pil"), default="tensor")
    parser.add_argument("--no-train-step", action="store_true", help="skip bench_train_step.py's figure")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)

    from torch.utils.data import DataLoader

    from medimg.ssl.config import INITS, SSLConfig
    from medimg.training.trainer import TrainerSettings
    from medimg.data import Preprocess
    from medimg.models.backbones import create_backbone, read_ssl_meta
    from medimg.ssl.pool import pool_images
    from medimg.ssl.run import pretrain_ssl
    from medimg.ssl.batches import PoolBatches, StepBatches, as_batch
    from medimg.ssl.modules import SimCLR
    from medimg.ssl.tensor_views import BatchViews
    from medimg.ssl.views import SimCLRViews, simclr_transform, view_settings

    steps = args.steps + 1
    config = SSLConfig(datasets=tuple(args.datasets), arch=args.arch, size=args.size, steps=steps,
                       batch_size=args.batch_size, max_images=steps * args.batch_size, temperature=0.2,
                       grey_as="replicate", views=args.views)
    trainer = TrainerSettings(accelerator="cpu", precision="32-true", progress=False, num_workers=args.num_workers)
    pool = pool_images(config)

    def loader():
        """The backbone, the loader and the view maker (None where the loader makes the views) of both loops."""
        torch.manual_seed(0)
        backbone, _ = create_backbone(config.arch, num_classes=0, in_chans=pool.in_chans, weights=INITS[config.init])
        norm = Preprocess.from_pretrained_cfg(backbone.pretrained_cfg, image_channels=pool.in_chans,
                                              grey_as="single" if pool.in_chans == 1 else None, size=config.size)
        views = view_settings(config.size, colour=pool.colour, mean=norm.mean, std=norm.std,
                              min_scale=config.min_scale, intensity_jitter=config.intensity_jitter)
        sampler = StepBatches(len(pool.images), config.batch_size, steps=steps, seed=config.seed)
        if args.views == "tensor":
            dataset, collate, maker = PoolBatches(pool.images), as_batch, BatchViews(views, seed=config.seed)
        else:
            dataset, collate, maker = SimCLRViews(pool.images, simclr_transform(views), seed=config.seed), None, None
        data = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=args.num_workers,
                          persistent_workers=args.num_workers > 0)
        return backbone.to(memory_format=torch.channels_last), data, maker

    def bare() -> tuple[float, float]:
        """Seconds of the timed steps, and of those spent waiting for the next batch."""
        backbone, data, maker = loader()
        module = SimCLR(backbone, config, channels_last=True)  # its projection head and loss; no Trainer
        opt = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        it, wait = iter(data), 0.0
        for i in range(steps):
            asked = time.perf_counter()
            if i == 1:
                start, wait = asked, 0.0
            batch = next(it)
            wait += time.perf_counter() - asked
            x0, x1 = maker(batch, step=i) if maker else batch
            loss = module.criterion(module(x0), module(x1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - start, wait

    def medimg() -> float:
        with tempfile.TemporaryDirectory() as folder:
            meta = read_ssl_meta(pretrain_ssl(config, Path(folder) / "b.safetensors", trainer=trainer))
        losses = meta["timing"]["step_seconds"]
        return sum(losses[1:])

    def views_only() -> float:
        _, data, maker = loader()
        it = iter(data)
        next(it)
        start = time.perf_counter()
        for i, batch in enumerate(it, 1):
            if maker:
                maker(batch, step=i)
        return time.perf_counter() - start

    times = {"bare": [], "medimg": [], "views": [], "wait": []}
    for _ in range(args.repeats):
        seconds, wait = bare()
        times["bare"].append(seconds)
        times["wait"].append(wait / seconds)
        times["medimg"].append(medimg())
        times["views"].append(views_only())
    best = {k: min(v) for k, v in times.items()}
    rate = {k: 2 * args.steps * args.batch_size / best[k] for k in ("bare", "medimg")}
    print(f"{args.arch} SimCLR on {'+'.join(args.datasets)} at {args.size} px, batch {args.batch_size} "
          f"({2 * args.batch_size} views a step), {args.views} views, {torch.get_num_threads()} threads, "
          f"{args.num_workers} data-loader workers, {args.steps} timed steps")
    print(f"bare lightly loop:   {rate['bare']:.1f} views/s ({best['bare'] / args.steps:.3f} s/step)")
    print(f"medimg (Lightning):  {rate['medimg']:.1f} views/s ({best['medimg'] / args.steps:.3f} s/step)")
    print(f"ratio to the bare loop: {rate['medimg'] / rate['bare']:.3f} (target >= 0.95)")
    print(f"views alone: {best['views'] / args.steps:.3f} s/step, {100 * best['views'] / best['medimg']:.1f}% of "
          f"medimg's step (target <= 10%)")
    print(f"waiting for views: {100 * min(times['wait']):.1f}% of the bare loop's step")
    if not args.no_train_step:
        supervised = train_step_rate(args.arch, args.size)
        print(f"bench_train_step.py (plain loop, batch 32, fp32, {args.size} px): {supervised:.1f} img/s; "
              f"medimg's pretraining step: {rate['medimg'] / supervised:.2f} x that in views/s (target >= 1.2)")
    return 0


def train_step_rate(arch: str, size: int) -> float:
    """``bench_train_step.py``'s plain-loop images per second at ``size`` px, run now on this machine."""
    import re
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_train_step.py")), "--arch", arch,
                          "--size", str(size), "--epochs", "1", "--repeats", "1", "--precision", "32-true"],
                         capture_output=True, text=True).stdout
    found = re.search(r"plain PyTorch loop:\s+([\d.]+) img/s", out)
    if not found:
        raise SystemExit(f"bench_train_step.py printed no figure:\n{out}")
    return float(found.group(1))


if __name__ == "__main__":
    raise SystemExit(main())
