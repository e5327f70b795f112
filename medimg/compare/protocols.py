"""The arms under each protocol side by side: fine-tuning, linear probe and kNN (the MedMNIST+ protocols).

A probe measures what an initialisation already separates; fine-tuning should keep at least that. An arm
whose fine-tuned mean is below its own linear probe lost what its pretraining held: the table says by how
much, and the recipe, not the initialisation, is then the suspect.
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from medimg.compare.comparison import Comparison
from medimg.probe.protocols import fine_tuning, lead_probe


def protocol_table(comparisons: dict[str, Comparison]) -> pd.DataFrame:
    """One row per (dataset, arm, protocol) from ``{protocol name: Comparison}``: ``seeds``, mean test
    ``accuracy`` with its 95% interval (``accuracy_low``, ``accuracy_high``), ``balanced_accuracy`` and
    ``majority_accuracy``."""
    rows = []
    for protocol, c in comparisons.items():
        for r in c.summary.to_dict("records"):
            rows.append(dict(dataset=r["dataset"], arm=r["arm"], protocol=protocol, seeds=r["seeds"],
                             accuracy=r["accuracy"], accuracy_low=r["accuracy_low"], accuracy_high=r["accuracy_high"],
                             balanced_accuracy=r["balanced_accuracy"], majority_accuracy=r["majority_accuracy"]))
    return pd.DataFrame(rows)


def probe_gaps(table: pd.DataFrame, *, probe: str | None = None) -> pd.DataFrame:
    """Per (dataset, arm): fine-tuned mean accuracy with its 95% interval over seeds (``low``, ``high``), the
    ``probe``'s mean (the book's name of a protocol; default the lead probe of
    :data:`medimg.probe.protocols.PROTOCOLS`, the linear probe), and ``gap`` = fine-tuned minus probe (negative:
    fine-tuning ended below the probe)."""
    tuned, probe = fine_tuning().display, probe or lead_probe().display
    columns = ["dataset", "arm", tuned, "low", "high", probe, "gap"]
    wide = table.pivot_table(index=["dataset", "arm"], columns="protocol", values="accuracy", sort=False)
    if tuned not in wide or probe not in wide:
        return pd.DataFrame(columns=columns)
    interval = (table[table["protocol"] == tuned].set_index(["dataset", "arm"])
                [["accuracy_low", "accuracy_high"]].rename(columns={"accuracy_low": "low", "accuracy_high": "high"}))
    out = wide[[tuned, probe]].join(interval).reset_index()
    out["gap"] = out[tuned] - out[probe]
    return out[columns]


def protocols_markdown(table: pd.DataFrame) -> str:
    """Sentences for the book: for each arm, whether fine-tuning kept what its lead probe (the linear probe) shows,
    and where it did not, whether the shortfall is inside the fine-tuned runs' 95% interval (a difference the seeds
    cannot tell from noise) or outside it (the recipe lost what the initialisation held)."""
    tuned, lead = fine_tuning().display, lead_probe().display
    lines = []
    for r in probe_gaps(table).to_dict("records"):
        where = f"**{r['arm']}** on {r['dataset']}: fine-tuned {r[tuned]:.3f}"
        probe = f"its {lead} ({r[lead]:.3f})"
        if r["gap"] >= 0:
            lines.append(f"- {where}, at least {probe}.")
        elif r["low"] <= r[lead] <= r["high"]:
            lines.append(f"- {where}, {-r['gap']:.3f} below {probe}, which lies inside the fine-tuned runs' 95% "
                         f"interval [{r['low']:.3f}, {r['high']:.3f}]: a shortfall the seeds cannot tell from noise.")
        else:
            lines.append(f"- {where}, **{-r['gap']:.3f} below** {probe}, outside the fine-tuned runs' 95% interval "
                         f"[{r['low']:.3f}, {r['high']:.3f}]: the recipe lost what the initialisation held.")
    return "\n".join(lines) or "_No arm was both fine-tuned and probed._"


def protocol_bars(table: pd.DataFrame) -> Figure:
    """One panel per protocol (and dataset, when there are several), the arms' mean test accuracy with 95%
    intervals and the majority class (:func:`medimg.plots.results.metric_bars`)."""
    from medimg.plots.results import metric_bars

    several = table["dataset"].nunique() > 1
    panels = table.assign(dataset=[f"{d}: {p}" if several else p for d, p in zip(table["dataset"], table["protocol"])])
    return metric_bars(panels, "accuracy", per_row=3, title="Test accuracy under each protocol, 95% intervals")
