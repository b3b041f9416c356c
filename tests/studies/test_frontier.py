"""The privacy–utility frontier on the study engine: ``[study.frontier]`` (points, summary, plot) against
a hand computation, ``gradinv frontier`` as an alias of ``gradinv study run frontier``, the migration
error for configs of the earlier runner, and active attacks (Robbing the Fed, inconsistent models) in
study trials scored against the victim's images."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import tomllib

from gradinv.cli.app import main
from gradinv.errors import ConfigError
from gradinv.studies.engine import run_study
from gradinv.studies.executors import InProcessExecutor
from gradinv.studies.rows import TableLayout, TrialRow
from gradinv.studies.spec import parse_study
from gradinv.studies.study_report import FRONTIER_PLOT
from gradinv.studies.tradeoff import FrontierSpec, frontier_plot, frontier_points, frontier_summary

ROOT = Path(__file__).resolve().parents[2]


def _row(
    label: str, defense: str | None, acc: float, psnr: float, repeat: int = 0, attack: str = "a"
) -> TrialRow:
    defenses = [] if defense is None else [{"name": defense}]
    return TrialRow(
        key=f"{label}-{attack}-{repeat}",
        study="toy",
        point={"defense": label, "attack": attack},
        values={},
        repeat=repeat,
        config={"defenses": defenses},
        status="ok",
        metrics={"final_accuracy": acc, "psnr": psnr},
    )


LAYOUT = TableLayout(
    rows=("defense",),
    columns=("attack",),
    metrics=("final_accuracy", "psnr"),
    order={"defense": ("none", "noise 1", "noise 2", "clip 1", "clip 2"), "attack": ("a",)},
)
SPEC = FrontierSpec(axis="defense", max_utility_drop=0.3, leakage_threshold=18.0)


def test_points_and_summary_match_a_hand_computation() -> None:
    rows = [
        _row("none", None, 0.9, 60.0),
        _row("noise 1", "noise", 0.88, 30.0),
        _row("noise 1", "noise", 0.86, 20.0, repeat=1),  # the point is the mean over the repeats
        _row("noise 2", "noise", 0.80, 10.0),
        _row("clip 1", "clip", 0.85, 25.0),
        _row("clip 2", "clip", 0.50, 5.0),  # protected, but below the floor 0.9 * 0.7 = 0.63
    ]
    pts = frontier_points(rows, LAYOUT, SPEC)
    assert [(p.label, p.group, p.repeats) for p in pts] == [
        ("none", "none", 1),
        ("noise 1", "noise", 2),
        ("noise 2", "noise", 1),
        ("clip 1", "clip", 1),
        ("clip 2", "clip", 1),
    ]
    assert math.isclose(pts[1].utility, 0.87) and math.isclose(pts[1].leakage, 25.0)
    summary = frontier_summary(pts, SPEC)
    # noise: "noise 2" is useful (0.80 >= 0.63) and protected (10 < 18); clip: only useful points are
    # unprotected, so its most private useful point "clip 1" (25 dB)
    assert [(s.group, s.tier, s.best.label if s.best else None, s.useful, s.points) for s in summary] == [
        ("noise", "protected and useful", "noise 2", 2, 2),
        ("clip", "useful, not protected", "clip 1", 1, 2),
    ]
    png = frontier_plot(pts, SPEC, ("attack",))
    assert png.startswith(b"\x89PNG") and png == frontier_plot(pts, SPEC, ("attack",))


def test_lower_is_more_private_for_lpips_style_leakage() -> None:
    spec = FrontierSpec(axis="defense", leakage="lpips", leakage_threshold=0.5)
    assert spec.sign == -1  # a higher LPIPS is less leakage
    rows = [_row("none", None, 0.9, 0.0), _row("noise 1", "noise", 0.85, 0.0)]
    for r, v in zip(rows, (0.1, 0.6)):
        object.__setattr__(r, "metrics", {"final_accuracy": r.metrics["final_accuracy"], "lpips": v})
    (s,) = frontier_summary(frontier_points(rows, LAYOUT, spec), spec)
    assert s.tier == "protected and useful" and s.best is not None and s.best.label == "noise 1"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"axis": "defence"}, r"frontier axis to name an axis, but got 'defence'. Axes: defense"),
        ({"axis": "defense", "leakage": "psnrr"}, r"Unknown leakage 'psnrr'.*Did you mean 'psnr'"),
        ({"axis": "defense", "max_utility_drop": 1.5}, r"`max_utility_drop`"),
        ({"axis": "defense", "treshold": 1}, r"treshold"),
    ],
)
def test_bad_frontier_tables_name_the_fix(table: dict[str, Any], message: str) -> None:
    from gradinv.config import read_toml

    doc = read_toml(ROOT / "src/gradinv/studies/builtin/frontier.toml")
    doc["study"]["frontier"] = table
    with pytest.raises(ConfigError, match=message):
        parse_study(doc)


def test_frontier_is_an_alias_of_the_builtin_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["frontier", "--dry-run", "--scale", "quick", "--out", str(tmp_path / "f")]) == 0
    alias = capsys.readouterr().out
    assert (
        main(["study", "run", "frontier", "--dry-run", "--scale", "quick", "--out", str(tmp_path / "f")]) == 0
    )
    assert capsys.readouterr().out == alias
    assert alias.startswith("study frontier: 11 trial(s), 0 done")
    assert (
        main(["frontier", str(ROOT / "configs/frontier_cifar10.toml"), "--dry-run", "--out", str(tmp_path)])
        == 0
    )
    assert "study frontier-cifar10: 300 trial(s)" in capsys.readouterr().out


def test_config_of_the_earlier_runner_gets_the_migration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.toml"
    old.write_text('[fl]\nrounds = 3\n[victim]\nround = 1\n[[attacks]]\nname = "idlg"\n')
    assert main(["frontier", "--config", str(old), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "is a config of the earlier frontier runner (it has [fl], [victim], [attacks])" in err
    assert "[victim] round                           -> [pretrain] rounds" in err
    assert "[fl] rounds                              -> [pretrain] total_rounds" in err


# --------------------------------------------------------------------------------------------------
# A toy frontier run end to end, and active attacks as study trials
# --------------------------------------------------------------------------------------------------

TOY = """
[study]
name = "toy-frontier"
metrics = ["final_accuracy", "psnr"]
rows = ["defense"]

