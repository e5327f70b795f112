"""The probe stage: a network (:class:`~medimg.probe.features.Network`, the record of what a probe reads) and its
frozen features, extracted once per (network, dataset, size) and cached (:mod:`.features`), read by a linear probe
and kNN tuned on validation (:mod:`.linear_knn`) — the MedMNIST+ protocols beside end-to-end fine-tuning, one table
of them (:mod:`.protocols`), and the tools LP-FT's first step, the self-supervised learning curve and its check
use. An arm's probe runs, written like fine-tuning runs, are the study's (:mod:`medimg.study.probe_runs`).

May import the shared modules, :mod:`medimg.data`, :mod:`medimg.models`, :mod:`medimg.evaluate` and
:mod:`medimg.training`; nothing of pretraining or fine-tuning, whose configs give it a network record.
"""
