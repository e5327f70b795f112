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


def _argument(f: dataclasses.Field) -> dict:
    kind = str(f.type).replace(" ", "")
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
