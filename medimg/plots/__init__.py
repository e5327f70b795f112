"""Figures: every function returns a matplotlib Figure and never calls ``show``.

Notebooks display the returned figure; the CLI saves it. Import from the submodules
(``medimg.plots.results``, ``medimg.plots.curves``, ``medimg.plots.gradcam``).
"""
