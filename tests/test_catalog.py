"""``gradinv catalog`` (paper 004's living table) and DLG / iDLG under threat model A.

Paper 004 (Carletti et al., USENIX Security 2025) lists DLG and iDLG under threat model A (model
updates only): the attacker reads the label space and the input shape off the model it sees and
assumes the batch size and unnormalised inputs. These tests check that gradinv agrees, that the
assumptions are recorded, and that the catalog shows 004's threat model next to gradinv's for every
attack, with a reason wherever they differ."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from gradinv.attacks import ATTACKS, create_attack
from gradinv.catalog import (
    PAPER_004_ATTACKS,
    PAPER_004_DEFENSES,
    Measured,
    build_catalog,
    render_html,
    render_json,
    render_markdown,
)
from gradinv.cli.app import main
from gradinv.cli.list_cmd import catalog as list_catalog
from gradinv.defenses import DEFENSES
from gradinv.errors import AttackRefused, ConfigError
from gradinv.models import build_model
from gradinv.threat import Source, read_model
from tests.conftest import shared_dir
from tests.helpers import photo_batch, simulate_view, tiny_lenet

# -- the catalog ------------------------------------------------------------------------------------


def test_every_registered_attack_and_defense_appears():
    cat = build_catalog()
    assert [a.name for a in cat.attacks] == ATTACKS.names()
    assert [d.name for d in cat.defenses] == DEFENSES.names()
    # the transcribed tables cover every registered name (None: 004 does not list it), so a new
    # attack or defense must be looked up in 004 before the catalog is complete
    assert set(PAPER_004_ATTACKS) == set(ATTACKS.names())
    assert set(PAPER_004_DEFENSES) == set(DEFENSES.names())
    for a in cat.attacks:
        assert a.paper and a.family and a.implements and a.learning and a.label_recovery, a.name
    assert {m.name for m in cat.labels} >= {"idlg", "known", "auto"}


def test_the_004_column_agrees_or_says_why():
    cat = build_catalog()
    for a in cat.attacks:
        if a.agrees:
            assert a.disagreement is None, a.name
        else:
            assert a.disagreement, (
                f"{a.name}: gradinv {a.threat_gradinv} vs 004 {a.threat_004} without a reason"
            )
    assert cat.attack("dlg").agrees and cat.attack("idlg").agrees
    assert cat.attack("dlg").threat_004 == cat.attack("dlg").threat_gradinv == "A"
    for d in cat.defenses:
        if d.paper_004 is None or d.paper_004.match == "technique":
            assert d.note, d.name


def test_gradinv_threat_model_is_the_one_gradinv_list_computes():
    weakest = {a["name"]: a["weakest_threat_model"] for a in list_catalog()["attacks"]}
    assert {a.name: a.threat_gradinv for a in build_catalog().attacks} == weakest


def test_transcription_matches_paper_004_text():
    """Each transcribed row's reference number, threat model and learning algorithm appear together
    in 004's table (the text extraction in ../shared/papers)."""
    shared = shared_dir()
    papers = sorted((shared / "papers").glob("004_*.txt")) if shared is not None else []
    if not papers:
        pytest.skip("needs ../shared/papers/004_*.txt")
    text = papers[0].read_text(encoding="utf-8")
    for name, row in PAPER_004_ATTACKS.items():
        if row is None:
            continue
        learning = {"FedAvg": "FedAVG"}.get(row.learning, row.learning)
        pattern = rf"\[{row.ref}\]\s*\|\s*{row.threat_model}\s*\|\s*{learning}\s*\|"
        assert re.search(pattern, text), f"{name}: [{row.ref}] {row.threat_model} {row.learning} not in 004"


