"""The privacy–utility frontier: strict config, outputs recomputed from the library's pieces, and
resumability (Ctrl-C and a killed process lose no finished point and recompute none)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import gradinv.studies.frontier as frontier_mod
from gradinv.attacks import create_attack
from gradinv.cli.app import main
from gradinv.defenses import create_defense
from gradinv.errors import ConfigError
from gradinv.fl.training import VictimClient, train_federated
from gradinv.metrics import psnr
from gradinv.studies.frontier import (
    FrontierEvent,
    load_frontier_config,
    load_frontier_data,
    parse_frontier_config,
    run_frontier,
)
from gradinv.threat import observe

REPO = Path(__file__).resolve().parents[2]

TINY = """
[data]
source = "digits"
image_size = 8
channels = 1
train_images = 400
test_images = 200
[model]
name = "mlp"
hidden = [16]
init = "default"
[training]
protocol = "fedavg"
batch_size = 16
lr = 0.3
[fl]
num_clients = 4
rounds = 2
clients_per_round = 2
[victim]
round = 0
num_images = 1
seed = 3
[threat]
model = "C"
[attack]
name = "idlg"
iterations = 2
max_iter = 4
[[defenses]]
name = "gaussian-noise"
param = "sigma"
values = [0.001, 0.1]
[frontier]
leakage_threshold = 20.0
"""


def _tiny(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(TINY + extra)
    return p


def _data(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (("fl", "rouds", 3), "Did you mean 'rounds'"),
        (
            ("victim", "rond", 0),
            "Valid keys: clients, composition, duplicates, indices, num_images, round, seed",
        ),
        (("frontier", "leakage", "psnrr"), "Did you mean 'psnr'"),
        (("victim", "round", 2), r"\[victim\] round in \[0, 2\)"),
        (("fl", "aggregation", "nope"), "Unknown aggregation"),
    ],
)
def test_config_errors_name_the_fix(patch, message):
    data = _data(TINY)
    section, key, value = patch
    data[section][key] = value
    with pytest.raises(ConfigError, match=message):
        parse_frontier_config(data)


def test_config_errors_for_sections_defenses_and_attacks():
    data = _data(TINY)
    data["fll"] = {}
    with pytest.raises(ConfigError, match=r"Unknown section \[fll\]. Did you mean 'fl'"):
        parse_frontier_config(data)
    data = _data(TINY)
    data["defenses"][0]["sigmaa"] = 1.0
    with pytest.raises(ConfigError, match=r"Unknown key 'sigmaa'.*Valid keys: clip_norm, relative, sigma"):
        parse_frontier_config(data)
    data = _data(TINY)
    data["defenses"][0]["param"] = "sigm"
    with pytest.raises(ConfigError, match="sigm"):
        parse_frontier_config(data)
    data = _data(TINY)
    data["defenses"] = [{"name": "qsgd", "param": "bits", "values": [2, 0]}]  # bad strength fails up front
    with pytest.raises(ConfigError, match="bits"):
        parse_frontier_config(data)
    data = _data(TINY)
    data["defenses"] = [{"name": "qsgd", "param": "bits"}]
    with pytest.raises(ConfigError, match="both `param`"):
        parse_frontier_config(data)
    data = _data(TINY)
    data["attacks"] = [{"name": "dlg"}]
    with pytest.raises(ConfigError, match="either"):
        parse_frontier_config(data)
    data = _data(TINY)
    data["attack"]["iteratons"] = 3
    with pytest.raises(ConfigError, match="Did you mean 'iterations'"):
        parse_frontier_config(data)


def test_points_and_keys():
    cfg = parse_frontier_config(_data(TINY))
    pts = cfg.points()
    assert [(p.defense, p.value) for p in pts] == [
        (None, None),
        ("gaussian-noise", 0.001),
        ("gaussian-noise", 0.1),
    ]
    assert [p.params for p in pts[1:]] == [{"sigma": 0.001}, {"sigma": 0.1}]
    assert [p.key for p in parse_frontier_config(_data(TINY)).points()] == [p.key for p in pts]  # stable
    moved = _data(TINY)
    moved["run"] = {"out": "elsewhere", "device": "cpu"}
    assert [p.key for p in parse_frontier_config(moved).points()] == [p.key for p in pts]
    changed = _data(TINY)
    changed["fl"]["rounds"] = 3
    assert not {p.key for p in parse_frontier_config(changed).points()} & {p.key for p in pts}


# --------------------------------------------------------------------------------------------------
# outputs, against the library's pieces
# --------------------------------------------------------------------------------------------------


def test_outputs_match_an_independent_recomputation(tmp_path):
    cfg = load_frontier_config(_tiny(tmp_path))
    res = run_frontier(cfg, tmp_path / "out", device="cpu")
    assert res.complete and len(res.computed) == 3 and not res.skipped
    out = tmp_path / "out"
    rows = list(csv.DictReader((out / "frontier.csv").open()))
    assert len(rows) == 3 and [r["label"] for r in rows] == ["none", "gaussian-noise", "gaussian-noise"]
    doc = json.loads((out / "frontier.json").read_text())
    assert len(doc["points"]) == 3 and doc["summary"]["leakage_metric"] == "psnr"
    assert Image.open(out / "frontier.png").size[0] > 100
    page = (out / "frontier.html").read_text()
    assert "gaussian-noise" in page and "data:image/png;base64," in page and "<script" not in page

    # oracle: train and attack with the library pieces directly, for the strongest noise point
    data = load_frontier_data(cfg)
    point = cfg.points()[2]
    model = frontier_mod._build_model(cfg, data)
    fed = train_federated(
        model,
        data.train,
        data.test,
        cfg.training,
        cfg.fl,
        defenses=[create_defense("gaussian-noise", sigma=0.1)],
        victims=[VictimClient(data.victims[0], round=0)],
    )
    attack = create_attack("idlg", iterations=2, max_iter=4)
    rec = attack.reconstruct(observe(fed.victim_truth, "C"), device="cpu").reconstruction
    want_psnr = float(psnr(rec.images, data.victims[0].images).mean())
    record = next(r for r in res.records if r["key"] == point.key)
    assert record["accuracy"] == pytest.approx(fed.final_accuracy)
    assert record["attacks"][0]["metrics"]["psnr"] == pytest.approx(want_psnr, rel=1e-6)
    assert float(rows[2]["psnr"]) == pytest.approx(want_psnr, rel=1e-6)
    assert float(rows[2]["accuracy"]) == pytest.approx(fed.final_accuracy)
    # noise hides the victim: the undefended update leaks far more than sigma = 0.1
    base = res.records[0]["attacks"][0]["metrics"]["psnr"]
    assert base > record["attacks"][0]["metrics"]["psnr"] + 10
    unavailable = record["attacks"][0]["unavailable"]
    assert "brr" in record["attacks"][0]["metrics"] or "brr" in unavailable
    assert "lpips" in unavailable or "lpips" in record["attacks"][0]["metrics"]


# --------------------------------------------------------------------------------------------------
# resumability
# --------------------------------------------------------------------------------------------------


class Spy:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys: list[str] = []
        real = frontier_mod.compute_point

        def spy(cfg, point, data, **kw):
            self.keys.append(point.key)
            return real(cfg, point, data, **kw)

        monkeypatch.setattr(frontier_mod, "compute_point", spy)


def test_ctrl_c_after_the_first_point_loses_nothing_and_recomputes_nothing(tmp_path, monkeypatch):
    cfg = load_frontier_config(_tiny(tmp_path))
    keys = [p.key for p in cfg.points()]
    out = tmp_path / "out"
    spy = Spy(monkeypatch)

    def interrupt(ev: FrontierEvent) -> None:
        if ev.kind == "point":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_frontier(cfg, out, progress=interrupt, device="cpu")
    assert spy.keys == keys[:1]
    first = (out / "points" / f"{keys[0]}.json").read_bytes()
    assert sorted(p.stem for p in (out / "points").glob("*.json")) == [keys[0]]

    # Ctrl-C inside an attack: the attack returns early, but the point must not be recorded
    def interrupt_attack(ev: FrontierEvent) -> None:
        if ev.kind == "attack":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_frontier(cfg, out, progress=interrupt_attack, device="cpu")
    assert spy.keys == [*keys[:1], keys[1]]
    assert sorted(p.stem for p in (out / "points").glob("*.json")) == [keys[0]]

    spy.keys.clear()
    res = run_frontier(cfg, out, device="cpu")
    assert spy.keys == keys[1:] and res.skipped == (keys[0],) and res.complete
    assert (out / "points" / f"{keys[0]}.json").read_bytes() == first
    spy.keys.clear()
    res = run_frontier(cfg, out, device="cpu")
    assert spy.keys == [] and len(res.records) == 3


def test_stale_and_broken_point_files_are_ignored(tmp_path, monkeypatch):
    cfg = load_frontier_config(_tiny(tmp_path))
    points_dir = tmp_path / "out" / "points"
    points_dir.mkdir(parents=True)
    key = cfg.points()[0].key
    (points_dir / f"{key}.json").write_text("{not json")  # e.g. edited by hand
    (points_dir / ".half-written.tmp").write_text("{")
    spy = Spy(monkeypatch)
    res = run_frontier(cfg, tmp_path / "out", device="cpu")
    assert len(spy.keys) == 3 and res.stale == 1 and res.complete


def test_cli_killed_mid_run_then_rerun(tmp_path):
    """A real process is killed (SIGKILL) while computing the second point; the rerun computes only
    the missing points and keeps the finished one byte for byte."""
    cfg_path = _tiny(tmp_path)
    out = tmp_path / "out"
    marker = tmp_path / "second-point-started"
    runner = tmp_path / "runner.py"
    runner.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            from pathlib import Path
            import gradinv.studies.frontier as fm
            from gradinv.cli.app import main
            real, calls = fm.compute_point, []
            def slow(*a, **kw):
                calls.append(1)
                if len(calls) == 2:
                    Path({str(marker)!r}).write_text("x")
                    time.sleep(120)
                return real(*a, **kw)
            fm.compute_point = slow
            sys.exit(main(["frontier", "--config", {str(cfg_path)!r}, "--out", {str(out)!r},
                           "--device", "cpu", "--no-progress"]))
            """
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, str(runner)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the subprocess never reached the second point"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    cfg = load_frontier_config(cfg_path)
    keys = [p.key for p in cfg.points()]
    assert sorted(p.stem for p in (out / "points").glob("*.json")) == [keys[0]]
    first = (out / "points" / f"{keys[0]}.json").read_bytes()
    computed: list[str] = []
    real = frontier_mod.compute_point
    try:
        frontier_mod.compute_point = lambda c, p, d, **kw: computed.append(p.key) or real(c, p, d, **kw)
        assert (
            main(
                ["frontier", "--config", str(cfg_path), "--out", str(out), "--device", "cpu", "--no-progress"]
            )
            == 0
        )
    finally:
        frontier_mod.compute_point = real
    assert computed == keys[1:]
    assert (out / "points" / f"{keys[0]}.json").read_bytes() == first
    assert len(list((out / "points").glob("*.json"))) == 3
    assert (
        main(["frontier", "--config", str(cfg_path), "--out", str(out), "--report-only", "--no-progress"])
        == 0
    )
    assert (out / "frontier.html").is_file()


