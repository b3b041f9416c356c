"""The study engine: spec parsing and grids, the SQLite store, executors (in-process, pool, Ray), the
CLI, crash safety (kill -9) and resumption. Trials are tiny real experiments (DLG on an MLP, 8x8
digits) so the whole file runs in well under a minute."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gradinv.errors import ConfigError
from gradinv.studies.engine import report_study, run_study
from gradinv.studies.executors import InProcessExecutor, make_executor
from gradinv.studies.library import builtin_studies, find_study
from gradinv.studies.spec import load_study, parse_study
from gradinv.studies.store import STORE_NAME, Store

TOY = """
[study]
name = "toy"
repeats = 2
metrics = ["psnr", "label_accuracy"]
rows = ["B"]
columns = ["it"]

[[axes]]
name = "B"
key = "data.num_images"
values = [1, 2]

[[axes]]
name = "it"
key = "attack.iterations"
values = [2, 4]

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


def _doc(text: str = TOY) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(text)


def _numbers(rows: Any) -> list[tuple[Any, ...]]:
    """What must agree between runs: point, repeat, status and every metric but wall times."""
    return [
        (
            tuple(r.point.items()),
            r.repeat,
            r.status,
            tuple(sorted((k, v) for k, v in r.metrics.items() if "seconds" not in k)),
        )
        for r in rows
    ]


def test_grid_repeats_and_keys() -> None:
    spec = parse_study(_doc())
    trials = spec.trials()
    assert len(trials) == 2 * 2 * 2  # B x it x repeats
    assert [t.point for t in trials[:2]] == [{"B": "1", "it": "2"}] * 2
    assert [t.repeat for t in trials[:2]] == [0, 1]
    # a repeat moves the default repeat keys (which images, which initial weights)
    assert (trials[1].config.data.seed, trials[1].config.model.seed) == (1, 1)
    assert trials[2].config.attack.params["iterations"] == 4
    assert len({t.key for t in trials}) == len(trials)
    # keys are a function of the resolved config: the same study parsed again gives the same keys
    assert [t.key for t in parse_study(_doc()).trials()] == [t.key for t in trials]
    changed = parse_study(_doc(), overrides={"attack.lr": 0.5})
    assert not {t.key for t in changed.trials()} & {t.key for t in trials}


def test_zip_axes_move_together_and_scales() -> None:
    doc = _doc()
    doc["axes"][1] = {"name": "it", "key": "attack.iterations", "values": [2, 4], "zip": True}
    doc["study"]["columns"] = []
    doc["scale"] = {"quick": {"repeats": 1, "axes": {"B": [1, 3], "it": [5, 6]}, "set": {"attack.lr": 0.5}}}
    spec = parse_study(doc)
    assert [t.point for t in spec.trials()][::2] == [{"B": "1", "it": "2"}, {"B": "2", "it": "4"}]
    quick = parse_study(doc, scale="quick")
    trials = quick.trials()
    assert [(t.point["B"], t.point["it"]) for t in trials] == [("1", "5"), ("3", "6")]
    assert all(t.config.attack.params["lr"] == 0.5 for t in trials)


def test_table_valued_axis_sets_several_keys() -> None:
    doc = _doc()
    doc["axes"][1] = {
        "name": "variant",
        "values": [
            {"label": "base", "set": {}},
            {"label": "wide", "set": {"model.hidden": [32], "attack.iterations": 2}},
        ],
    }
    doc["study"]["columns"] = ["variant"]
    trials = parse_study(doc).trials()
    wide = [t for t in trials if t.point["variant"] == "wide"]
    assert wide and all(
        t.config.model.options["hidden"] == [32] or tuple(t.config.model.options["hidden"]) == (32,)
        for t in wide
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["study"].update(repeets=2), "Did you mean 'repeats'"),
        (lambda d: d["axes"][0].update(kye="x"), "Did you mean 'key'"),
        (lambda d: d["axes"][0].update(key="atack.iterations"), "Did you mean 'attack'"),
        (lambda d: d["study"].update(metrics=["psnrr"]), "Did you mean 'psnr'"),
        (lambda d: d["study"].update(rows=["b"]), "Expected [study] rows to name axes"),
        (lambda d: d["study"].update(columns=[]), "in neither"),
        (lambda d: d.update(modle={}), "Unknown section [modle]"),
        (lambda d: d["attack"].update(iteratons=3), "Did you mean 'iterations'"),
        (lambda d: d["axes"][1].update(values=[]), "at least one value"),
    ],
)
def test_bad_study_files_name_the_fix(edit: Any, message: str) -> None:
    doc = _doc()
    edit(doc)
    with pytest.raises(ConfigError, match=None) as e:
        parse_study(doc)
    assert message in str(e.value)