def test_renderers_and_measured_numbers():
    measured = {"dlg": Measured("PSNR 41.2 dB", "gradinv study run batch-size --scale quick")}
    cat = build_catalog(measured)
    md = render_markdown(cat)
    for name in (*ATTACKS.names(), *DEFENSES.names()):
        assert f"`{name}`" in md
    assert "PSNR 41.2 dB" in md and "gradinv study run batch-size --scale quick" in md
    data = json.loads(render_json(cat))
    by_name = {a["name"]: a for a in data["attacks"]}
    assert by_name["dlg"]["measured"] == {"value": "PSNR 41.2 dB", "command": measured["dlg"].command}
    assert by_name["dlg"]["threat_004"] == "A" and by_name["dlg"]["agrees_with_004"]
    assert by_name["cpl"]["threat_004"] is None and by_name["cpl"]["disagreement"]
    assert {d["name"] for d in data["defenses"]} == set(DEFENSES.names())
    page = render_html(cat)
    assert page.startswith("<!DOCTYPE html>") and page.count("<table>") >= 3
    assert "mgan-representatives" in page and "<script" not in page
    with pytest.raises(ConfigError, match="Did you mean 'dlg'"):
        build_catalog({"dlgg": Measured("1", "x")})


def test_cli_catalog(capsys, tmp_path):
    assert main(["catalog"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# gradinv catalog") and "| DLG (`dlg`) | optimization | A | A | yes |" in out
    assert main(["catalog", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["attacks"]) == len(ATTACKS.names())
    target = tmp_path / "sub" / "catalog.html"
    assert main(["catalog", "--out", str(target)]) == 0  # the suffix picks html
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert main(["catalog", "--out", str(tmp_path)]) == 2  # a directory is refused with a reason
    assert "is a directory" in capsys.readouterr().err


# -- what the model reveals -------------------------------------------------------------------------


def test_read_model_reveals_label_space_and_input_shape():
    r = read_model(tiny_lenet(32))
    assert r.num_classes == 10 and r.fact("num_classes").source is Source.MODEL
    assert r.input_shape == (3, 32, 32) and "29-32" in r.fact("input_shape").detail  # strides round
    assert r.fact("input_shape").source is Source.ASSUMED
    mlp = read_model(build_model("mlp", num_classes=4, in_channels=1, image_size=8))
    assert mlp.input_shape == (1, 8, 8) and mlp.num_classes == 4
    assert mlp.fact("input_shape").source is Source.MODEL  # Linear(64, ...) fixes C*H*W
    pooled = read_model(build_model("resnet20", num_classes=10, image_size=8))
    assert pooled.input_shape is None and pooled.fact("input_shape").source is Source.UNKNOWN
    assert "adaptive pooling" in pooled.fact("input_shape").detail


# -- DLG and iDLG under threat model A --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [("dlg", {"iterations": 4, "restarts": 2}), ("idlg", {"iterations": 4, "labels": "idlg"})],
)
def test_dlg_and_idlg_run_under_a_and_match_b(photos, name, params):
    """Under A with assumptions that hold (B = 1, unnormalised images, the model's input size), the
    attack sees what B grants and reconstructs exactly the same images from the same seed."""
    model = tiny_lenet(16)
    batch = photo_batch(photos, [1], labels=[3], size=16)
    truth, view_b = simulate_view(model, [batch], threat="B")
    _, view_a = simulate_view(model, [batch], threat="A")
    assert view_a.num_samples is None and view_a.normalization is None  # not granted
    res_b = create_attack(name, seed=3, **params).reconstruct(view_b, device="cpu")
    res_a = create_attack(name, seed=3, **params).reconstruct(view_a, device="cpu")
    assert torch.equal(res_a.reconstruction.images, res_b.reconstruction.images)
    assert torch.equal(res_a.reconstruction.labels, res_b.reconstruction.labels)
    assert res_a.reconstruction.images.shape == truth.batch.images.shape
    notes = " ".join(res_a.notes)
    assert "num_samples: assumed (B = 1" in notes and "normalization: assumed (none" in notes
    assert "num_classes: inferred from the model" in notes and "input_shape: assumed" in notes
    assert not any("assumed (B" in n for n in res_b.notes)  # B grants everything: nothing assumed


def test_configured_assumptions_match_b_for_a_larger_batch(photos):
    model = tiny_lenet(16)
    batch = photo_batch(photos, [0, 2], labels=[1, 5], size=16)
    _, view_b = simulate_view(model, [batch], threat="B")
    _, view_a = simulate_view(model, [batch], threat="A")
    params = {"iterations": 2, "restarts": 1, "seed": 1}
    res_b = create_attack("dlg", **params).reconstruct(view_b, device="cpu")
    res_a = create_attack("dlg", assumed_batch_size=2, **params).reconstruct(view_a, device="cpu")
    assert torch.equal(res_a.reconstruction.images, res_b.reconstruction.images)
    assert any("configured: assumed_batch_size = 2" in n for n in res_a.notes)
    wrong = create_attack("dlg", **params).reconstruct(view_a, device="cpu")  # assumes B = 1
    assert wrong.reconstruction.images.shape[0] == 1


def test_what_a_does_not_reveal_is_still_refused_with_a_reason(photos):
    batch = photo_batch(photos, [0], labels=[2], size=16)
    _, view = simulate_view(tiny_lenet(16), [batch], threat="A")
    with pytest.raises(AttackRefused, match=r"requires basic knowledge .* weakest threat model .* is B"):
        create_attack("inverting-gradients", iterations=1).reconstruct(view, device="cpu")
    problems = create_attack("idlg", labels="known").check(view)
    assert len(problems) == 1 and "requires labels" in problems[0]
    # the labels extension gives the multiset, hence the number of samples (granted, not assumed)
    _, view_l = simulate_view(tiny_lenet(16), [batch], threat="A+labels")
    assert view_l.num_samples == 1 and view_l.fact("num_samples").source is Source.GRANTED
    res = create_attack("idlg", labels="known", iterations=1).reconstruct(view_l, device="cpu")
    assert res.reconstruction.labels.tolist() == [2]
    # a model that does not fix the input size (global pooling): DLG needs it configured
    pooled = build_model("resnet20", num_classes=10, image_size=16, seed=0)
    _, view_p = simulate_view(pooled, [batch], threat="A")
    with pytest.raises(AttackRefused, match=r"DLG requires the input shape.*assumed_input_shape"):
        create_attack("dlg", iterations=1).reconstruct(view_p, device="cpu")
    res = create_attack("dlg", iterations=1, restarts=1, assumed_input_shape=[3, 16, 16]).reconstruct(
        view_p, device="cpu"
    )
    assert res.reconstruction.images.shape == (1, 3, 16, 16)
    assert any("configured: assumed_input_shape = [3, 16, 16]" in n for n in res.notes)
    # a configured shape the model contradicts is refused, not run into a shape error
    mlp = build_model("mlp", num_classes=10, image_size=16, seed=0)
    _, view_m = simulate_view(mlp, [batch], threat="A")
    problems = create_attack("dlg", assumed_input_shape=[1, 16, 16]).check(view_m)
    assert len(problems) == 1 and "the model only accepts [3, 16, 16]" in problems[0]


def test_assumption_options_are_validated():
    with pytest.raises(ConfigError, match="assumed_batch_size"):
        create_attack("dlg", assumed_batch_size=0)
    with pytest.raises(ConfigError, match="Did you mean 'cifar10'"):
        create_attack("idlg", assumed_normalization="cifar1")
    with pytest.raises(ConfigError, match="assumed_input_shape"):
        create_attack("dlg", assumed_input_shape=[3, 0, 32])


# -- measured numbers from study runs ---------------------------------------------------------------

HEADLINE_STUDY = """
[study]
name = "toy-headlines"
repeats = 2
metrics = ["psnr", "label_accuracy"]
rows = ["B"]
columns = ["defense"]

[[axes]]
name = "B"
key = "data.num_images"
values = [1, 2]

[[axes]]
name = "defense"
values = [
    { label = "none", set = { defenses = [] } },
    { label = "noise 0.1", set = { defenses = [{ name = "gaussian-noise", sigma = 0.1 }] } },
]

[scale.tiny]
set = { "attack.iterations" = 2 }

[data]
source = "digits"
image_size = 8
[model]
name = "mlp"
hidden = [16]
[threat]
model = "B"
[attack]
name = "dlg"
iterations = 3
restarts = 1
[metrics]
lpips = "off"
stlpips = "off"
"""

LABEL_STUDY = """
[study]
name = "toy-labels"
repeats = 2
metrics = ["label_accuracy"]
rows = ["method"]

[[axes]]
name = "method"
key = "attack.labels"
values = ["idlg", "llg-plus"]

[data]
source = "digits"
image_size = 8
num_images = 2
[model]
name = "mlp"
hidden = [16]
[threat]
model = "B"
[attack]
name = "idlg"
iterations = 1
[metrics]
lpips = "off"
stlpips = "off"
"""


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory):
    """Two tiny finished studies (about 2 s): DLG with and without a defense, and two label methods
    (iDLG's refused at B = 2)."""
    from gradinv.studies.engine import run_study
    from gradinv.studies.spec import load_study

    root = tmp_path_factory.mktemp("headlines")
    out = {}
    for name, text, scale, sets in (
        ("toy", HEADLINE_STUDY, "tiny", {"attack.lr": 0.5, "data.source": "digits"}),
        ("labels", LABEL_STUDY, None, {}),
    ):
        path = root / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        run = run_study(load_study(path, scale=scale, overrides=sets), root / name, outputs=False)
        assert run.complete
        out[name] = root / name
    return out


def _stored_rows(folder):
    """The oracle's own reading of the store: (point, config, metrics, status) straight from SQLite."""
    import sqlite3

    with sqlite3.connect(folder / "study.sqlite") as db:
        found = db.execute("SELECT point, config, metrics, status FROM trials ORDER BY rowid").fetchall()
    return [tuple(json.loads(c) if i < 3 else c for i, c in enumerate(r)) for r in found]


def _cell_means(rows, keep):
    cells = {}
    for point, config, metrics, status in rows:
        if status == "ok" and keep(config):
            cells.setdefault(tuple(point.items()), []).append(metrics["psnr"])
    return {k: sum(v) / len(v) for k, v in cells.items()}


def test_headlines_are_the_best_cell_means_of_the_store(study_runs):
    from gradinv.studies.headlines import read_study, study_headlines

    heads = {(h.kind, h.name): h for h in study_headlines(read_study(study_runs["toy"]))}
    assert set(heads) == {("attack", "dlg"), ("defense", "gaussian-noise")}
    rows = _stored_rows(study_runs["toy"])
    # oracle: the attack's best undefended cell by mean PSNR, the defense's lowest
    undefended = _cell_means(rows, lambda c: not c.get("defenses"))
    best = max(undefended, key=lambda k: undefended[k])
    dlg = heads[("attack", "dlg")]
    assert dlg.metric == "psnr" and dlg.repeats == 2
    assert dlg.mean == pytest.approx(undefended[best]) and tuple(dlg.cell.items()) == best
    cell = ", ".join(f"{a} = {v}" for a, v in best)
    assert dlg.text == f"PSNR {undefended[best]:.2f} dB at {cell} (toy-headlines, undefended, 2 repeats)"
    defended = _cell_means(rows, lambda c: bool(c.get("defenses")))
    low = min(defended, key=lambda k: defended[k])
    noise = heads[("defense", "gaussian-noise")]
    assert noise.mean == pytest.approx(defended[low]) and tuple(noise.cell.items()) == low
    assert "most private cell" in noise.text
    # the command reproduces the run: the same trials, all found done in the folder
    cmd = dlg.command
    assert cmd.startswith("gradinv study run ") and "--scale tiny" in cmd
    assert "--set attack.lr=0.5 --set data.source=digits" in cmd and cmd == noise.command
    import shlex

    assert main([*shlex.split(cmd)[1:], "--dry-run"]) == 0


def test_label_methods_and_refusals(study_runs, capsys):
    from gradinv.studies.headlines import read_study, study_headlines

    heads = {(h.kind, h.name): h for h in study_headlines(read_study(study_runs["labels"]))}
    assert set(heads) == {("label", "idlg"), ("label", "llg-plus")}  # the attack carries them only
    assert heads[("label", "idlg")].text.startswith("refused in all 2 trials (toy-labels): iDLG label")
    rows = [r for r in _stored_rows(study_runs["labels"]) if r[0]["method"] == "llg-plus"]
    expected = sum(r[2]["label_accuracy"] for r in rows) / len(rows)
    assert heads[("label", "llg-plus")].mean == pytest.approx(expected)
    assert f"Label accuracy {expected:.4f} at method = llg-plus" in heads[("label", "llg-plus")].text


def test_the_first_headline_metric_wins_across_studies():
    from gradinv.studies.headlines import Headline, catalog_measured

    def h(study, metric, mean, kind="attack"):
        return Headline(kind, "idlg", study, metric, mean, {}, 1, f"{study} {metric}", f"cmd {study}")

    found = catalog_measured([h("a", "brr_psnr", 1.0), h("b", "psnr", 20.0), h("c", "psnr", 30.0)])
    assert found.named["idlg"].value == "b psnr"  # BRR is secondary; of the rest the first given
    found = catalog_measured([h("a", "psnr", math.nan), h("b", "label_accuracy", 1.0, "label")])
    assert found.named["idlg"].value == "a psnr" and found.labels["idlg"].value == "b label_accuracy"
    assert found.commands == ("cmd a", "cmd b")


def test_cli_catalog_studies(study_runs, tmp_path, capsys):
    from gradinv.studies.headlines import read_study, study_headlines

    dirs = [str(study_runs["toy"]), str(study_runs["labels"])]
    assert main(["catalog", "--studies", *dirs, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    heads = {(h.kind, h.name): h for d in dirs for h in study_headlines(read_study(d))}
    dlg = next(a for a in data["attacks"] if a["name"] == "dlg")
    assert dlg["measured"] == {
        "value": heads[("attack", "dlg")].text,
        "command": heads[("attack", "dlg")].command,
    }
    noise = next(d for d in data["defenses"] if d["name"] == "gaussian-noise")
    assert noise["measured"]["value"] == heads[("defense", "gaussian-noise")].text
    labels = {m["name"]: m["measured"] for m in data["labels"]}
    assert labels["llg-plus"]["value"] == heads[("label", "llg-plus")].text and labels["geng"] is None
    assert next(a for a in data["attacks"] if a["name"] == "idlg")["measured"] is None
    assert len(data["measured_from"]) == 2
    target = tmp_path / "catalog.md"
    assert main(["catalog", "--studies", *dirs, "--out", str(target)]) == 0
    md = target.read_text(encoding="utf-8")
    assert "They come from these runs" in md and heads[("attack", "dlg")].text in md
    # a folder that is not a study's: one clear error, nothing written
    bad = tmp_path / "not-a-study"
    bad.mkdir()
    assert main(["catalog", "--studies", dirs[0], str(bad), "--out", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err
    assert "Expected a study output folder" in err and "holds no study.sqlite" in err
    assert "gradinv study run NAME --scale quick --out DIR" in err and not (tmp_path / "x.md").exists()
    assert main(["catalog", "--studies", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_read_study_refuses_what_is_not_a_study(tmp_path):
    from gradinv.studies.headlines import read_study

    (tmp_path / "study.sqlite").write_bytes(b"not a database at all, just bytes" * 10)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_study(tmp_path)
    with pytest.raises(ConfigError, match="is a file"):
        read_study(tmp_path / "study.sqlite")


def test_save_measured_round_trip_and_shipped_numbers(study_runs, tmp_path, capsys):
    from gradinv.studies.headlines import SHIPPED, load_measured

    saved = tmp_path / "measured.json"
    assert main(["catalog", "--studies", str(study_runs["toy"]), "--save-measured", str(saved)]) == 0
    md = capsys.readouterr().out
    found = load_measured(saved)
    assert set(found.named) == {"dlg", "gaussian-noise"} and found.named["dlg"].value in md
    assert found.note.startswith("Measured with gradinv ") and "at the tiny scale" in found.note
    assert main(["catalog", "--save-measured", str(saved)]) == 2  # needs --studies
    assert "Expected --save-measured with --studies" in capsys.readouterr().err
    # the shipped numbers: valid names, every one with the quick-scale command that produced it
    shipped = load_measured(SHIPPED)
    if not shipped.commands:
        pytest.skip("no measured numbers shipped")
    build_catalog(shipped.named, labels_measured=shipped.labels)  # unknown names would raise
    for m in (*shipped.named.values(), *shipped.labels.values()):
        assert m.command in shipped.commands and "--scale quick" in m.command
    assert main(["catalog"]) == 0
    out = capsys.readouterr().out
    assert "shipped with gradinv" in out and shipped.commands[0] in out
