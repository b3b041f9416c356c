"""A study's outputs: plots (deterministic bytes, a PNG of the stated size), and the folder of tables,
plots and one self-contained HTML page, byte-identical for the same trials."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest
from PIL import Image

from gradinv.errors import ConfigError
from gradinv.report.format import format_metric
from gradinv.studies.plots import PLOT_SIZE, metric_plot, plot_axes
from gradinv.studies.rows import TableLayout, TrialRow, encode_images
from gradinv.studies.study_report import write_study_outputs

BATCHES = ("8", "1", "2")
THREATS = ("B", "A")
LAYOUT = TableLayout(
    rows=("batch",),
    columns=("threat",),
    metrics=("psnr", "label_accuracy"),
    order={"batch": BATCHES, "threat": THREATS},
)


def _images(seed: int, n: int = 2) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_images(rng.random((n, 3, 8, 8)), rng.random((n, 3, 8, 8)), list(range(n)))


def study_rows() -> list[TrialRow]:
    """Threat model A is refused at batch 8; batch 2 under B stores no images; 2 repeats elsewhere."""
    rows = []
    for i, b in enumerate(BATCHES):
        for j, t in enumerate(THREATS):
            for r in range(2):
                point = {"batch": b, "threat": t, "data": "samples"}
                common = {"key": f"{b}{t}{r}", "study": "batch_size", "point": point, "values": point}
                if t == "A" and b == "8":
                    rows.append(
                        TrialRow(
                            **common,
                            repeat=r,
                            config={},
                            metrics={},
                            status="refused",
                            message="iDLG needs the gradient of the last layer <not granted>",
                        )
                    )
                    continue
                images = None if (b, t) == ("2", "B") else _images(10 * i + j + r)
                metrics = {"psnr": 10.0 + 3 * i + j + 0.5 * r, "label_accuracy": 1.0 - 0.25 * r}
                rows.append(
                    TrialRow(**common, repeat=r, config={}, metrics=metrics, images=images, version="0.1.0")
                )
    return rows


def test_plot_axes_defaults():
    assert plot_axes(LAYOUT) == ("batch", ("threat",))
    assert plot_axes(TableLayout(("a", "b"), ("c",), ("psnr",), {}, series=None)) == ("a", ("c", "b"))
    assert plot_axes(TableLayout(("a",), ("c",), ("psnr",), {}, plot="c", series="a")) == ("c", ("a",))
    with pytest.raises(ConfigError, match="differ"):
        plot_axes(TableLayout(("a",), ("c",), ("psnr",), {}, plot="a", series="a"))


def test_plot_is_deterministic_and_decodes():
    rows = study_rows()
    first = metric_plot(rows, LAYOUT, "psnr")
    assert metric_plot(list(reversed(rows)), LAYOUT, "psnr") == first
    img = Image.open(io.BytesIO(first))
    assert img.format == "PNG" and img.size == PLOT_SIZE
    img.load()
    assert "Software" not in img.info and not any("date" in k.lower() for k in img.info)
    # categorical x axis (labels that are not numbers), lines per batch
    cat = TableLayout(
        LAYOUT.rows, LAYOUT.columns, LAYOUT.metrics, LAYOUT.order, plot="threat", series="batch"
    )
    assert Image.open(io.BytesIO(metric_plot(rows, cat, "label_accuracy"))).size == PLOT_SIZE
    # no value to draw (every trial refused) still gives a plot
    refused = [r for r in rows if r.status == "refused"]
    assert Image.open(io.BytesIO(metric_plot(refused, LAYOUT, "psnr"))).size == PLOT_SIZE


def test_plot_refuses_to_average_across_an_axis():
    layout = TableLayout(("batch",), (), ("psnr",), LAYOUT.order)
    with pytest.raises(ConfigError, match="threat"):
        metric_plot(study_rows(), layout, "psnr")


def test_outputs_are_complete_and_byte_identical(tmp_path):
    rows = study_rows()
    kwargs = dict(
        title="Batch size <vs> leakage",
        description="Larger batches leak less.\n\nScaled down for CPUs.",
        claim="PSNR falls as the batch grows (Geiping et al., Fig. 3).",
        layout=LAYOUT,
        stale=3,
        extra={"paper": "Geiping et al. 2020", "scale": "quick"},
    )
    a = write_study_outputs(tmp_path / "a", rows=rows, **kwargs)
    b = write_study_outputs(tmp_path / "b", rows=list(reversed(rows)), **kwargs)
    names = [
        "trials.csv",
        "table.csv",
        "table.md",
        "table.tex",
        "plot_psnr.png",
        "plot_label_accuracy.png",
        "report.html",
    ]
    assert [p.name for p in a.paths()] == names
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(names)
    assert list(a.plots) == ["psnr", "label_accuracy"]
    for pa, pb in zip(a.paths(), b.paths()):
        assert pa.read_bytes() == pb.read_bytes(), pa.name

    trials = list(csv.DictReader(a.trials_csv.open()))
    assert len(trials) == len(rows)
    assert [t["batch"] for t in trials[::4]] == ["8", "1", "2"]  # the study's order, not the input's
    assert trials[2]["status"] == "refused" and "not granted" in trials[2]["message"]

    page = a.html.read_text()
    assert page.count("<h1>") == 1 and "Batch size &lt;vs&gt; leakage" in page
    assert "PSNR falls as the batch grows" in page and "<p>Scaled down for CPUs.</p>" in page
    assert "Geiping et al. 2020" in page
    # the table's numbers: batch 1 under B has psnr 13.0 and 13.5 over two repeats
    mean, std = np.mean([13.0, 13.5]), np.std([13.0, 13.5], ddof=1)
    assert f"{format_metric('psnr', mean)} ± {format_metric('psnr', std)}" in page
    assert "refused" in page and "&lt;not granted&gt;" in page
    assert "3 stale row(s)" in page
    # one image grid per grid point with images: 6 points, 1 refused, 1 without images
    assert page.count('<img class="grid"') == 4 and page.count("<img") == 4 + 2
    assert "no images" in page
    # self-contained: every image is a data URI, nothing is loaded from elsewhere
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', page))
    assert "<link" not in page and "<script" not in page and "http" not in page


def test_bad_layout_writes_nothing(tmp_path):
    layout = TableLayout(("batch",), (), ("psnr",), LAYOUT.order)
    with pytest.raises(ConfigError, match="threat"):
        write_study_outputs(
            tmp_path / "out", title="t", description="", claim="", layout=layout, rows=study_rows()
        )
    assert not (tmp_path / "out").exists()
