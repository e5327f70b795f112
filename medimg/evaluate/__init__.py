"""Evaluation: metrics from predictions, statistics across runs, comparisons. Works on arrays and run directories."""
