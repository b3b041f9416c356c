"""The frontier's summary (best trade-off, ranking, monotonicity), table, plot and HTML, on
hand-made point records whose answers are worked out by hand."""

from __future__ import annotations

import csv
import math

import pytest
from PIL import Image

from gradinv.studies.frontier import parse_frontier_config
from gradinv.studies.frontier_report import frontier_rows, summarize, write_outputs

CFG = {
    "attack": {"name": "idlg", "iterations": 1},
    "defenses": [
        {"name": "gaussian-noise", "label": "A", "param": "sigma", "values": [0.1, 0.2, 0.3]},
        {"name": "qsgd", "label": "B", "param": "bits", "values": [8, 4]},
        {"name": "topk", "label": "C", "param": "ratio", "values": [0.5]},
        {"name": "pruning", "label": "D", "param": "ratio", "values": [0.9]},
    ],
    "frontier": {"leakage_threshold": 15.0, "max_accuracy_drop": 0.3},
}

# (label, value, accuracy, psnr); baseline accuracy 1.0 -> useful floor 0.7; protected: psnr < 15
POINTS = [
    ("none", None, 1.0, 40.0),
    ("A", 0.1, 0.95, 20.0),
    ("A", 0.2, 0.9, 10.0),
    ("A", 0.3, 0.5, 5.0),
    ("B", 8, 0.85, 25.0),
    ("B", 4, 0.8, 12.0),
    ("C", 0.5, 0.95, 20.0),  # useful, not protected
    ("D", 0.9, 0.3, float("inf")),  # inf PSNR is kept (JSON "inf"), never protected
]


def _records(cfg):
    pts = {(p.label, p.value): p for p in cfg.points()}
    out = []
    for label, value, acc, psnr in POINTS:
        p = pts[(label, value)]
        out.append(
            {
                "key": p.key,
                "point": p.to_dict(),
                "accuracy": acc,
                "attacks": [
                    {
                        "label": "idlg",
                        "status": "ok",
                        "metrics": {"psnr": "inf" if math.isinf(psnr) else psnr, "ssim": 0.5},
                        "unavailable": {"lpips": "no weights"},
                        "seconds": 1.0,
                    }
                ],
                "victim": {"update_norm": 1.0},
                "seconds": {"training": 2.0, "attacks": 1.0},
                "client_info": {},
                "data": {"dataset": "toy", "train_images": 10, "test_images": 5, "image_shape": [1, 8, 8]},
            }
        )
    return out


def test_ranking_and_best_tradeoff_by_hand():
    cfg = parse_frontier_config(CFG)
    s = summarize(cfg, _records(cfg))
    assert s["baseline_accuracy"] == 1.0 and s["useful_accuracy_floor"] == pytest.approx(0.7)
    a = s["attacks"]["idlg"]
    by = {d["label"]: d for d in a["defenses"]}
    # A: protected and useful points (0.9, 10) -> the most accurate of them
    assert by["A"]["best"] == {"value": 0.2, "accuracy": 0.9, "leakage": 10.0}
    assert by["A"]["tier"] == "protected and useful"
    assert by["B"]["best"] == {"value": 4, "accuracy": 0.8, "leakage": 12.0}
    assert by["C"]["tier"] == "useful, not protected" and by["C"]["best"]["leakage"] == 20.0
    assert by["D"]["tier"] == "neither" and by["D"]["best"] is None
    assert a["ranking"] == ["A", "B", "C", "D"]
    assert a["baseline_leakage"] == 40.0
    # A: accuracy falls and leakage falls along sigma; Spearman rho = -1 for both
    assert by["A"]["accuracy_monotone"] and by["A"]["leakage_monotone"]
    assert by["A"]["spearman_accuracy"] == pytest.approx(-1.0)
    assert by["A"]["spearman_leakage"] == pytest.approx(-1.0)
    assert by["B"]["spearman_leakage"] is None  # fewer than 3 points


def test_without_threshold_the_most_private_useful_point_wins():
    cfg = parse_frontier_config({**CFG, "frontier": {"max_accuracy_drop": 0.3}})
    by = {d["label"]: d for d in summarize(cfg, _records(cfg))["attacks"]["idlg"]["defenses"]}
    assert by["A"]["best"]["value"] == 0.2 and by["B"]["best"]["value"] == 4


def test_table_plot_and_html(tmp_path):
    cfg = parse_frontier_config(CFG)
    records = _records(cfg)
    rows = frontier_rows(records)
    assert len(rows) == len(POINTS)
    assert [round(r["accuracy_drop"], 6) for r in rows] == [round(1.0 - acc, 6) for _, _, acc, _ in POINTS]
    assert math.isinf(rows[-1]["psnr"]) and math.isnan(rows[0]["lpips"])
    paths = write_outputs(cfg, cfg.points(), records, tmp_path)
    table = list(csv.DictReader(paths["csv"].open()))
    assert [float(r["psnr"]) for r in table] == [p for _, _, _, p in POINTS]
    assert table[0]["lpips"] == ""  # unavailable -> empty cell
    assert Image.open(paths["png"]).format == "PNG"
    page = paths["html"].read_text()
    assert "protected and useful" in page and "no weights" in page and "<script" not in page
