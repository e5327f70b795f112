"""Result tables as Markdown (for the book and for people) beside their CSV twins.

An undefined value (None or NaN: a metric with no value, an interval that cannot be computed)
is shown as "—", never as "nan" or 0; where the reason is known, the cell carries a footnote mark
(¹, ², ...) and :class:`Footnotes` lists the reasons under the table.
"""
from __future__ import annotations

import math

UNDEFINED = "—"
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


class Footnotes:
    """The numbered reasons of one table: :meth:`mark` gives a reason's mark, :meth:`markdown` lists them.

    A reason keeps its number however many cells it marks; a missing reason (None, NaN, "") marks nothing.
    """

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    def mark(self, reason) -> str:
        if not isinstance(reason, str) or not reason:
            return ""
        return str(self._numbers.setdefault(reason, len(self._numbers) + 1)).translate(_SUPERSCRIPT)

    def markdown(self) -> str:
        """The reasons as a Markdown list ("" when there is none)."""
        return "\n".join(f"- {self.mark(reason)} {reason}" for reason in self._numbers)


def is_undefined(value) -> bool:
    """True for None, NaN and infinities: a value a table shows as "—"."""
    return value is None or not math.isfinite(value)


def _annotate(text: str, mark_at: int, reason, notes: Footnotes | None) -> str:
    # with footnotes, the mark goes at mark_at; without, the reason follows the cell in parentheses
    if notes is not None:
        return text[:mark_at] + notes.mark(reason) + text[mark_at:]
    return f"{text} ({reason})" if isinstance(reason, str) and reason else text


def number_cell(value, notes: Footnotes | None = None, reason=None, fmt: str = ".3f") -> str:
    """``value`` formatted with ``fmt``, or "—" where undefined; ``reason`` footnoted in ``notes``
    (or, without ``notes``, written after the cell in parentheses)."""
    text = UNDEFINED if is_undefined(value) else format(value, fmt)
    return _annotate(text, len(text), reason, notes)


def interval_cell(value, low, high, notes: Footnotes | None = None, reason=None, fmt: str = ".3f") -> str:
    """``"0.812 [0.790, 0.830]"``; ``"0.812 [—]"`` when there is no interval; ``"—"`` for an undefined value.

    ``reason`` (e.g. ``"1 seed: no interval"``) is footnoted on the "—" when something is
    undefined, else on the value (a note such as "defined on 4 of 5 seeds").
    """
    if is_undefined(value):
        return number_cell(value, notes, reason, fmt)
    shown = format(value, fmt)
    if is_undefined(low) or is_undefined(high):
        return _annotate(f"{shown} [{UNDEFINED}]", len(shown) + 2 + len(UNDEFINED), reason, notes)
    return _annotate(f"{shown} [{low:{fmt}}, {high:{fmt}}]", len(shown), reason, notes)


def _cell(value, floatfmt: str) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        return number_cell(value, fmt=floatfmt)
    return str(value).replace("|", "\\|")


def markdown_table(rows: list[dict], *, floatfmt: str = ".3f", notes: Footnotes | None = None) -> str:
    """A GitHub/MyST pipe table of ``rows`` (columns in first-seen order); NaN floats show as "—".

    ``notes``, the :class:`Footnotes` whose marks the cells carry, are listed under the table.
    """
    if not rows:
        return "_(no rows)_"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c), floatfmt) for c in columns) + " |" for row in rows]
    listed = notes.markdown() if notes is not None else ""
    return "\n".join(lines) + (f"\n\n{listed}" if listed else "")
