"""What a comparison reports by default: its headline metrics and the family-wise level of its tests (read by the
command line without importing the statistics)."""

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "mcc", "loss", "ece")
LOWER_IS_BETTER = {"loss", "ece", "brier"}
ALPHA = 0.05
