"""Reports of an experiment: strict JSON (versioned schema), a PNG grid, a self-contained HTML page.

:func:`write_report` writes all three into one folder::

    out_dir/report.json          schema in docs/report_schema.md
    out_dir/reconstruction.png   ground truth above the matched reconstruction
    out_dir/report.html          one file: inline CSS, the PNG as a data URI, no network access

Numbers, iteration counts and threat-model ratings are written for people by
:mod:`gradinv.report.format` (metrics in their registered formats), which the CLI and the frontier
report use too.

Example (after :func:`gradinv.experiment.run_experiment`)::

    paths = write_report(result, "runs/idlg")
    print(paths.html)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from gradinv.report.format import IterationCounts, format_metric, iteration_counts
from gradinv.report.grid import image_grid, reconstruction_image, reconstruction_png
from gradinv.report.html import render_html, write_html, write_index_html
from gradinv.report.json_report import (
    SCHEMA_VERSION,
    decode_float,
    encode_float,
    report_dict,
    to_jsonable,
    write_json,
)

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.experiment import ExperimentResult

__all__ = [
    "SCHEMA_VERSION",
    "IterationCounts",
    "ReportPaths",
    "decode_float",
    "encode_float",
    "format_metric",
    "image_grid",
    "iteration_counts",
    "reconstruction_image",
    "reconstruction_png",
    "render_html",
    "report_dict",
    "to_jsonable",
    "write_html",
    "write_index_html",
    "write_json",
    "write_report",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` put the three files."""

    json: Path
    png: Path
    html: Path


def write_report(result: ExperimentResult, out_dir: str | Path) -> ReportPaths:
    """Write ``report.json``, ``reconstruction.png`` and ``report.html`` into ``out_dir`` (created
    with its parents); the JSON and HTML carry the same ``created`` timestamp."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    created = datetime.now(timezone.utc)
    json_path = write_json(result, out / "report.json", created=created)
    png_path = reconstruction_png(result, out / "reconstruction.png")
    html_path = write_html(result, out / "report.html", png_path=png_path, created=created)
    logger.info("report written to %s", out)
    return ReportPaths(json=json_path, png=png_path, html=html_path)
