"""The probe stage: a network's frozen features, extracted once per (network, dataset, size) and cached
(:mod:`.features`), read by a linear probe and kNN tuned on validation (:mod:`.linear_knn`), as probe runs written
like fine-tuning runs (:mod:`.runs`) — the MedMNIST+ protocols beside end-to-end fine-tuning.

May import the shared modules, :mod:`medimg.data`, :mod:`medimg.models`, :mod:`medimg.evaluate` and
:mod:`medimg.finetune` (its records, preprocessing and run directories).
"""
