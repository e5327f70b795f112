"""Command-line options generated from a record's fields, so a new setting is one edit (the field).

A field declared with :func:`setting` carries its help text and allowed values; :func:`add_options`
turns every such field of a dataclass into an ``argparse`` option with the field's default, and
:func:`from_args` builds the record back from the parsed arguments. Types come from the annotation:
``int``, ``float``, ``str`` (and ``... | None``, where the word ``none`` gives None), ``bool``
(``--name`` / ``--no-name``) and ``tuple[str, ...]`` (one or more values).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any

_MISSING = dataclasses.MISSING


def setting(default: Any = _MISSING, help: str = "", *, choices=None, default_factory=_MISSING) -> Any:
    """A dataclass field that is also a command-line option (``help``, ``choices``)."""
    meta = dict(help=help, choices=tuple(choices) if choices is not None else None, option=True)
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _optional(convert):
    def parse(text: str):
        return None if text.lower() == "none" else convert(text)

    parse.__name__ = convert.__name__  # argparse names the type in its error message
    return parse


def _int_or_word(text: str) -> int | str:
    """A number, or a word such as ``auto`` (Lightning's ``devices``)."""
    return int(text) if text.lstrip("-").isdigit() else text


def _type_text(f: dataclasses.Field) -> str:
    """A field's annotation as text without spaces (``int|None``): annotations are strings here (PEP 563)."""
    return str(f.type).replace(" ", "")


def _argument(f: dataclasses.Field) -> dict:
    kind = _type_text(f)
    meta = f.metadata
    default = f.default if f.default is not _MISSING else None
    shown = "" if f.default is _MISSING or f.default is None else f" (default {default})"
    kw: dict = dict(help=(meta.get("help") or "") + shown, dest=f.name)
    if kind == "bool":
        return dict(kw, action=argparse.BooleanOptionalAction, default=default)
    if kind.startswith("tuple["):
        return dict(kw, nargs="+", required=f.default is _MISSING, default=default)
    base, optional = kind.split("|")[0], kind.endswith("|None")
    convert = _int_or_word if kind == "int|str" else {"int": int, "float": float, "str": str}[base]
    kw.update(type=_optional(convert) if optional else convert, default=default)
    if meta.get("choices"):
        kw["choices"] = meta["choices"]
    if f.default is _MISSING and f.default_factory is _MISSING:
        kw["required"] = True
    return kw


def option_fields(record: type) -> list[dataclasses.Field]:
    """The fields of ``record`` declared with :func:`setting`, in declaration order."""
    return [f for f in dataclasses.fields(record) if f.metadata.get("option")]


def add_options(parser, record: type, *, skip=(), title: str | None = None) -> None:
    """Add one ``--field-name`` option per :func:`setting` field of ``record`` (except ``skip``)."""
    group = parser.add_argument_group(title) if title else parser
    for f in option_fields(record):
        if f.name not in skip:
            group.add_argument(f"--{f.name.replace('_', '-')}", **_argument(f))


def from_args(record: type, args: argparse.Namespace, **extra):
    """``record(**options)`` from parsed arguments: every option field present in ``args``, then ``extra``."""
    values = {f.name: getattr(args, f.name) for f in option_fields(record) if hasattr(args, f.name)}
    return record(**{**values, **extra})


TRUE_WORDS, FALSE_WORDS = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def coerce(record: type, name: str, value: Any, *, how: str = "-p {name} {example}") -> Any:
    """``value`` as the type of ``record``'s field ``name`` (as a person or papermill hands it over: the text
    ``"false"``, the number 64), or :class:`~medimg.errors.MedimgError` naming the parameter and the values it
    takes. None stays None (the default). Booleans read true/false, yes/no, 1/0, on/off; whole numbers refuse
    fractions; a field with choices refuses any other value. ``how`` shows how to give a value (papermill's
    ``-p`` by default)."""
    from medimg.errors import MedimgError

    f = {f.name: f for f in dataclasses.fields(record)}[name]
    if value is None:
        return None
    kind = _type_text(f).split("|")[0]
    choices = f.metadata.get("choices")

    def refuse(what: str, example) -> MedimgError:
        return MedimgError(f"parameter {name}={value!r} is not {what}: give " + how.format(name=name, example=example))

    if kind == "bool":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise refuse("true or false", "true")
    if kind == "int":
        if isinstance(value, bool):
            raise refuse("a whole number", f.default if isinstance(f.default, int) else 1)
        try:
            number = float(str(value).strip())
        except ValueError:
            number = None
        if number is None or not math.isfinite(number) or number != int(number):
            raise refuse("a whole number", f.default if isinstance(f.default, int) else 1)
        value = int(number)
    elif kind == "float":
        try:
            value = float(str(value).strip())
        except ValueError:
            raise refuse("a number", f.default if isinstance(f.default, float) else 0.1) from None
    elif kind == "str":
        value = str(value).strip()
    if choices and value not in choices:
        allowed = ", ".join(str(c) for c in choices if c is not None)
        raise MedimgError(f"parameter {name}={value!r} is not one of {allowed}: give "
                          + how.format(name=name, example=next(c for c in choices if c is not None)))
    return value
