"""Reading finished runs: arm against arm on the same test images (:mod:`.comparison`: intervals, paired tests,
Holm), one run's report (:mod:`.report`), the three protocols side by side (:mod:`.protocols`), the paper's
claims (:mod:`.claims`) and the reproducibility table (:mod:`.reproducibility`).

Reads run directories only; trains nothing. May import every stage below it (data, models, plots, evaluate,
training, probe, ssl, finetune); not the study.
"""
