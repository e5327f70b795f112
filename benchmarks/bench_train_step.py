"""Training throughput: medimg's Lightning training step against a minimal hand-written PyTorch loop.

    python benchmarks/bench_train_step.py [--dataset breastmnist] [--arch mobilenetv2_100] [--size 64]
                                          [--batch-size 32] [--epochs 3] [--precision auto]

Both train the same model from the same weights on the same DataLoader (same data, batch size,
augmentation, channels_last and precision); the first epoch of each is a warm-up and is not
counted, and the two alternate (best of --repeats runs each). Prints images/s and their ratio (target: medimg >= 0.95 x the plain loop).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="breastmnist")
    parser.add_argument("--arch", default="mobilenetv2_100")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up epoch")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--nondeterministic", action="store_true", help="both without deterministic kernels")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating; the best counts")
    args = parser.parse_args()

    import pytorch_lightning as pl

    from medimg.data import DataConfig, prepare
    from medimg.models.backbones import create_backbone
    from medimg.finetune.classifier import Classifier
    from medimg.finetune.config import FinetuneConfig
    from medimg.training.trainer import TrainerSettings
    from medimg.finetune.loaders import training_loaders
    from medimg.models.backbones import model_preprocess

    settings = TrainerSettings(accelerator="cpu", precision=args.precision, progress=False,
                               deterministic=not args.nondeterministic)
    config = FinetuneConfig(args.dataset, "scratch", arch=args.arch, size=args.size, batch_size=args.batch_size,
                            epochs=args.epochs + 1)
    data = prepare(DataConfig(args.dataset, size=args.size), progress=False)
    pl.seed_everything(0, verbose=False)
    model, _ = create_backbone(args.arch, num_classes=len(data.classes), in_chans=3, weights="random")
    model = model.to(memory_format=torch.channels_last)
    loader = training_loaders(data, model_preprocess(model, data.decoded.channels, size=config.size, grey_as=config.grey_as), config, settings)[0]
    n_images = len(loader) * args.batch_size
    precision = settings.resolved_precision()

    class EpochTimer(pl.Callback):
        def __init__(self):
            self.seconds = []

        def on_train_epoch_start(self, *_):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, *_):
            self.seconds.append(time.perf_counter() - self.start)

    def medimg_rate() -> float:
        """The Lightning module and trainer that `medimg finetune` uses."""
        timer = EpochTimer()
        module = Classifier(copy.deepcopy(model), config=config, max_epochs=config.epochs, stage="bench",
                            channels_last=True)
        trainer = settings.build(max_epochs=config.epochs, callbacks=[timer], limit_val_batches=0,
                                 enable_checkpointing=False)
        trainer.fit(module, loader)
        return n_images * args.epochs / sum(timer.seconds[1:])

    def plain_rate() -> float:
        """Forward, loss, backward, step: nothing else (with the same deterministic-kernel setting)."""
        torch.use_deterministic_algorithms(settings.deterministic)
        plain = copy.deepcopy(model).train()
        optimizer = torch.optim.AdamW(plain.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        autocast = dict(device_type="cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
        seconds = []
        for epoch in range(config.epochs):
            loader.sampler.set_epoch(epoch)
            start = time.perf_counter()
            for x, y in loader:
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(**autocast):
                    loss = torch.nn.functional.cross_entropy(plain(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            seconds.append(time.perf_counter() - start)
        return n_images * args.epochs / sum(seconds[1:])

    # Alternate the two (A B A B) so a slow spell of the machine does not favour either.
    rates = {"plain": [], "medimg": []}
    for _ in range(args.repeats):
        rates["plain"].append(plain_rate())
        rates["medimg"].append(medimg_rate())
    plain, ours = max(rates["plain"]), max(rates["medimg"])

    print(f"{args.arch} on {args.dataset} at {args.size} px, batch {args.batch_size}, precision {precision}, "
          f"deterministic {settings.deterministic}, "
          f"{torch.get_num_threads()} threads, {n_images} images/epoch, {args.epochs} timed epochs")
    print(f"plain PyTorch loop: {plain:7.1f} img/s (best of {', '.join(f'{r:.1f}' for r in rates['plain'])})")
    print(f"medimg (Lightning): {ours:7.1f} img/s (best of {', '.join(f'{r:.1f}' for r in rates['medimg'])})")
    print(f"ratio: {ours / plain:.3f} (target >= 0.95)")
    return 0 if ours / plain >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
