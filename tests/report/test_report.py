"""Reports of a real (tiny) iDLG experiment: strict JSON with the documented keys, the PNG grid's
geometry and pixels against a numpy nearest-neighbour oracle, PSNR against scikit-image, and the HTML
(embedded PNG, escaping, balanced tags)."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from gradinv.config import parse_config
from gradinv.data import load_source
from gradinv.errors import ConfigError, DataError
from gradinv.experiment import ExperimentResult, run_experiment
from gradinv.metrics import MetricsConfig
from gradinv.metrics.evaluate import MetricResult, evaluate
from gradinv.report import (
    SCHEMA_VERSION,
    ReportPaths,
    decode_float,
    image_grid,
    report_dict,
    to_jsonable,
    write_index_html,
    write_report,
)
from gradinv.report.format import format_metric, iteration_counts
from gradinv.report.grid import CAPTION_SIZE, GROUP_GAP, MAX_COLS, MIN_TILE, PAD, TITLE_SIZE, line_height
from gradinv.report.html import render_html
from gradinv.threat import Knowledge

TOP_KEYS = {
    "schema_version",
    "gradinv_version",
    "created",
    "config",
    "scenario",
    "threat_model",
    "attack",
    "labels",
    "matching",
    "metrics",
    "unavailable_metrics",
    "timing",
}
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "embed", "source", "track", "wbr"}


# ---------------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def result() -> ExperimentResult:
    """A real experiment: 3 L-BFGS steps of iDLG against LeNet on one bundled sample photo.

    One intra-op thread: tiny ops gain nothing from more, and on a busy 2-core machine thread
    oversubscription makes them up to 100x slower."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = parse_config(
        {
            "data": {"source": "samples", "indices": [1]},
            "model": {"name": "lenet"},
            "threat": {"model": "B"},
            "attack": {"name": "idlg", "iterations": 3, "max_iter": 5},
        }
    )
    try:
        return run_experiment(cfg, device="cpu")
    finally:
        torch.set_num_threads(threads)


def _with(result: ExperimentResult, truth: Any, images: torch.Tensor, labels: torch.Tensor | None) -> Any:
    """``result`` with another ground truth and reconstruction, scored by the real ``evaluate``."""
    rec = dataclasses.replace(result.result.reconstruction, images=images, labels=labels)
    ev = evaluate(rec, truth, MetricsConfig(lpips="off", stlpips="off"))
    return dataclasses.replace(
        result,
        truth=truth,
        result=dataclasses.replace(result.result, reconstruction=rec),
        evaluation=ev,
    )


@pytest.fixture(scope="module")
def exact(result: ExperimentResult) -> ExperimentResult:
    """The reconstruction equals the ground truth: PSNR is +inf."""
    t = result.truth
    return _with(result, t, t.images.clone(), t.labels.clone())


@pytest.fixture(scope="module")
def wide(result: ExperimentResult) -> ExperimentResult:
    """Ten real photos, reconstructed as a shuffled noisy copy with one wrong label."""
    truth = load_source("samples").to_batch(list(range(10)), image_size=32)
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(10, generator=g)
    noisy = (truth.images + 0.1 * torch.randn(truth.images.shape, generator=g)).clamp(0, 1)[perm]
    labels = truth.labels[perm].clone()
    labels[0] = (labels[0] + 1) % 10
    return _with(result, truth, noisy, labels)


def _strict_loads(text: str) -> Any:
    def reject(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=reject)