def test_unknown_scale_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="Valid scales"):
        parse_study(_doc(), scale="huge")


def test_store_rows_resume_and_stale(tmp_path: Path) -> None:
    spec = parse_study(_doc())
    first = run_study(spec, tmp_path, outputs=False)
    assert (first.computed, first.reused, first.complete) == (8, 0, True)
    again = run_study(spec, tmp_path, outputs=False)
    assert (again.computed, again.reused) == (0, 8)
    assert _numbers(again.rows) == _numbers(first.rows)
    # a changed base config: nothing reused, the old rows reported as stale and never mixed in
    changed = parse_study(_doc(), overrides={"attack.lr": 0.5})
    run = run_study(changed, tmp_path, outputs=False)
    assert (run.computed, run.stale) == (8, 8)
    assert {r.key for r in run.rows} == {t.key for t in changed.trials()}
    with Store(tmp_path / STORE_NAME) as st:
        assert len(st.keys()) == 16
    # a store of another study is refused
    other = _doc()
    other["study"]["name"] = "other"
    with pytest.raises(ConfigError, match="holds study 'toy'"):
        run_study(parse_study(other), tmp_path, outputs=False)


def test_refusal_is_a_stored_result(tmp_path: Path) -> None:
    doc = _doc()
    doc["attack"] = {"name": "robbing-the-fed", "bins": 16}  # a malicious server: needs threat model F
    doc["axes"] = [doc["axes"][0]]
    doc["study"].update(columns=[], repeats=1)
    run = run_study(parse_study(doc), tmp_path, outputs=False)
    assert [r.status for r in run.rows] == ["refused", "refused"]
    assert "active_manipulation" in run.rows[0].message


def test_report_from_the_folder_alone(tmp_path: Path) -> None:
    run = run_study(parse_study(_doc()), tmp_path)
    table = Path(run.outputs.table_md).read_text()
    rebuilt = report_study(tmp_path)
    assert Path(rebuilt.outputs.table_md).read_text() == table
    assert rebuilt.missing == ()
    html = Path(rebuilt.outputs.html).read_text()
    assert html.count("<img") >= 4  # one image grid per grid point (plus plots)


