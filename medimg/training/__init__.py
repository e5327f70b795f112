"""The training stage: how and where Lightning trains, shared by every stage that trains a network
(:mod:`.trainer`: :class:`~medimg.training.trainer.TrainerSettings` for one CPU, one GPU, or many GPUs and nodes
with DDP, and :func:`~medimg.training.trainer.quiet_lightning`). Settings only: self-supervised pretraining and
fine-tuning both build their Lightning trainer from it, so neither imports the other for it.

May import only the shared modules (record options); it knows nothing of data, models, probes or runs.
"""
