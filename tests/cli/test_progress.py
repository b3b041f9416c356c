"""Progress output (timestamped lines off a terminal, a bar with ETA on one) and output folders."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest

from gradinv.cli.common import ProgressLines, format_duration, prepare_out_dir, progress_bar
from gradinv.errors import ConfigError

LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_duration():
    assert [format_duration(s) for s in (0, 42, 61.4, 3725)] == ["0:00", "0:42", "1:01", "1:02:05"]
    assert format_duration(float("nan")) == "?"


def test_progress_lines_are_timestamped_rate_limited_and_end_with_the_total_time():
    out, clock = io.StringIO(), FakeClock()
    lines = ProgressLines("dlg", stream=out, interval=10.0, clock=clock)
    lines.update(1, 300, "loss 1.5")  # the first update is always shown
    clock.t += 3
    lines.update(40, 300, "loss 0.5")  # within the interval: suppressed
    clock.t += 9
    lines.update(120, 300, "loss 0.0123")  # 119 steps in 12 s: 180 left take ~18 s
    clock.t += 18
    lines.update(300, 300, "loss 0.001")  # the last step is always shown
    lines.update(300, 300, "loss 0.001")  # ... once
    shown = out.getvalue().splitlines()
    assert len(shown) == 3 and all(LINE.match(s) for s in shown)
    assert shown[0].endswith("dlg 1/300 loss 1.5")
    assert shown[1].endswith("dlg 120/300 loss 0.0123 eta 0:18")
    assert shown[2].endswith("dlg 300/300 loss 0.001 done in 0:30")


def test_progress_bar_off_a_terminal_prints_lines():
    out = io.StringIO()
    with progress_bar("idlg", stream=out, interval=0.0) as bar:
        assert bar is not None
        for step in range(1, 4):
            bar(step, 3, 0.25)
    shown = out.getvalue().splitlines()
    assert len(shown) == 3 and all(LINE.match(s) for s in shown)
    assert "idlg 2/3 loss 0.25" in shown[1] and "done in" in shown[2]


def test_progress_bar_on_a_terminal_draws_a_bar_with_eta():
    out = FakeTTY()
    with progress_bar("dlg", stream=out) as bar:
        assert bar is not None
        bar(5, 10, 0.5)
    text = out.getvalue()
    assert "dlg" in text and "5/10" in text and "<" in text  # tqdm's [elapsed<remaining]
    assert not LINE.search(text)


def test_progress_bar_disabled():
    with progress_bar("dlg", enabled=False) as bar:
        assert bar is None


def test_prepare_out_dir(tmp_path):
    made = prepare_out_dir(tmp_path / "a" / "b")
    assert made.is_dir() and not list(made.iterdir())  # the write probe leaves nothing behind
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        prepare_out_dir(tmp_path / "f")
    with pytest.raises(ConfigError, match="lies under"):
        prepare_out_dir(tmp_path / "f" / "sub", create=False)
    assert prepare_out_dir(tmp_path / "new", create=False) == tmp_path / "new"
    assert not (tmp_path / "new").exists()  # a dry run checks without creating


def test_late_report_failure_keeps_the_result(tmp_path, monkeypatch, capsys):
    """A report that cannot be written where asked (disk full, folder removed) goes to a temp folder."""
    import gradinv.report
    from gradinv.cli.attack import save_report

    calls = []

    def write_report(result, out):
        calls.append(out)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return SimpleNamespace(html=out / "report.html", json=out / "report.json", png=out / "r.png")

    monkeypatch.setattr(gradinv.report, "write_report", write_report)
    paths, where_asked = save_report(object(), tmp_path / "out")
    assert not where_asked and paths.html.parent == calls[1] != tmp_path / "out"
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(calls[1]) in err


def test_help_and_version_return_zero(capsys):
    from gradinv.cli.app import main

    assert main(["--version"]) == 0
    assert main(["attack", "--help"]) == 0
    assert "--dry-run" in capsys.readouterr().out