@pytest.fixture(scope="module")
def pool_rows(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The toy study run by a local pool of 2 processes (shared by the executor tests)."""
    out = tmp_path_factory.mktemp("pool")
    run = run_study(parse_study(_doc()), out, executor=make_executor("local", workers=2))
    assert run.complete
    return run


def test_pool_gives_the_rows_of_the_same_thread_count(tmp_path: Path, pool_rows: Any) -> None:
    # oracle: the same trials one at a time in this process, with the pool's per-trial threads
    import torch

    from gradinv.studies.executors import threads_per_trial

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads_per_trial(2))
        serial = run_study(parse_study(_doc()), tmp_path, executor=InProcessExecutor(), outputs=False)
    finally:
        torch.set_num_threads(threads)
    assert _numbers(pool_rows.rows) == _numbers(serial.rows)


def test_ray_executor_gives_the_local_rows(tmp_path: Path, pool_rows: Any) -> None:
    pytest.importorskip("ray", reason="the [ray] extra is not installed (CI installs it)")
    ray_run = run_study(
        parse_study(_doc()), tmp_path, executor=make_executor("ray", workers=2), outputs=False
    )
    assert _numbers(ray_run.rows) == _numbers(pool_rows.rows)


def test_missing_ray_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"gradinv\[ray\]"):
        make_executor("ray", workers=2)


def _gradinv(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gradinv.cli.app", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def _stored(path: Path) -> int:
    if not path.is_file():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_kill_9_loses_nothing_and_duplicates_nothing(tmp_path: Path, pool_rows: Any) -> None:
    study = tmp_path / "toy.toml"
    study.write_text(TOY)
    out = tmp_path / "run"
    proc = _gradinv("study", "run", str(study), "--workers", "2", "--out", str(out), "--no-progress")
    deadline = time.monotonic() + 120
    while _stored(out / STORE_NAME) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the study finished before it could be killed: make the trials slower"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, at once
    proc.wait()
    killed_with = _stored(out / STORE_NAME)
    assert 2 <= killed_with < 8
    again = _gradinv("study", "run", str(study), "--workers", "2", "--out", str(out), "--no-progress")
    log, _ = again.communicate(timeout=300)
    assert again.returncode == 0, log
    assert f"{8 - killed_with} computed now, {killed_with} reused" in log
    with Store(out / STORE_NAME) as st:
        rows = st.rows()
    spec = load_study(study)
    assert sorted(r.key for r in rows) == sorted(t.key for t in spec.trials())  # one row each
    # the same numbers and the same table as an uninterrupted run with the same --workers
    by_key = {r.key: r for r in rows}
    assert _numbers([by_key[r.key] for r in pool_rows.rows]) == _numbers(pool_rows.rows)
    assert (out / "table.md").read_text() == Path(pool_rows.outputs.table_md).read_text()


def test_builtin_studies_parse_in_every_scale() -> None:
    studies = builtin_studies()
    assert {"local-updates", "batch-size", "robbing-the-fed-bins"} <= {s.name for s in studies}
    for s in studies:
        assert s.claim and s.paper, s.name
        assert {"quick", "paper"} <= set(s.scales), s.name
        for scale in s.scales:
            spec = load_study(find_study(s.name), scale=scale)
            assert spec.trials(), (s.name, scale)
    with pytest.raises(ConfigError, match="Built-in studies"):
        find_study("batch-sise")


def test_cli_list_and_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gradinv.cli.app import main

    assert main(["study", "list"]) == 0
    listed = capsys.readouterr().out
    for s in builtin_studies():
        assert s.name in listed
    study = tmp_path / "toy.toml"
    study.write_text(TOY)
    assert main(["study", "run", str(study), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("[todo]") == 8
    assert not (tmp_path / "o" / STORE_NAME).exists()
    assert (
        main(["study", "run", str(study), "--out", str(tmp_path / "o"), "--set", "attack.iteratons=3"]) == 2
    )
    assert "Did you mean 'iterations'" in capsys.readouterr().err


def test_dry_run_names_the_trials_the_threat_model_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inverting Gradients needs basic knowledge: under threat model A its trials are refused, and the
    dry run says so before anything runs (DLG runs under A: it assumes what A does not grant)."""
    from gradinv.cli.app import main

    study = tmp_path / "gated.toml"
    attack_axis = (
        '[[axes]]\nname = "attack"\nkey = "attack.name"\nvalues = ["dlg", "inverting-gradients"]\n\n'
    )
    gated = TOY.replace('[threat]\nmodel = "B"', '[threat]\nmodel = "A"')
    gated = gated.replace('rows = ["B"]', 'rows = ["B", "attack"]').replace(
        "[[axes]]", attack_axis + "[[axes]]", 1
    )
    study.write_text(gated)
    assert main(["study", "run", str(study), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("[todo]") == 16 and out.count("      will be refused: ") == 8
    assert "Inverting Gradients requires basic knowledge" in out
    assert "8 trial(s) will be refused by the threat model" in out


def test_unavailable_metrics_keep_their_reason(tmp_path: Path) -> None:
    """A metric an ok trial cannot compute (LPIPS without its AlexNet weights) is a "—" cell whose
    reason is stored with the row and stated under the table; a store written before the column
    existed is read with none."""
    from gradinv.studies.tables import aggregate, table_note

    doc = _doc()
    doc["study"]["metrics"] = ["psnr", "lpips"]
    doc["metrics"] = {"lpips": "auto", "lpips_weights": str(tmp_path / "no-such-dir"), "stlpips": "off"}
    spec = parse_study(doc)
    run = run_study(spec, tmp_path / "s", outputs=False)
    assert all(r.status == "ok" and "lpips" not in r.metrics for r in run.rows)
    reasons = {r.unavailable["lpips"] for r in run.rows}
    assert len(reasons) == 1 and "LPIPS" in next(iter(reasons))
    stored = report_study(tmp_path / "s").rows
    assert [r.unavailable for r in stored] == [r.unavailable for r in run.rows]
    note = table_note(aggregate(stored, spec.layout))
    assert f"LPIPS ↓ unavailable: {next(iter(reasons)).rstrip('.')}." in note
    # an older store: no `unavailable` column; opening it adds one, rows read with none
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:
        db.execute(
            "CREATE TABLE trials (key TEXT PRIMARY KEY, study TEXT NOT NULL, point TEXT NOT NULL, "
            "axis_values TEXT NOT NULL, repeat INTEGER NOT NULL, config TEXT NOT NULL, "
            "metrics TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL, seconds REAL NOT NULL, "
            "version TEXT NOT NULL, "
            "finished_at TEXT NOT NULL, images BLOB)"
        )
        db.execute(
            "INSERT INTO trials VALUES ('k', 'toy', '{}', '{}', 0, '{}', '{\"psnr\": 1.0}', 'ok', '', 1.0, "
            "'0', 'now', NULL)"
        )
    with Store(old) as st:
        (row,) = st.rows()
    assert row.metrics == {"psnr": 1.0} and row.unavailable == {}
