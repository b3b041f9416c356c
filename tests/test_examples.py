"""The shipped example configs parse, and the README's Python examples run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradinv.config import load_config

ROOT = Path(__file__).resolve().parents[1]


EXPERIMENTS = sorted(p for p in (ROOT / "configs").glob("*.toml") if not p.name.startswith("frontier_"))
FRONTIERS = sorted((ROOT / "configs").glob("frontier_*.toml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_example_configs_parse(path):
    cfg = load_config(path)
    cfg.attack.build()
    cfg.threat.resolve()


@pytest.mark.parametrize("path", FRONTIERS, ids=lambda p: p.name)
def test_example_frontier_studies_parse(path):
    from gradinv.studies import load_study

    spec = load_study(path)
    assert spec.info.frontier is not None and spec.trials()


def test_readme_python_examples_run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    for code in blocks:
        # same code, tiny budgets: this checks the API calls, not attack quality
        code = re.sub(r'"iterations": \d+', '"iterations": 1', code)
        code = re.sub(r"iterations=\d+", "iterations=1", code)
        exec(compile(code, "README.md", "exec"), {})


def test_readme_commands_match_ci():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in readme and "test-command" in ci
    assert "constraints.txt" in readme and "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
