"""One search order for weight files: explicit path, $GRADINV_WEIGHTS (several folders), the torch hub
cache; deprecated per-file variables still read with a warning; one error naming every place tried."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from gradinv import weights as w
from gradinv.errors import DataError, MetricUnavailable

NAME = "demo_weights.pth"
LEGACY = "GRADINV_DEMO_WEIGHTS"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.delenv(w.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(LEGACY, raising=False)
    monkeypatch.setattr(w, "_warned", set())
    return hub / "checkpoints"


def _file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / NAME).write_bytes(b"x")
    return folder / NAME


def test_search_order(tmp_path: Path, _isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub_file = _file(_isolated)
    assert w.find_weight_file(NAME, what="demo") == hub_file  # 3. hub cache
    empty, second = tmp_path / "empty", tmp_path / "second"
    empty.mkdir()
    in_env = _file(second)
    monkeypatch.setenv(w.WEIGHTS_ENV, os.pathsep.join([str(empty), str(tmp_path / "absent"), str(second)]))
    assert w.weight_dirs() == [empty, tmp_path / "absent", second]
    search = w.search_weight_file(NAME)
    assert search.path == in_env  # 2. the first $GRADINV_WEIGHTS folder that has it, before the hub
    assert search.tried == (str(empty / NAME), str(tmp_path / "absent" / NAME), str(in_env))
    monkeypatch.setenv(w.WEIGHTS_ENV, str(in_env))  # the file itself is accepted too
    assert w.find_weight_file(NAME, what="demo") == in_env
    own = _file(tmp_path / "own")
    assert w.find_weight_file(NAME, explicit=own, what="demo") == own  # 1. explicit file ...
    assert w.find_weight_file(NAME, explicit=own.parent, what="demo") == own  # ... or its folder


def test_explicit_path_is_never_replaced(tmp_path: Path, _isolated: Path) -> None:
    _file(_isolated)
    with pytest.raises(MetricUnavailable, match=r"but weights=.*nope\.pth does not exist\. Places tried"):
        w.find_weight_file(NAME, explicit=tmp_path / "nope.pth", explicit_name="weights", what="demo")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match=rf"folder has no {NAME}"):
        w.find_weight_file(NAME, explicit=tmp_path / "folder", what="demo", error=DataError)


def test_error_lists_every_place_and_the_fixes(tmp_path: Path, _isolated: Path, monkeypatch) -> None:
    monkeypatch.setenv(w.WEIGHTS_ENV, str(tmp_path / "a"))
    with pytest.raises(MetricUnavailable) as info:
        w.find_weight_file(NAME, what="the demo weights", fix="Get it from example.org.", legacy_env=LEGACY)
    msg = str(info.value)
    assert msg.startswith(f"Expected {NAME} (the demo weights), but none of these places has it.")
    for needle in (str(tmp_path / "a" / NAME), str(_isolated / NAME), "GRADINV_WEIGHTS=/that/folder",
                   f"deprecated ${LEGACY}", "example.org", "config key"):  # fmt: skip
        assert needle in msg, needle
    monkeypatch.delenv(w.WEIGHTS_ENV)
    with pytest.raises(MetricUnavailable, match=r"\$GRADINV_WEIGHTS \(unset\)"):
        w.find_weight_file(NAME, what="demo")


def test_deprecated_variable_still_read_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = _file(tmp_path / "legacy")
    monkeypatch.setenv(w.WEIGHTS_ENV, str(_file(tmp_path / "env").parent))
    monkeypatch.setenv(LEGACY, str(legacy))
    with caplog.at_level(logging.WARNING, logger="gradinv.weights"):
        assert w.find_weight_file(NAME, what="demo", legacy_env=LEGACY) == legacy
        assert w.find_weight_file(NAME, what="demo", legacy_env=LEGACY) == legacy
    warnings = [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert (
        len(warnings) == 1
        and LEGACY in warnings[0].getMessage()
        and w.WEIGHTS_ENV in warnings[0].getMessage()
    )
    monkeypatch.setenv(LEGACY, str(tmp_path / "gone.pth"))
    with pytest.raises(MetricUnavailable, match=rf"\${LEGACY}=.*gone\.pth does not exist"):
        w.find_weight_file(NAME, what="demo", legacy_env=LEGACY)


def test_stlpips_and_lpips_use_the_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradinv.metrics.functional import lpips as lp
    from gradinv.metrics.functional import stlpips as st

    monkeypatch.delenv(st.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(lp.BACKBONE_ENV, raising=False)
    folder = tmp_path / "weights"
    for name in (st.STLPIPS_FILE, lp.ALEXNET_FILE):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"x")
    monkeypatch.setenv(w.WEIGHTS_ENV, str(folder))
    assert st.resolve_stlpips_weights() == folder / st.STLPIPS_FILE
    assert lp.resolve_lpips_backbone() == folder / lp.ALEXNET_FILE
    assert st.resolve_stlpips_weights(folder) == folder / st.STLPIPS_FILE  # a folder as `weights=`
