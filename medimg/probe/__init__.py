"""The probe stage: a network's frozen features, extracted once per (network, dataset, size) and cached
(:mod:`.features`), read by a linear probe and kNN tuned on validation (:mod:`.linear_knn`) — the MedMNIST+
protocols beside end-to-end fine-tuning, and the tools LP-FT's first step, the self-supervised learning curve and
its check use. An arm's probe runs, written like fine-tuning runs, are :mod:`medimg.finetune.probe_runs`.

May import the shared modules, :mod:`medimg.data`, :mod:`medimg.models` and :mod:`medimg.evaluate`; a fine-tuning
config only names the network whose features are taken (read by type, never imported).
"""
