"""Study tables: mean ± std over repeats (numpy as the oracle), the study's order, refused and missing
cells, the varying-axis error, and the CSV / Markdown / LaTeX writers, on hand-made trial rows."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from gradinv.errors import ConfigError
from gradinv.report.format import format_metric
from gradinv.studies.rows import TableLayout, TrialRow
from gradinv.studies.tables import (
    Column,
    aggregate,
    latex_escape,
    metric_names,
    tidy_csv,
    to_csv,
    to_latex,
    to_markdown,
)

# the study's order is neither alphabetical nor numeric
BATCHES = ("4", "1", "16")
DEFENSES = ("none", "dp_1%")
REPEATS = 3


def row(point, repeat=0, metrics=None, status="ok", message="", key=None, seconds=1.5):
    return TrialRow(
        key=key or "-".join([*point.values(), str(repeat)]),
        study="demo",
        point=dict(point),
        values=dict(point),
        repeat=repeat,
        config={},
        metrics=dict(metrics or {}),
        status=status,
        message=message,
        seconds=seconds,
    )


def values(b: str, d: str) -> np.ndarray:
    """Known (psnr, ssim) values of each repeat at a grid point: shape (REPEATS, 2)."""
    rng = np.random.default_rng(BATCHES.index(b) * 10 + DEFENSES.index(d))
    return np.stack([rng.normal(20.0, 2.0, REPEATS), rng.uniform(0.0, 1.0, REPEATS)], axis=1)


def grid_rows(extra_axes=None):
    out = []
    for b in BATCHES:
        for d in DEFENSES:
            v = values(b, d)
            for r in range(REPEATS):
                out.append(
                    row(
                        {"batch": b, "defense": d, **(extra_axes or {})},
                        r,
                        {"psnr": v[r, 0], "ssim": v[r, 1]},
                    )
                )
    return out[::-1]  # the input order does not matter


LAYOUT = TableLayout(
    rows=("batch",),
    columns=("defense",),
    metrics=("psnr", "ssim"),
    order={"batch": BATCHES, "defense": DEFENSES},
)


def test_mean_std_and_n_match_numpy():
    table = aggregate(grid_rows(), LAYOUT)
    for b in BATCHES:
        for d in DEFENSES:
            v = values(b, d)
            for k, m in enumerate(("psnr", "ssim")):
                c = table.cell((b,), Column((d,), m))
                assert c.mean == pytest.approx(np.mean(v[:, k]), rel=1e-12)
                assert c.std == pytest.approx(np.std(v[:, k], ddof=1), rel=1e-12)
                assert (c.n, c.nan, c.trials, c.refused) == (REPEATS, 0, REPEATS, 0)
    assert table.trials == len(BATCHES) * len(DEFENSES) * REPEATS and table.repeats == (3, 3)


def test_rows_and_columns_follow_the_study_order():
    table = aggregate(grid_rows(), LAYOUT)
    assert table.row_headers == (("4",), ("1",), ("16",))
    assert table.column_headers == (
        Column(("none",), "psnr"),
        Column(("none",), "ssim"),
        Column(("dp_1%",), "psnr"),
        Column(("dp_1%",), "ssim"),
    )
    md = to_markdown(table)
    assert [line.split(" | ")[0] for line in md.splitlines()[2:5]] == ["| 4", "| 1", "| 16"]


def test_no_column_axes_makes_each_metric_a_column_and_nested_rows_nest():
    layout = TableLayout(rows=("defense", "batch"), columns=(), metrics=("ssim", "psnr"), order=LAYOUT.order)
    table = aggregate(grid_rows(), layout)
    assert table.column_headers == (Column((), "ssim"), Column((), "psnr"))
    assert table.row_headers == tuple((d, b) for d in DEFENSES for b in BATCHES)
    tex = to_latex(table)
    body = tex.split("\\midrule\n")[1].splitlines()
    # the outer label is written once per group; groups are separated by \addlinespace
    assert body[0].startswith("none & 4 & ") and body[1].startswith(" & 1 & ")
    assert body[3] == "\\addlinespace" and body[4].startswith("dp\\_1\\% & 4 & ")


def test_one_repeat_has_no_std():
    rows = [row({"batch": "1"}, 0, {"psnr": 17.1629})]
    layout = TableLayout(rows=("batch",), columns=(), metrics=("psnr",), order={"batch": ("1",)})
    table = aggregate(rows, layout)
    c = table.cells[0][0]
    assert (c.mean, c.std, c.n) == (17.1629, None, 1)
    assert "| 1 | 17.16 |" in to_markdown(table)
    assert "1 & $17.16$ \\\\" in to_latex(table)
    assert "One trial per cell" in to_markdown(table)


def test_an_axis_that_varies_outside_the_layout_is_an_error():
    rows = [*grid_rows({"lr": "0.1"}), row({"batch": "1", "defense": "none", "lr": "0.01"}, 0, {"psnr": 1.0})]
    with pytest.raises(ConfigError, match="lr") as info:
        aggregate(rows, LAYOUT)
    assert "average" in str(info.value) and "0.01" in str(info.value)
    # a constant axis is fine, and named in the note
    table = aggregate(grid_rows({"lr": "0.1"}), LAYOUT)
    assert table.fixed == (("lr", "0.1"),) and "Fixed: lr = 0.1." in to_markdown(table)
    # the repeat is never an axis
    assert aggregate(grid_rows(), LAYOUT).fixed == ()


def test_an_axis_that_moves_with_a_layout_axis_is_not_averaged_over():
    # a zip partner: width follows batch, so no cell mixes two widths
    rows = [r for r in grid_rows() if r.point["defense"] == "none"]
    width = {"4": "8", "1": "16", "16": "32"}
    rows = [row({**r.point, "width": width[r.point["batch"]]}, r.repeat, r.metrics) for r in rows]
    layout = TableLayout(rows=("batch",), columns=(), metrics=("psnr",), order={"batch": BATCHES})
    table = aggregate(rows, layout)
    assert table.row_headers == (("4",), ("1",), ("16",)) and table.fixed == (("defense", "none"),)


def test_layout_errors():
    rows = grid_rows()
    with pytest.raises(ConfigError, match="both"):
        aggregate(rows, TableLayout(("batch",), ("batch",), ("psnr",), LAYOUT.order))
    with pytest.raises(ConfigError, match="has no"):
        aggregate(rows, TableLayout(("batch", "seed"), ("defense",), ("psnr",), LAYOUT.order))
    with pytest.raises(ConfigError, match="at least one metric"):
        aggregate(rows, TableLayout(("batch",), ("defense",), (), LAYOUT.order))


def test_refused_missing_and_nan_cells():
    layout = TableLayout(
        rows=("batch",), columns=(), metrics=("psnr", "ssim"), order={"batch": ("1", "2", "3")}
    )
    rows = [
        row({"batch": "1"}, 0, {"psnr": 10.0, "ssim": float("nan")}),
        row({"batch": "1"}, 1, {"psnr": 12.0, "ssim": 0.5}),
        row({"batch": "1"}, 2, {"psnr": float("nan")}),  # no ssim at all
        row({"batch": "2"}, 0, status="refused", message="needs the labels (threat model A)"),
        row({"batch": "2"}, 1, status="refused", message="needs the labels (threat model A)"),
        row({"batch": "3"}, 0, {"ssim": 0.25}),
    ]
    table = aggregate(rows, layout)
    psnr1, ssim1 = table.cells[0]
    assert (psnr1.mean, psnr1.n, psnr1.nan, psnr1.trials) == (11.0, 2, 1, 3)
    assert psnr1.std == pytest.approx(np.std([10.0, 12.0], ddof=1))
    assert (ssim1.mean, ssim1.std, ssim1.n, ssim1.nan, ssim1.missing) == (0.5, None, 1, 1, 1)
    refused = table.cells[1][0]
    assert refused.is_refused and refused.refused == 2 and refused.mean is None
    assert refused.reasons == ("needs the labels (threat model A)",)
    missing = table.cells[2][0]
    assert missing.mean is None and not missing.is_refused and missing.n == 0
    assert table.refused == 2 and table.nan == 2
    md = to_markdown(table)
    assert "| 2 | refused | refused |" in md and "| 3 | — | 0.2500 (n=1) |" in md
    assert "2 NaN value(s) left out" in md and "2 trial(s) refused" in md
    assert "2 & refused & refused \\\\" in to_latex(table)
    lines = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert len(lines) == 3 * 2
    assert lines[2]["message"] == "needs the labels (threat model A)" and lines[2]["refused"] == "2"
    assert lines[2]["mean"] == "" and lines[0]["mean"] == "11.0" and lines[0]["nan"] == "1"


def test_infinite_values():
    layout = TableLayout(rows=("batch",), columns=(), metrics=("psnr",), order={"batch": ("1",)})
    rows = [row({"batch": "1"}, 0, {"psnr": float("inf")}), row({"batch": "1"}, 1, {"psnr": 30.0})]
    c = aggregate(rows, layout).cells[0][0]
    assert math.isinf(c.mean) and c.std is None and c.n == 2
    assert "| 1 | inf |" in to_markdown(aggregate(rows, layout))
    assert "$\\infty$" in to_latex(aggregate(rows, layout))


def test_markdown_shape():
    table = aggregate(grid_rows(), LAYOUT)
    md = to_markdown(table, title="Batch size | defense")
    lines = md.splitlines()
    assert lines[0] == "**Batch size \\| defense**" and lines[1] == ""
    rows = lines[2:7]
    assert all(line.startswith("| ") and line.endswith(" |") for line in rows)
    assert {len(line.split(" | ")) for line in rows} == {1 + 4}
    assert rows[1] == "| --- | ---: | ---: | ---: | ---: |"
    assert rows[0] == (
        "| batch | defense=none: PSNR (dB) ↑ | defense=none: SSIM ↑ | defense=dp_1%: PSNR (dB) ↑ "
        "| defense=dp_1%: SSIM ↑ |"
    )
    v = values("4", "none")
    expected = f"{format_metric('psnr', v[:, 0].mean())} ± {format_metric('psnr', v[:, 0].std(ddof=1))}"
    assert rows[2].split(" | ")[1] == expected
    assert "Mean ± sample standard deviation over n = 3 repeats" in lines[-1]


def test_latex_booktabs_and_escaping():
    table = aggregate(grid_rows(), LAYOUT)
    tex = to_latex(table, caption="Batch & defense: 50% of #1_a", label="tab:batch")
    assert tex.startswith("\\begin{table}[t]\n\\centering\n\\caption{Batch \\& defense: 50\\% of \\#1\\_a}\n")
    assert "\\label{tab:batch}" in tex and tex.rstrip().endswith("\\end{table}")
    for cmd in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}{lrrrr}"):
        assert cmd in tex
    assert "defense & \\multicolumn{2}{c}{none} & \\multicolumn{2}{c}{dp\\_1\\%} \\\\" in tex
    assert "\\cmidrule(lr){2-3} \\cmidrule(lr){4-5}" in tex
    assert "batch & PSNR (dB) $\\uparrow$ & SSIM $\\uparrow$ &" in tex
    v = values("1", "dp_1%")
    m, s = format_metric("ssim", v[:, 1].mean()), format_metric("ssim", v[:, 1].std(ddof=1))
    line = next(x for x in tex.splitlines() if x.startswith("1 & "))
    assert line.endswith(f"& ${m} \\pm {s}$ \\\\")
    assert latex_escape("a_b & c% $d #e {f} ~g ^h \\i <j>") == (
        "a\\_b \\& c\\% \\$d \\#e \\{f\\} \\textasciitilde{}g \\textasciicircum{}h \\textbackslash{}i "
        "\\textless{}j\\textgreater{}"
    )


def test_latex_scientific_numbers_and_lower_is_better():
    layout = TableLayout(rows=("batch",), columns=(), metrics=("mse",), order={"batch": ("1",)})
    rows = [row({"batch": "1"}, r, {"mse": v}) for r, v in enumerate((0.2285, 0.25))]
    tex = to_latex(aggregate(rows, layout))
    assert "batch & MSE $\\downarrow$ \\\\" in tex
    assert "1 & $2.39\\mathrm{e}{-01} \\pm 1.52\\mathrm{e}{-02}$ \\\\" in tex


def test_aggregated_csv_keeps_every_digit():
    table = aggregate(grid_rows(), LAYOUT)
    lines = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert list(lines[0]) == [
        "batch",
        "defense",
        "metric",
        "mean",
        "std",
        "n",
        "nan",
        "trials",
        "refused",
        "message",
    ]
    assert [(x["batch"], x["defense"], x["metric"]) for x in lines[:4]] == [
        ("4", "none", "psnr"),
        ("4", "none", "ssim"),
        ("4", "dp_1%", "psnr"),
        ("4", "dp_1%", "ssim"),
    ]
    v = values("4", "dp_1%")
    assert float(lines[2]["mean"]) == pytest.approx(v[:, 0].mean(), rel=1e-15)
    assert float(lines[2]["std"]) == pytest.approx(v[:, 0].std(ddof=1), rel=1e-15)


def test_tidy_csv_one_line_per_trial():
    rows = [
        row(
            {"batch": "1", "defense": "none"},
            0,
            {"zeta": 1.0, "ssim": 0.5, "attack_seconds": 2.0, "psnr": 20.0},
        ),
        row({"batch": "1", "defense": "none"}, 1, {"psnr": float("nan"), "label_accuracy": 1.0}),
        row(
            {"batch": "4", "defense": "dp"}, 0, status="refused", message='needs "labels", and more', key="k3"
        ),
    ]
    text = tidy_csv(rows)
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == [
        "batch",
        "defense",
        "repeat",
        "status",
        "message",
        "seconds",
        "psnr",
        "ssim",
        "label_accuracy",
        "attack_seconds",
        "zeta",
        "key",
    ]
    assert len(lines) == 1 + len(rows)
    assert lines[1] == ["1", "none", "0", "ok", "", "1.5", "20.0", "0.5", "", "2.0", "1.0", "1-none-0"]
    assert lines[2][6] == "nan" and lines[2][7] == "" and lines[2][8] == "1.0"
    assert lines[3][:5] == ["4", "dp", "0", "refused", 'needs "labels", and more'] and lines[3][-1] == "k3"
    assert metric_names(["zeta", "brr", "mse"]) == ["mse", "brr", "zeta"]
