"""``gradinv catalog``: the living table of paper 004 (Carletti et al., USENIX Security 2025) built
from the registries — every attack and defense with gradinv's threat model next to 004's
(:mod:`gradinv.catalog`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradinv.cli.common import choice_type, prepare_out_dir
from gradinv.errors import ConfigError

FORMATS = ("md", "html", "json")
_SUFFIXES = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".json": "json"}

EPILOG = """examples:
  gradinv catalog                          # Markdown on stdout
  gradinv catalog --format json
  gradinv catalog --out catalog.html       # the format follows the suffix (.md, .html, .json)
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "catalog",
        help="the living table of paper 004: every attack and defense, gradinv's threat model next to 004's",
        description="Every registered attack and defense with its family, paper, threat model per gradinv "
        "and per Carletti et al. (SoK, USENIX Security 2025; paper 004) with the reason wherever they "
        "differ, learning algorithm, label recovery, what gradinv implements and where it deviates.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--format",
        type=choice_type(FORMATS, flag="--format"),
        help="md (default), html or json; with --out, the file's suffix picks it when omitted",
    )
    p.add_argument("--out", "-o", type=Path, help="write to FILE instead of stdout")
    p.set_defaults(func=run)


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    if args.out is not None:
        return _SUFFIXES.get(args.out.suffix.lower(), "md")
    return "md"


def run(args: argparse.Namespace) -> int:
    from gradinv.catalog import build_catalog, render_html, render_json, render_markdown

    fmt = _format(args)
    out: Path | None = args.out
    if out is not None:
        out = out.expanduser()
        if out.is_dir():
            raise ConfigError(
                f"Expected --out to be a file, but {str(out)!r} is a directory. Give a file name, e.g. "
                f"--out {out / ('catalog.' + fmt)}."
            )
        prepare_out_dir(out.parent if str(out.parent) else ".", option="--out (its folder)")
    renderer = {"md": render_markdown, "html": render_html, "json": render_json}[fmt]
    text = renderer(build_catalog())
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0
