"""Every shipped config states its expected time, runs without ../shared unless its header says it
needs it, and passes ``--dry-run`` from an empty folder (as on a fresh clone)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradinv.cli.app import main

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))
EXPERIMENTS = [p for p in CONFIGS if not p.name.startswith("frontier_")]
FRONTIERS = [p for p in CONFIGS if p.name.startswith("frontier_")]


def _header(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def test_there_are_configs():
    assert EXPERIMENTS and FRONTIERS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_header_states_expected_time_and_data_needs(path):
    header = _header(path)
    assert re.search(r"^# Expected time: .*(second|minute|hour)", header, flags=re.M), header
    active = [ln.split("#", 1)[0] for ln in path.read_text(encoding="utf-8").splitlines()]
    if any("shared/" in ln for ln in active):
        assert "Needs CIFAR-10" in header and "fresh clone" in header, (
            f"{path.name} reads ../shared by default; its header must say so and how to run without it"
        )


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_config_passes_dry_run_on_a_fresh_clone(path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ../shared here, no relative data paths to lean on
    monkeypatch.delenv("GRADINV_DATA", raising=False)
    code = main(["attack", "--config", str(path), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert ": ok, would run" in out


@pytest.mark.parametrize("path", FRONTIERS, ids=lambda p: p.name)
def test_frontier_study_lists_its_trials(path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["frontier", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 0
    assert "trial(s)" in capsys.readouterr().out
