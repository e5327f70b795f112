"""The fine-tuning stage: a network from :mod:`medimg.models` trained on a prepared dataset into a run directory.

- :mod:`.arms` — the table of arms (tl, ssl, tl+ssl, scratch): where each starts, its default recipe and rate;
- :mod:`.recipes` — the table of fine-tuning recipes (paper, linear, partial, full, LP-FT): what trains when,
  batch-norm statistics, how the head starts, when training stops and which weights are kept;
- :mod:`.config` — :class:`~medimg.finetune.config.FinetuneConfig`, the run's record; :mod:`.trainer` — the
  Lightning trainer settings (CPU, GPU, DDP);
- :mod:`.loaders`, :mod:`.classifier` (the LightningModule), :mod:`.train` (single and double fine-tuning);
- :mod:`.runs` — run directories, named by :func:`medimg.identity.identity`, written and read back;
  :mod:`.probe_runs` — an initial network read by the linear probe and kNN, written as the same kind of run;
  :mod:`.run_model` — a finished run's model and inputs.

May import the shared modules, :mod:`medimg.data`, :mod:`medimg.models`, :mod:`medimg.plots`,
:mod:`medimg.evaluate` and :mod:`medimg.probe`; nothing of self-supervised pretraining, comparisons or the study.
"""
