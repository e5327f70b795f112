"""The ``medimg`` command: thin wrappers over the package's functions.

Every :class:`MedimgError` becomes one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import EXIT_USAGE, MedimgError


def _cmd_datasets(args) -> int:
    from .data.summary import dataset_table

    rows = dataset_table()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    header = ("name", "kind", "modality", "classes", "paper", "available")
    table = [[str(r[h] if r[h] is not None else "-") if h != "paper" else ("yes" if r[h] else "") for h in header]
             for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    return 0


def _cmd_describe(args) -> int:
    from .data import DataConfig, describe, format_description, prepare

    config = DataConfig(dataset=args.dataset, size=args.size, split_seed=args.split_seed,
                        medmnist_size=args.medmnist_size)
    info = describe(prepare(config, progress=not args.json and sys.stderr.isatty()))
    print(json.dumps(info, indent=1) if args.json else format_description(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medimg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the registered datasets and whether they are available here")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("describe", help="split sizes, class counts, channels, image sizes and duplicates of a dataset")
    p.add_argument("dataset", help="a registered name (see 'medimg datasets') or the path of an image folder")
    p.add_argument("--size", type=int, default=64, help="decode and cache the images at this size (default 64)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the generated split (default 0)")
    p.add_argument("--medmnist-size", type=int, default=28, choices=(28, 64, 128, 224),
                   help="which official MedMNIST file to read (default 28)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_describe)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MedimgError as err:
        print(f"medimg: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
