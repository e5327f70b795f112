"""medimg: transfer learning versus self-supervised learning on small medical-image datasets.

The path data takes, stage by stage (each package imports only those above it in this list):

1. :mod:`medimg.data` — a dataset's name or folder -> decoded images -> a split that keeps duplicates together.
2. :mod:`medimg.models` — timm backbones with offline ImageNet weights or a self-supervised checkpoint.
3. :mod:`medimg.plots` — figures from arrays; :mod:`medimg.evaluate` — metrics and statistics from arrays;
   :mod:`medimg.training` — how Lightning trains (CPU, GPU, DDP), shared by pretraining and fine-tuning.
4. :mod:`medimg.probe` — a network's frozen features -> linear probe and kNN, the protocols table (LP-FT's first step
   and the learning curves use them).
5. :mod:`medimg.ssl` — self-supervised pretraining (SimCLR, VICReg): pools, views, resumable runs, learning curves.
6. :mod:`medimg.finetune` — the arms and recipes tables; a network fine-tuned into a run directory.
7. :mod:`medimg.compare` — finished runs read: arms compared, the paper's claims; :mod:`medimg.explain` — Grad-CAM.
8. :mod:`medimg.study` — study.yml's profiles -> arms -> chapters (an arm's runs, probe runs and checks) executed by
   papermill -> the book.

Shared by every stage: :mod:`medimg.errors`, :mod:`medimg.paths`, :mod:`medimg.atomic` (whole-file writes, the
writing process), :mod:`medimg.record_options` (records as command-line options) and :mod:`medimg.identity` (one
hash names every product; provenance). :mod:`medimg.cli` is the command line (``python -m medimg``).
"""
__version__ = "0.1.0"
