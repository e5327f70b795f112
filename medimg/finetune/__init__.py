"""The fine-tuning stage: a network from :mod:`medimg.models` trained on a prepared dataset into a run directory.

- :mod:`.arms` — the table of arms (tl, ssl, tl+ssl, scratch): where each starts, its default recipe and rate;
- :mod:`.recipes` — the table of fine-tuning recipes (paper, linear, partial, full, LP-FT): what trains when,
  batch-norm statistics, how the head starts, when training stops and which weights are kept;
- :mod:`.config` — :class:`~medimg.finetune.config.FinetuneConfig`, the run's record (its ``network``: the
  record a probe reads of the network it starts from); the Lightning trainer settings are :mod:`medimg.training`'s;
- :mod:`.loaders`, :mod:`.classifier` (the LightningModule), :mod:`.train` (single and double fine-tuning);
- :mod:`.runs` — run directories, named by :func:`medimg.identity.identity`, written and read back (a probe run of
  :mod:`medimg.study.probe_runs` is the same kind of run); :mod:`.run_model` — a finished run's model and inputs.

May import the shared modules, :mod:`medimg.data`, :mod:`medimg.models`, :mod:`medimg.plots`,
:mod:`medimg.evaluate`, :mod:`medimg.training`, :mod:`medimg.probe` and :mod:`medimg.ssl` (the checkpoints it
starts from come before it); nothing of comparisons or the study.
"""