[study.frontier]
axis = "defense"
leakage_threshold = 18.0

[[axes]]
name = "defense"
values = [
    { label = "none", set = { defenses = [] } },
    { label = "noise 0.1", set = { defenses = [{ name = "gaussian-noise", sigma = 0.1 }] } },
]

[data]
source = "digits"
num_images = 1
image_size = 8
[model]
name = "mlp"
hidden = [16]
[training]
protocol = "fedavg"
batch_size = 16
lr = 0.1
[pretrain]
rounds = 1
total_rounds = 3
clients = 3
images_per_client = 32
test_images = 50
[threat]
model = "C"
[attack]
name = "idlg"
iterations = 2
[metrics]
lpips = "off"
stlpips = "off"
"""


def test_toy_frontier_writes_the_frontier_plot_and_summary(tmp_path: Path) -> None:
    spec = parse_study(tomllib.loads(TOY))
    run = run_study(spec, tmp_path, executor=InProcessExecutor())
    assert run.complete and run.outputs is not None
    assert run.outputs.plots["frontier"] == tmp_path / FRONTIER_PLOT
    assert (tmp_path / FRONTIER_PLOT).read_bytes().startswith(b"\x89PNG")
    page = run.outputs.html.read_text(encoding="utf-8")
    assert "Privacy–utility frontier" in page and "gaussian-noise" in page
    accs = {r.point["defense"]: r.metrics["final_accuracy"] for r in run.rows}
    assert all(0.0 <= a <= 1.0 for a in accs.values())


ACTIVE = """
[study]
name = "active"
metrics = ["psnr", "num_images"]
rows = ["attack"]

[[axes]]
name = "attack"
[[axes.values]]
label = "robbing-the-fed"
set = { "attack.name" = "robbing-the-fed", "attack.bins" = 64, "threat.model" = "F" }
[[axes.values]]
label = "inconsistent-models"
[axes.values.set]
"attack.name" = "inconsistent-models"
"attack.inner" = "fc-bias"
"threat.model" = "H"
"server.aggregation" = "secure"
"data.num_images" = 1

[data]
source = "digits"
num_images = 4
image_size = 8
seed = 3
[model]
name = "mlp"
hidden = [64]
[training]
protocol = "fedsgd"
[server]
num_clients = 3
[pretrain]
rounds = 1
clients = 3
images_per_client = 16
[attack]
name = "robbing-the-fed"
[metrics]
lpips = "off"
stlpips = "off"
"""


def test_active_attacks_in_a_study_are_scored_against_the_victim(tmp_path: Path) -> None:
    """Robbing the Fed under F crafts the model of the attacked round (after a pretraining round);
    inconsistent models under secure aggregation isolate the victim, and the trial scores the
    victim's one image, not the three clients' aggregate."""
    spec = parse_study(tomllib.loads(ACTIVE))
    run = run_study(spec, tmp_path, executor=InProcessExecutor())
    rows = {r.point["attack"]: r for r in run.rows}
    assert all(r.status == "ok" for r in rows.values()), [r.message for r in rows.values()]
    assert rows["robbing-the-fed"].metrics["num_images"] == 4
    assert rows["inconsistent-models"].metrics["num_images"] == 1
    assert rows["robbing-the-fed"].metrics["psnr"] > 30 and rows["inconsistent-models"].metrics["psnr"] > 30


def test_a_defense_mode_is_its_own_line() -> None:
    """Clipping by value and by norm are two defenses, not two strengths of one."""
    rows = [_row("none", None, 0.9, 60.0)]
    for label, mode in (("clip 1", "value"), ("clip 2", "norm")):
        r = _row(label, "clipping", 0.85, 10.0)
        object.__setattr__(r, "config", {"defenses": [{"name": "clipping", "mode": mode, "bound": 0.1}]})
        rows.append(r)
    groups = [p.group for p in frontier_points(rows, LAYOUT, SPEC)]
    assert groups == ["none", "clipping (mode=value)", "clipping (mode=norm)"]
