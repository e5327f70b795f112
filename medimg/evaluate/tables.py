"""Result tables as Markdown (for the book and for people) beside their CSV twins."""
from __future__ import annotations

import math


def _cell(value, floatfmt: str) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        return "" if math.isnan(value) else format(value, floatfmt)
    return str(value).replace("|", "\\|")


def markdown_table(rows: list[dict], *, floatfmt: str = ".3f") -> str:
    """A GitHub/MyST pipe table of ``rows`` (columns in first-seen order)."""
    if not rows:
        return "_(no rows)_"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c), floatfmt) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
