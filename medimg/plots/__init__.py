"""Figures: every function takes arrays or tables and returns a matplotlib Figure, never calling ``show``.

Notebooks display the returned figure; the CLI saves it. May import only the shared modules. Import from the
submodules (``medimg.plots.results``, ``medimg.plots.curves``, ``medimg.plots.gradcam``, ``medimg.plots.samples``).
"""
