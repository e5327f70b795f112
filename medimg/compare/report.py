"""``medimg evaluate RUN_DIR``: every metric of one run with its bootstrap interval, written beside the run."""
from __future__ import annotations

from functools import partial
from pathlib import Path

from medimg.errors import MedimgError
from medimg.identity import provenance
from medimg.atomic import write_text
from medimg.finetune.runs import write_json
from medimg.evaluate.metrics import json_number, reliability, scalar_metrics, summary_metrics, undefined_reasons
from medimg.finetune.runs import RunResult, read_run
from medimg.evaluate.stats import LEVEL, N_BOOT, bootstrap_ci
from medimg.evaluate.tables import Footnotes, is_undefined, markdown_table, number_cell

EVALUATION_FILE = "evaluation.json"


def run_intervals(run: RunResult, *, n_boot: int = N_BOOT, level: float = LEVEL, random_state: int = 0) -> dict:
    """:func:`~medimg.evaluate.stats.bootstrap_ci` of every metric of ``run``; an undefined estimate carries
    the reason :func:`~medimg.evaluate.metrics.undefined_reasons` gives."""
    classes = list(run.classes)
    metric = partial(scalar_metrics, classes=classes, task=run.task)
    reasons = undefined_reasons(run.y_true, run.probs, classes, run.task)["undefined"]
    return bootstrap_ci(run.y_true, run.probs, metric, n_boot=n_boot, level=level, random_state=random_state,
                        reasons=reasons)


def intervals_markdown(intervals: dict, partial_notes: dict[str, str]) -> str:
    """The table of :func:`run_intervals`: "—" where an estimate or interval is undefined, the reason footnoted;
    ``partial_notes`` (``summary_metrics(...)["partial"]``) footnote averages over fewer than all classes."""
    notes = Footnotes()
    rows = []
    for k, v in intervals.items():
        undefined = is_undefined(v["estimate"])
        rows.append(dict(metric=k, estimate=number_cell(v["estimate"], notes, v["reason"] if undefined
                                                        else partial_notes.get(k)),
                         low=number_cell(v["low"], notes, None if undefined else v["reason"]),
                         high=number_cell(v["high"])))
    return markdown_table(rows, notes=notes)


def evaluate_run(run_dir, *, n_boot: int = N_BOOT, level: float = LEVEL, random_state: int = 0,
                 force: bool = False) -> dict:
    """Write ``evaluation.json`` (metrics, intervals, confusion matrix, reliability data) and ``evaluation.md``.

    An undefined estimate or interval bound is ``null`` in the JSON, with its ``reason``; ``summary``
    (see :func:`~medimg.evaluate.metrics.summary_metrics`) lists every undefined metric's reason.
    """
    run = read_run(run_dir)
    target = Path(run_dir) / EVALUATION_FILE
    if target.exists() and not force:
        raise MedimgError(f"{target} exists: pass --force to recompute it")
    rel = reliability(run.y_true, run.probs)
    result = dict(
        run=str(run.path), dataset=run.dataset, method=run.config["method"], seed=run.seed, task=run.task,
        modality=run.modality, classes=list(run.classes),
        bootstrap=dict(n_boot=n_boot, level=level, random_state=random_state, unit="test image"),
        metrics={k: dict(v, estimate=json_number(v["estimate"]), low=json_number(v["low"]),
                         high=json_number(v["high"]))
                 for k, v in run_intervals(run, n_boot=n_boot, level=level, random_state=random_state).items()},
        summary=summary_metrics(run.y_true, run.probs, list(run.classes), run.task),
        reliability={k: v.tolist() for k, v in rel.items()},
        provenance=provenance(),
    )
    title = (f"# {run.dataset} · {run.config['method']} · seed {run.seed}\n\n"
             f"{int(level * 100)}% percentile bootstrap intervals over the {len(run.y_true)} test images "
             f"({n_boot} resamples, random_state {random_state}).\n\n")
    md = target.with_suffix(".md")
    # the markdown first: evaluation.json's presence means the evaluation is complete
    write_text(md, title + intervals_markdown(result["metrics"], result["summary"]["partial"]) + "\n")
    write_json(target, result)
    return result
