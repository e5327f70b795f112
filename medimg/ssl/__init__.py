"""Self-supervised pretraining, a stage of its own: pools, views, methods, long resumable runs, learning curves.

The path: a lineage-safe **pool** of training images (:mod:`.pool`) -> two **views** of each
(:mod:`.views`, lightly's ``SimCLRTransform``) -> the **method**'s module (:mod:`.methods`: SimCLR with
lightly's projection head and NT-Xent) trained by Lightning in a resumable **run** (:mod:`.run`) that
shows its **progress** (:mod:`.progress`) and measures its **learning curve** online (:mod:`.curve`: linear
probe and kNN on the targets' validation splits) -> a backbone checkpoint (.safetensors) with its curve.
:mod:`.stage` turns a profile's ``pretraining`` section into those runs, named and kept under
``results/PROFILE/ssl/`` and committed like results.

May import: the records (:mod:`medimg.configs`), :mod:`medimg.data`, :mod:`medimg.models`, the probes of
frozen features. Nothing here knows about fine-tuning, the study's chapters or the book.
"""
from ..configs import SSLConfig
from .pool import Pool, _channels, check_targets, pool_channels, pool_images
from .run import pretrain_ssl, snapshot_path, state_dir
from .views import SimCLRViews, simclr_transform, view_settings

__all__ = ["SSLConfig", "Pool", "pool_images", "pool_channels", "check_targets", "pretrain_ssl", "state_dir",
           "snapshot_path", "SimCLRViews", "simclr_transform", "view_settings", "_channels"]