def test_cli_dry_run_lists_points(tmp_path, capsys):
    assert (
        main(["frontier", "--config", str(_tiny(tmp_path)), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    )
    text = capsys.readouterr().out
    assert "3 point(s), 0 finished" in text and "gaussian-noise (sigma = 0.1)" in text
    assert main(["frontier", "--config", str(_tiny(tmp_path)), "--set", "fl.rouds=3"]) == 2
    assert "Did you mean 'rounds'" in capsys.readouterr().err


def test_model_stage_defense_changes_the_attacked_model(tmp_path):
    """PRECODE (model stage) transforms the global model once; the victim's truth holds the changed
    model, so the attack sees what every party uses."""
    extra = '\n[[defenses]]\nname = "precode"\nparam = "latent_dim"\nvalues = [4]\n'
    data = _data(TINY + extra)
    data["defenses"] = data["defenses"][1:]
    data["frontier"]["baseline"] = False
    cfg = parse_frontier_config(data)
    fdata = load_frontier_data(cfg)
    record = frontier_mod.compute_point(cfg, cfg.points()[0], fdata, device="cpu")
    assert record["defense"]["stage"] == "model" and record["attacks"][0]["status"] in ("ok", "refused")
    assert torch.isfinite(torch.tensor(record["accuracy"]))


def test_several_victims_are_averaged_and_never_train(tmp_path):
    data = _data(TINY)
    data["victim"] = {"round": 1, "clients": 2, "num_images": 1, "seed": 5}
    data["defenses"] = []
    cfg = parse_frontier_config(data)
    fdata = load_frontier_data(cfg)
    assert len(fdata.victims) == 2 and all(v.size == 1 for v in fdata.victims)
    victim_rows = {i for group in fdata.victim_indices for i in group}
    assert len(victim_rows) == 2 and not victim_rows & set(fdata.train.indices)
    record = frontier_mod.compute_point(cfg, cfg.points()[0], fdata, device="cpu")
    attack = record["attacks"][0]
    per_victim = [v["metrics"]["psnr"] for v in attack["victims"]]
    assert len(per_victim) == 2
    assert attack["metrics"]["psnr"] == pytest.approx(sum(per_victim) / 2)
    assert record["victim"]["clients"] == 2 and record["victim"]["num_samples"] == [1, 1]
    again = frontier_mod.compute_point(cfg, cfg.points()[0], fdata, device="cpu")
    assert again["attacks"][0]["metrics"] == attack["metrics"] and again["accuracy"] == record["accuracy"]


def test_metrics_the_frontier_cannot_compute_are_refused():
    from gradinv.errors import ConfigError
    from gradinv.studies import parse_frontier_config

    with pytest.raises(ConfigError, match=r"without iip .*iip = true"):
        parse_frontier_config({"attack": {"name": "idlg"}, "metrics": {"iip": True}})


# --------------------------------------------------------------------------------------------------
# the frontier runs the one attack-and-score stage: active attacks and the attack's target
# --------------------------------------------------------------------------------------------------

ACTIVE = """
[data]
source = "digits"
image_size = 8
channels = 1
train_images = 120
test_images = 60
[model]
name = "mlp"
hidden = [64]
[training]
protocol = "fedsgd"
[fl]
num_clients = 3
rounds = 2
clients_per_round = 2
{fl_extra}
[victim]
round = 1
num_images = {n}
seed = 3
[threat]
model = "{threat}"
[attack]
{attack}
[frontier]
baseline = true
"""


def _active_record(**fmt: object) -> dict:
    cfg = parse_frontier_config(_data(ACTIVE.format(**fmt)))
    fdata = load_frontier_data(cfg)
    record = frontier_mod.compute_point(cfg, cfg.points()[0], fdata, device="cpu")
    attack = record["attacks"][0]
    assert attack["status"] == "ok", attack.get("reason")
    return {"attack": attack, "victim": fdata.victims[0]}


def test_robbing_the_fed_under_threat_f_crafts_in_the_victim_round():
    """An active attack runs the server of the victim's round: it crafts the imprint model (never
    called by the old copy of the attack-and-score steps, which refused or mis-scored it)."""
    got = _active_record(n=4, threat="F", attack='name = "robbing-the-fed"\nbins = 64', fl_extra="")
    attack, victim = got["attack"], got["victim"]
    assert attack["crafted_models"] is True
    (run,) = attack["victims"]
    assert sorted(run["true_labels"]) == sorted(victim.labels.tolist())  # scored against the victim
    assert run["metrics"]["psnr"] > 30  # imprinted images come back (near) exactly


def test_inconsistent_models_are_scored_against_the_victim_not_the_aggregate():
    """Under secure aggregation the server observes every client's sum; an attack with
    ``target = "victim"`` isolates the victim, so it must be scored on the victim's batch alone."""
    got = _active_record(
        n=1,
        threat="H",
        attack='name = "inconsistent-models"\ninner = "fc-bias"',
        fl_extra='aggregation = "secure"\naggregation_options = { seed = 0 }',
    )
    attack, victim = got["attack"], got["victim"]
    (run,) = attack["victims"]
    assert run["true_labels"] == victim.labels.tolist() and len(run["per_image"]["psnr"]) == 1
    assert run["metrics"]["psnr"] > 30
