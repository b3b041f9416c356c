"""``gradinv catalog``: the living table of paper 004 (Carletti et al., USENIX Security 2025) built
from the registries — every attack and defense with gradinv's threat model next to 004's
(:mod:`gradinv.catalog`). The measured column shows the numbers shipped with gradinv (quick-scale runs
of the built-in studies, their commands in the output); ``--studies DIR ...`` fills it from the
user's own finished study runs instead (:mod:`gradinv.studies.headlines`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gradinv.cli.common import add_command, choice_type, prepare_out_dir
from gradinv.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.studies.headlines import Headline

FORMATS = ("md", "html", "json")
_SUFFIXES = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".json": "json"}

HELP = "the living table of paper 004: every attack and defense, gradinv's threat model next to 004's"
DESCRIPTION = (
    "Every registered attack and defense with its family, paper, threat model per gradinv and per "
    "Carletti et al. (SoK, USENIX Security 2025; paper 004) with the reason wherever they differ, learning "
    "algorithm, label recovery, what gradinv implements and where it deviates."
)
EPILOG = """examples:
  gradinv catalog                          # Markdown on stdout
  gradinv catalog --format json
  gradinv catalog --out catalog.html       # the format follows the suffix (.md, .html, .json)
  gradinv study run frontier --scale quick --out runs/frontier
  gradinv catalog --studies runs/frontier runs/local-updates --out catalog.md   # measured numbers

The measured column: by default the numbers shipped with gradinv (quick-scale runs of the built-in
studies; the output lists their commands). --studies: from your runs instead, per attack, defense and
label method the headline of each run (its best cell, mean over
repeats; a defense's best privacy-utility trade-off), with the command that reproduces the run.
Where several runs measure the same name, the first run given wins (a headline metric such as PSNR
before a secondary one such as BRR).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "catalog", HELP, DESCRIPTION, EPILOG)
    p.add_argument(
        "--format",
        type=choice_type(FORMATS, flag="--format"),
        help="md (default), html or json; with --out, the file's suffix picks it when omitted",
    )
    p.add_argument("--out", "-o", type=Path, help="write to FILE instead of stdout")
    p.add_argument(
        "--studies",
        nargs="+",
        type=Path,
        metavar="DIR",
        default=[],
        help="fill the measured column from these finished study runs (each the --out folder of "
        "`gradinv study run`); where several measure the same name, the first given wins",
    )
    p.add_argument(
        "--save-measured",
        type=Path,
        metavar="FILE",
        help="also write the measured numbers of --studies as JSON (what gradinv ships as "
        "gradinv/catalog_measured.json)",
    )
    p.set_defaults(func=run)


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    if args.out is not None:
        return _SUFFIXES.get(args.out.suffix.lower(), "md")
    return "md"


def _note(args: argparse.Namespace, headlines: Sequence[Headline]) -> str:
    """Where the numbers come from: gradinv's version, the scales and this command."""
    import gradinv

    scales = sorted({h.scale or "default" for h in headlines})
    words = ["gradinv", "catalog", "--studies", *map(str, args.studies)]
    if args.out is not None:
        words += ["--out", str(args.out)]
    if args.save_measured is not None:
        words += ["--save-measured", str(args.save_measured)]
    return (
        f"Measured with gradinv {gradinv.__version__} at the {', '.join(scales)} scale "
        f"(written by `{shlex.join(words)}`)."
    )


def run(args: argparse.Namespace) -> int:
    from gradinv.catalog import build_catalog, render_html, render_json, render_markdown
    from gradinv.studies.headlines import catalog_measured, headlines_from_dirs, load_measured

    fmt = _format(args)
    if args.save_measured is not None and not args.studies:
        raise ConfigError(
            "Expected --save-measured with --studies DIR ... (the runs whose numbers it saves), but got "
            "no --studies. Add e.g. --studies runs/frontier."
        )
    if args.studies:  # read (and check) every run before anything is written
        headlines = headlines_from_dirs(args.studies)
        found = dataclasses.replace(catalog_measured(headlines), note=_note(args, headlines))
    else:
        found = load_measured()
        if found.commands:
            found = dataclasses.replace(
                found,
                note=f"These numbers are shipped with gradinv (gradinv/catalog_measured.json). {found.note} "
                "`gradinv catalog --studies DIR ...` shows your own runs' instead.",
            )
    catalog = build_catalog(
        found.named, labels_measured=found.labels, sources=found.commands, sources_note=found.note
    )
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
    text = renderer(catalog)
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        print(f"wrote {out}")
    if args.save_measured is not None:
        target = args.save_measured.expanduser()
        prepare_out_dir(target.parent if str(target.parent) else ".", option="--save-measured (its folder)")
        target.write_text(json.dumps(found.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr if out is None else sys.stdout)
    return 0
