"""Explaining a finished run: Grad-CAM maps of its test images with the sanity checks of Adebayo et al. 2018
(model and label randomisation) and deletion scores (:mod:`.gradcam`).

May import the shared modules, :mod:`medimg.data`, :mod:`medimg.models`, :mod:`medimg.plots` and the run
directories of :mod:`medimg.finetune`.
"""
