"""The study: study.yml's profiles -> the arms and chapters of the book -> papermill -> jupyter-book.

In the order a chapter is made: :mod:`.profiles` (study.yml read), :mod:`.pretraining` (the profile's
self-supervised pretraining stage and the checkpoint each arm takes), :mod:`.arm` (one arm,
:func:`~medimg.study.arm.profile_arm`), :mod:`.chapter_arms` (which arms each chapter runs), :mod:`.arm_runs` (an
arm's runs, probes and checks, found or made; one probe run: :mod:`.probe_runs`), :mod:`.parameters` (each
template's parameters, stated once), :mod:`.chapter` (one chapter's record), :mod:`.plan` (the chapters and what
each waits for), :mod:`.workshop` (the workshop chapter's arms and questions), :mod:`.cost` (what a plan costs),
:mod:`.execute` (one chapter through papermill), :mod:`.book` (toc and build), :mod:`.schedule` (every chapter,
``--jobs`` at once) and :mod:`.cluster`
(every chapter as a job: SLURM through submitit, or submitit's local executor).

The top stage: may import every other; only it knows about papermill, the book and how chapters are scheduled.
"""
