"""``medimg evaluate RUN_DIR``: every metric of one run with its bootstrap interval, written beside the run."""
from __future__ import annotations

from functools import partial
from pathlib import Path

from ..errors import MedimgError
from ..provenance import provenance
from ..atomic import write_text
from ..runs import write_json
from .metrics import reliability, scalar_metrics, summary_metrics
from .run_results import RunResult, read_run
from .stats import LEVEL, N_BOOT, bootstrap_ci
from .tables import markdown_table

EVALUATION_FILE = "evaluation.json"


def run_intervals(run: RunResult, *, n_boot: int = N_BOOT, level: float = LEVEL, random_state: int = 0) -> dict:
    metric = partial(scalar_metrics, classes=list(run.classes), task=run.task)
    return bootstrap_ci(run.y_true, run.probs, metric, n_boot=n_boot, level=level, random_state=random_state)


def evaluate_run(run_dir, *, n_boot: int = N_BOOT, level: float = LEVEL, random_state: int = 0,
                 force: bool = False) -> dict:
    """Write ``evaluation.json`` (metrics, intervals, confusion matrix, reliability data) and ``evaluation.md``."""
    run = read_run(run_dir)
    target = Path(run_dir) / EVALUATION_FILE
    if target.exists() and not force:
        raise MedimgError(f"{target} exists: pass --force to recompute it")
    rel = reliability(run.y_true, run.probs)
    result = dict(
        run=str(run.path), dataset=run.dataset, method=run.config["method"], seed=run.seed, task=run.task,
        modality=run.modality, classes=list(run.classes),
        bootstrap=dict(n_boot=n_boot, level=level, random_state=random_state, unit="test image"),
        metrics=run_intervals(run, n_boot=n_boot, level=level, random_state=random_state),
        summary=summary_metrics(run.y_true, run.probs, list(run.classes), run.task),
        reliability={k: v.tolist() for k, v in rel.items()},
        provenance=provenance(),
    )
    rows = [dict(metric=k, estimate=v["estimate"], low=v["low"], high=v["high"]) for k, v in result["metrics"].items()]
    title = (f"# {run.dataset} · {run.config['method']} · seed {run.seed}\n\n"
             f"{int(level * 100)}% percentile bootstrap intervals over the {len(run.y_true)} test images "
             f"({n_boot} resamples, random_state {random_state}).\n\n")
    md = target.with_suffix(".md")
    # the markdown first: evaluation.json's presence means the evaluation is complete
    write_text(md, title + markdown_table(rows, floatfmt=".3f") + "\n")
    write_json(target, result)
    return result
