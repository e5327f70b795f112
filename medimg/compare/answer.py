"""The answer to the book's title in three lines, one per claim of the paper, read from the verdicts.

Claims 1 and 2 (TL on colour, SSL on grey) come from :func:`medimg.compare.claims.claims_by_protocol`, one row
per claim and protocol with its counts; each line gives the verdict under every protocol, the datasets behind it
and the self-supervised budget of that modality's checkpoints. Claim 3 (double fine-tuning) is decided under
fine-tuning only (:func:`medimg.compare.claims.double_claim`). The summary chapter opens with these lines and the
study driver puts them on the book's first page (:mod:`medimg.study.answer`).
"""
from __future__ import annotations

import pandas as pd

MODALITY_OF_CLAIM = {"TL wins on colour images": "colour", "SSL wins on grey-scale images": "grey"}


def claim_line(group: pd.DataFrame, budget: str | None = None) -> str:
    """One line for claim 1 or 2 from its rows of :func:`~medimg.compare.claims.claims_by_protocol` (one per
    protocol, with ``winner``, ``loser``, ``wins``, ``losses`` and ``datasets``): the verdict under each protocol
    with the datasets where either arm is significantly better, then the self-supervised ``budget`` of the
    modality's checkpoints in words (None: not stated). For example: "*TL wins on colour images* — fine-tuning
    **holds** (significantly better: TL on 2/2 datasets, SSL on 0/2); linear probe **not decided** (TL 0/2,
    SSL 0/2). SSL: SimCLR, 1.02M views at 64 px (2.40 CPU core-hours)."."""
    first = group.iloc[0]
    winner, loser = str(first["winner"]).upper(), str(first["loser"]).upper()
    parts = []
    for i, row in enumerate(group.itertuples(index=False)):
        n = int(row.datasets)
        counts = (f"significantly better: {winner} on {row.wins}/{n} datasets, {loser} on {row.losses}/{n}" if i == 0
                  else f"{winner} {row.wins}/{n}, {loser} {row.losses}/{n}")
        parts.append(f"{row.protocol} **{row.verdict}** ({counts})")
    return f"*{first['claim']}* — " + "; ".join(parts) + "." + (f" SSL: {budget}." if budget else "")


def double_line(double: dict) -> str:
    """Claim 3's line from :func:`~medimg.compare.claims.double_claim`: its verdict under fine-tuning and on how
    many datasets."""
    n = int(double.get("datasets", 0))
    where = f" ({n} dataset{'s' if n != 1 else ''}, fine-tuning only)" if n else ""
    return f"*{double['claim']}*: **{double['verdict']}**{where}."


def answer_lines(by_protocol: pd.DataFrame, double: dict, budgets: dict[str, str] | None = None) -> list[str]:
    """The answer in three lines: claims 1 and 2 under every protocol (:func:`claim_line`, with the budget of
    their modality from ``budgets``: ``{"grey" | "colour": words}``), then claim 3 (:func:`double_line`).

    ``by_protocol`` is :func:`medimg.compare.claims.claims_by_protocol`'s table; a claim it lacks (no dataset of
    its modality here) is left out, so a profile of grey targets only answers in two lines.
    """
    lines = []
    for claim, group in by_protocol.groupby("claim", sort=False):
        lines.append(claim_line(group, (budgets or {}).get(MODALITY_OF_CLAIM.get(claim, ""))))
    return lines + [double_line(double)]