def _upscale(img_chw: torch.Tensor, s: int) -> np.ndarray:
    """Oracle: [0, 1] CHW -> uint8 HWC RGB, nearest-neighbour upscaled by repeating pixels."""
    a = np.round(np.clip(img_chw.double().numpy(), 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    if a.shape[2] == 1:
        a = np.concatenate([a, a, a], axis=2)
    return np.repeat(np.repeat(a, s, axis=0), s, axis=1)


class _TagChecker(HTMLParser):
    """Records unbalanced or mis-nested tags."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _check_html(text: str) -> _TagChecker:
    p = _TagChecker()
    p.feed(text)
    p.close()
    assert p.errors == []
    assert p.stack == []
    return p


# ---------------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------------


def test_write_report_files_and_strict_json(result: ExperimentResult, tmp_path: Path) -> None:
    paths = write_report(result, tmp_path / "a" / "b")
    assert isinstance(paths, ReportPaths)
    assert [p.name for p in (paths.json, paths.png, paths.html)] == [
        "report.json",
        "reconstruction.png",
        "report.html",
    ]
    doc = _strict_loads(paths.json.read_text(encoding="utf-8"))
    assert set(doc) == TOP_KEYS
    assert doc["schema_version"] == SCHEMA_VERSION == 1
    assert doc["created"].endswith("+00:00")
    assert {"data", "model", "training", "server", "facts"} <= set(doc["scenario"])
    assert doc["scenario"]["facts"]["victim_indices"] == [1]
    tm = doc["threat_model"]
    assert tm["id"] == "B"
    assert set(tm["grants"]) == {Knowledge.MODEL_UPDATES.value, Knowledge.BASIC_KNOWLEDGE.value}
    assert tm["view"]["granted"] == sorted(tm["grants"])
    a = doc["attack"]
    assert {"name", "title", "family", "paper", "parameters", "requires", "notes", "interrupted"} <= set(a)
    assert a["name"] == "idlg" and a["parameters"]["iterations"] == 3
    assert a["requires"] == [r.knowledge.value for r in result.attack.requirements()]
    assert len(a["loss_history"]) == len(result.result.loss_history)
    assert doc["labels"]["true"] == result.truth.labels.tolist()
    assert doc["labels"]["class_names"][doc["labels"]["true"][0]] == "cat"
    assert doc["matching"]["truth_index"] == [0] and doc["matching"]["unmatched_truth"] == 0
    assert {"psnr", "ssim", "mse", "label_accuracy"} <= set(doc["metrics"])
    assert set(doc["unavailable_metrics"]) >= {"lpips"}  # no AlexNet weights in the test environment
    stages = ("scenario_seconds", "round_seconds", "attack_wall_seconds", "evaluation_seconds")
    assert doc["timing"]["total_seconds"] == pytest.approx(sum(doc["timing"][k] for k in stages))
    # the stored config re-parses into the very same experiment
    assert parse_config(doc["config"]) == result.config


@pytest.mark.parametrize("which", ["result", "wide"])
def test_per_image_values_and_means(which: str, request: pytest.FixtureRequest) -> None:
    res: ExperimentResult = request.getfixturevalue(which)
    doc = _strict_loads(json.dumps(report_dict(res), allow_nan=False))
    n = res.truth.size
    for name, m in doc["metrics"].items():
        vals = [decode_float(v) for v in m["per_image"]]
        assert len(vals) == n, name
        assert decode_float(m["mean"]) == pytest.approx(float(np.nanmean(vals)), rel=1e-12), name
        assert isinstance(m["higher_is_better"], bool) and isinstance(m["title"], str)
    # PSNR per image against scikit-image on the matched pairs
    ti, ri = doc["matching"]["truth_index"], doc["matching"]["recon_index"]
    truth = res.truth.images.double().numpy()
    rec = res.result.reconstruction.images.double().clamp(0, 1).numpy()
    expected = [peak_signal_noise_ratio(truth[t], rec[r], data_range=1.0) for t, r in zip(ti, ri)]
    assert [decode_float(v) for v in doc["metrics"]["psnr"]["per_image"]] == pytest.approx(expected, rel=1e-6)


def test_wide_label_accuracy_counts_the_wrong_label(wide: ExperimentResult) -> None:
    doc = report_dict(wide)
    assert doc["metrics"]["label_accuracy"]["mean"] == pytest.approx(0.9)
    matched = doc["labels"]["matched_recovered"]
    true = [doc["labels"]["true"][t] for t in doc["matching"]["truth_index"]]
    assert sum(a != b for a, b in zip(matched, true)) == 1


def test_inf_psnr_is_encoded_as_string(exact: ExperimentResult) -> None:
    doc = report_dict(exact)
    text = json.dumps(doc, allow_nan=False)  # would raise on a float inf
    back = _strict_loads(text)
    assert back["metrics"]["psnr"]["per_image"] == ["inf"]
    assert back["metrics"]["psnr"]["mean"] == "inf"
    assert decode_float(back["metrics"]["psnr"]["mean"]) == math.inf
    assert back["metrics"]["mse"]["per_image"] == [0.0]


def test_to_jsonable_converts_every_type() -> None:
    got = to_jsonable(
        {
            "t": torch.tensor([[1.0, float("-inf")]]),
            "i": torch.tensor(3),
            "tup": (1, (2, 3)),
            "flag": Knowledge.LABELS,
            "np": np.array([np.nan, 2.5]),
            "npint": np.int64(4),
            "path": Path("a/b"),
            5: None,
        }
    )
    assert got == {
        "t": [[1.0, "-inf"]],
        "i": 3,
        "tup": [1, [2, 3]],
        "flag": "labels",
        "np": ["nan", 2.5],
        "npint": 4,
        "path": "a/b",
        "5": None,
    }
    json.dumps(got, allow_nan=False)
    with pytest.raises(DataError, match="inf"):
        decode_float("infinity")


# ---------------------------------------------------------------------------------------------------
# PNG
# ---------------------------------------------------------------------------------------------------


TILE = 128  # 32 px images are upscaled 4x to MIN_TILE


def _row_h(captions: int) -> int:
    """A titled row with ``captions`` caption lines under its tiles."""
    return line_height(TITLE_SIZE) + TILE + captions * line_height(CAPTION_SIZE) + PAD


def test_png_single_image_geometry_and_pixels(result: ExperimentResult, tmp_path: Path) -> None:
    assert MIN_TILE == TILE
    paths = write_report(result, tmp_path)
    img = np.asarray(Image.open(paths.png).convert("RGB"))
    th = line_height(TITLE_SIZE)
    top_h, bottom_h = _row_h(1), _row_h(2)  # truth: its class; reconstruction: label and PSNR
    assert img.shape[:2] == (PAD + top_h + bottom_h, PAD + TILE + PAD) == (394, 144)
    top = img[PAD + th : PAD + th + TILE, PAD : PAD + TILE]
    np.testing.assert_array_equal(top, _upscale(result.truth.images[0], 4))
    y = PAD + top_h + th
    bottom = img[y : y + TILE, PAD : PAD + TILE]
    np.testing.assert_array_equal(bottom, _upscale(result.evaluation.matched_images[0], 4))
    # the captions are drawn (dark pixels under each tile), in a readable size
    caption = img[PAD + th + TILE : PAD + top_h - PAD, PAD : PAD + TILE]
    assert (caption.min(axis=2) < 100).any()
    assert line_height(CAPTION_SIZE) >= 16 and line_height(TITLE_SIZE) > line_height(CAPTION_SIZE)


def test_png_wraps_wide_batches(wide: ExperimentResult, tmp_path: Path) -> None:
    paths = write_report(wide, tmp_path)
    img = np.asarray(Image.open(paths.png).convert("RGB"))
    th, group_h = line_height(TITLE_SIZE), _row_h(1) + _row_h(2)
    assert MAX_COLS == 8
    assert img.shape[:2] == (PAD + 2 * group_h + GROUP_GAP, PAD + 8 * (TILE + PAD))
    # image 8 opens the second row-pair; its matched reconstruction sits right below it
    y = PAD + group_h + GROUP_GAP + th
    np.testing.assert_array_equal(img[y : y + TILE, PAD : PAD + TILE], _upscale(wide.truth.images[8], 4))
    k = wide.evaluation.matching.truth_index.tolist().index(8)
    y2 = y + _row_h(1)
    np.testing.assert_array_equal(
        img[y2 : y2 + TILE, PAD : PAD + TILE], _upscale(wide.evaluation.matched_images[k], 4)
    )


def test_image_grid_grayscale_and_scale(photos: np.ndarray) -> None:
    gray = torch.from_numpy(photos[:2].mean(axis=3) / 255.0).float().unsqueeze(1)  # (2, 1, 32, 32)
    img = np.asarray(image_grid([gray], scale=2))
    assert img.shape == (PAD + 64 + PAD, PAD + 2 * (64 + PAD), 3)
    np.testing.assert_array_equal(img[PAD : PAD + 64, PAD + 64 + PAD : PAD + 128 + PAD], _upscale(gray[1], 2))


def test_image_grid_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="C = 1 or 3"):
        image_grid([torch.zeros(1, 2, 8, 8)])
    with pytest.raises(DataError, match="one size"):
        image_grid([torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 9, 8)])
    with pytest.raises(ConfigError, match="one caption per image"):
        image_grid([torch.zeros(2, 3, 8, 8)], captions=[["a"]])
    with pytest.raises(ConfigError, match="scale"):
        image_grid([torch.zeros(1, 3, 8, 8)], scale=0)


# ---------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------


def test_html_is_self_contained_and_complete(result: ExperimentResult, tmp_path: Path) -> None:
    paths = write_report(result, tmp_path)
    text = paths.html.read_text(encoding="utf-8")
    assert "data:image/png;base64," + base64.b64encode(paths.png.read_bytes()).decode("ascii") in text
    parsed = _check_html(text)
    body = "".join(parsed.text)
    for name, m in result.evaluation.metrics.items():
        assert m.title in body
        assert format_metric(name, m.mean) in body
    assert f"{result.evaluation.mean('psnr'):.2f}" in body
    assert "Informed Eavesdropper" in body and "basic_knowledge" in body
    assert "LPIPS" in body  # listed as unavailable with its reason
    assert "target: shared gradient" in body  # the attack's notes
    for bad in ("<script", "<link", "http://", "https://", 'src="http'):
        assert bad not in text.replace("http://www.w3.org/2000/svg", "").replace(
            "https://download.pytorch.org", ""
        )


def test_html_marks_stlpips_and_escapes_class_names(result: ExperimentResult) -> None:
    evil = "<script>alert(1)</script>"
    names = list(result.truth.class_names)
    names[int(result.truth.labels[0])] = evil
    truth = dataclasses.replace(result.truth, class_names=tuple(names))
    metrics = {**result.evaluation.metrics, "stlpips": MetricResult.of("stlpips", [0.25])}
    res = dataclasses.replace(
        result, truth=truth, evaluation=dataclasses.replace(result.evaluation, metrics=metrics)
    )
    text = render_html(res)
    assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "ST-LPIPS (not LPIPS)" in text
    _check_html(text)


def test_index_page(result: ExperimentResult, exact: ExperimentResult, tmp_path: Path) -> None:
    path = write_index_html(
        [("tiny iDLG", result, "idlg/report.html"), ("exact <copy>", exact, "exact/report.html")],
        tmp_path / "index.html",
    )
    text = path.read_text(encoding="utf-8")
    parsed = _check_html(text)
    assert 'href="idlg/report.html"' in text and 'href="exact/report.html"' in text
    assert "exact &lt;copy&gt;" in text
    body = "".join(parsed.text)
    assert f"{result.evaluation.mean('psnr'):.2f}" in body
    assert f"{result.evaluation.mean('ssim'):.4f}" in body
    assert format_metric("label_accuracy", result.evaluation.mean("label_accuracy")) in body
    assert "inf" in body  # the exact copy's PSNR


# ---------------------------------------------------------------------------------------------------
# Formats, iteration counts, the threat-model legend
# ---------------------------------------------------------------------------------------------------


def test_metric_formats_come_from_the_registry() -> None:
    from gradinv.metrics import METRICS
    from gradinv.report.format import format_number, format_seconds

    assert format_metric("psnr", 5.9213) == "5.92" and format_metric("psnr", -math.inf) == "-inf"
    assert format_metric("ssim", -0.0002238) == "-0.0002" and format_metric("ssim", 0.463083) == "0.4631"
    assert format_metric("ssim", -0.00002) == "0.0000"  # no minus sign on a value that rounds to zero
    assert format_metric("mse", 0.2285) == "2.29e-01" and format_metric("mse", 1.5e-14) == "1.50e-14"
    assert format_metric("label_accuracy", 1.0) == "1.0000" and format_metric("psnr", math.nan) == "nan"
    assert format_metric("not-a-metric", 0.123456) == "0.1235"
    for name, spec in METRICS.items():
        assert format_metric(name, 0.5) == format(0.5, spec.fmt), name
    assert format_number(3) == "3" and format_number(-1e-9, ".2f") == "0.00" and format_seconds(4.4) == "4.40"


def _attack_result(result: ExperimentResult, **changes: Any) -> Any:
    return dataclasses.replace(result.result, **changes)


def test_iteration_counts_tell_steps_from_evaluations(result: ExperimentResult) -> None:
    res = result.result  # iDLG: 3 L-BFGS steps of up to 5 evaluations each
    c = iteration_counts(res, family="optimization")
    assert c.kind == "lbfgs" and c.steps == 3 == c.steps_requested == len(res.loss_history)
    assert c.objective_evaluations == res.iterations > 3 and c.per == "evaluation"
    assert c.text == f"3 L-BFGS steps ({res.iterations} objective evaluations)"
    cut = iteration_counts(
        _attack_result(result, interrupted=True, loss_history=res.loss_history[:1], iterations=7),
        family="optimization",
    )
    assert cut.text == "1 of 3 L-BFGS steps (7 objective evaluations) (interrupted: best so far)"
    adam = iteration_counts(
        _attack_result(result, parameters={"iterations": 1000, "lr": 0.1}, iterations=1000),
        family="optimization",
    )
    assert (adam.kind, adam.steps, adam.objective_evaluations, adam.per) == (
        "first-order",
        1000,
        1000,
        "step",
    )
    assert adam.text == "1000 optimiser steps (one objective evaluation each)"
    fedavg_adam = iteration_counts(
        _attack_result(
            result,
            parameters={"iterations": 5, "optimizer": "adam", "max_iter": 20, "history_size": 100},
            iterations=5,
        ),
        family="optimization",
    )
    assert fedavg_adam.kind == "first-order"
    closed = iteration_counts(_attack_result(result, parameters={}, iterations=1), family="malicious-server")
    assert (closed.kind, closed.steps, closed.objective_evaluations) == ("other", None, None)
    assert closed.text == "1 iteration of the attack's own algorithm (not optimiser steps)"


def test_report_json_and_html_spell_out_the_iteration_semantics(result: ExperimentResult) -> None:
    doc = _strict_loads(json.dumps(report_dict(result), allow_nan=False))
    counts = doc["attack"]["iteration_counts"]
    assert counts == {
        "kind": "lbfgs",
        "steps": 3,
        "steps_requested": 3,
        "objective_evaluations": doc["attack"]["iterations"],
        "iterations": doc["attack"]["iterations"],
        "text": f"3 L-BFGS steps ({doc['attack']['iterations']} objective evaluations)",
    }
    body = "".join(_check_html(render_html(result)).text)
    assert counts["text"] in body and "time per evaluation" in body


def test_html_explains_the_threat_model(result: ExperimentResult) -> None:
    from gradinv.report.format import APPLICABILITY

    text = render_html(result)
    body = "".join(_check_html(text).text)
    assert result.threat.applicability == "***"
    assert "Carletti et al." in body and all(meaning in body for meaning in APPLICABILITY.values())
    assert f"applicability ★★★ {APPLICABILITY['***']}" in body
    for k in Knowledge:  # every flag with what it exposes, granted or not
        assert k.value in body and k.exposes in body
    assert body.count("not granted") == len(Knowledge) - 2  # B grants model updates + basic knowledge
