"""Self-supervised pretraining, a stage of its own: pools, views, methods, long resumable runs, learning curves.

The path: a lineage-safe **pool** of training images (:mod:`.pool`) -> two **views** of each
(:mod:`.views`, lightly's ``SimCLRTransform``) -> the **method**'s module (:mod:`.methods`, the table of SimCLR
and VICReg with lightly's heads and losses; its record :mod:`.config`) trained by Lightning in a resumable
**run** (:mod:`.run`) that shows its **progress** (:mod:`.progress`) and measures its **learning curve** online
(:mod:`.curve`: linear probe and kNN on the targets' validation splits) -> a backbone checkpoint (.safetensors)
with its curve; :mod:`.check` reads a checkpoint's frozen features against random ones (networks given as
:class:`medimg.probe.features.Network` records). The study's pretraining stage (which runs, named and kept under
``results/PROFILE/ssl/``) is :mod:`medimg.study.pretraining`.

May import: the shared modules, :mod:`medimg.data`, :mod:`medimg.models`, :mod:`medimg.plots`,
:mod:`medimg.evaluate`, :mod:`medimg.training` (the trainer settings) and :mod:`medimg.probe` (the curve's probes,
the protocols table, the network records); not fine-tuning, which comes after it (a checkpoint is what fine-tuning
starts from). Nothing here knows about the study's chapters or the book.
"""
