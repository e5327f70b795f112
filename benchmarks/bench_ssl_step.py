"""SimCLR step throughput: medimg's pretraining step against a bare lightly loop, and the share spent on views.

    python benchmarks/bench_ssl_step.py [--datasets pneumoniamnist iq_othnccd_lung_ct] [--arch mobilenetv2_100]
                                        [--size 32] [--batch-size 128] [--steps 8] [--repeats 2]
                                        [--num-workers 0]

Both train the same network (timm backbone, lightly's ``SimCLRProjectionHead`` and ``NTXentLoss``, AdamW)
from the same weights on the same views (medimg's ``SimCLRViews`` of the same pool, through the same
DataLoader): medimg's through :func:`medimg.ssl.run.pretrain_ssl` (Lightning, its resumable state, progress and
clocks), the bare one through a plain ``for`` loop. The first step of each is a warm-up and is not counted;
the two alternate (best of ``--repeats`` each). Also times the views alone (iterating the DataLoader), as a
share of medimg's step, and the time the bare loop waits for its next batch: the views' cost on the
critical path (the same as making them with ``--num-workers 0``; with workers, views are made while the
network trains, so the wait shrinks, at the price of cores the step no longer has). Workers do not change
the views: each item's randomness is a function of (seed, step, position). Prints images/s (two views per
image pair), the ratio (target: medimg >= 0.95 x the bare loop) and the views' share (target: under 20%).
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
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps, after one warm-up step")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)

    from torch.utils.data import DataLoader

    from medimg.ssl.config import INITS, SSLConfig
    from medimg.finetune.trainer import TrainerSettings
    from medimg.data import Preprocess
    from medimg.models.backbones import create_backbone, read_ssl_meta
    from medimg.ssl.pool import pool_images
    from medimg.ssl.run import pretrain_ssl
    from medimg.ssl.batches import StepBatches
    from medimg.ssl.methods import SimCLR
    from medimg.ssl.views import SimCLRViews, simclr_transform, view_settings

    steps = args.steps + 1
    config = SSLConfig(datasets=tuple(args.datasets), arch=args.arch, size=args.size, steps=steps,
                       batch_size=args.batch_size, max_images=steps * args.batch_size, temperature=0.2,
                       grey_as="replicate")
    trainer = TrainerSettings(accelerator="cpu", precision="32-true", progress=False, num_workers=args.num_workers)
    pool = pool_images(config)

    def loader():
        torch.manual_seed(0)
        backbone, _ = create_backbone(config.arch, num_classes=0, in_chans=pool.in_chans, weights=INITS[config.init])
        norm = Preprocess.from_pretrained_cfg(backbone.pretrained_cfg, image_channels=pool.in_chans,
                                              grey_as="single" if pool.in_chans == 1 else None, size=config.size)
        views = view_settings(config.size, colour=pool.colour, mean=norm.mean, std=norm.std,
                              min_scale=config.min_scale, intensity_jitter=config.intensity_jitter)
        data = DataLoader(SimCLRViews(pool.images, simclr_transform(views), seed=config.seed),
                          batch_sampler=StepBatches(len(pool.images), config.batch_size, steps=steps,
                                                    seed=config.seed),
                          num_workers=args.num_workers, persistent_workers=args.num_workers > 0)
        return backbone.to(memory_format=torch.channels_last), data

    def bare() -> tuple[float, float]:
        """Seconds of the timed steps, and of those spent waiting for the next batch."""
        backbone, data = loader()
        module = SimCLR(backbone, config, channels_last=True)  # its projection head and loss; no Trainer
        opt = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        it, wait = iter(data), 0.0
        for i in range(steps):
            asked = time.perf_counter()
            if i == 1:
                start, wait = asked, 0.0
            x0, x1 = next(it)
            wait += time.perf_counter() - asked
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
        _, data = loader()
        it = iter(data)
        next(it)
        start = time.perf_counter()
        for _ in it:
            pass
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
          f"({2 * args.batch_size} views a step), {torch.get_num_threads()} threads, {args.num_workers} data-loader "
          f"workers, {args.steps} timed steps")
    print(f"bare lightly loop:   {rate['bare']:.1f} img/s ({best['bare'] / args.steps:.3f} s/step)")
    print(f"medimg (Lightning):  {rate['medimg']:.1f} img/s ({best['medimg'] / args.steps:.3f} s/step)")
    print(f"ratio: {rate['medimg'] / rate['bare']:.3f} (target >= 0.95)")
    print(f"views alone: {best['views'] / args.steps:.3f} s/step, {100 * best['views'] / best['medimg']:.0f}% of "
          f"medimg's step")
    print(f"waiting for views: {100 * min(times['wait']):.0f}% of the bare loop's step (target < 20%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
