"""Without the [flower] extra, the integration fails with one error naming it (no flwr needed)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

from gradinv.errors import ConfigError


def test_missing_flwr_is_one_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # load the one module that imports flwr without the package (whose import needs flwr)
    import gradinv.integrations

    path = Path(gradinv.integrations.__file__).parent / "flower" / "_flwr.py"
    spec = importlib.util.spec_from_file_location("_gradinv_flwr_probe", path)
    assert spec is not None and spec.loader is not None
    _flwr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(_flwr)
    real = importlib.import_module

    def fake(name: str, *args: object, **kwargs: object) -> object:
        if name == "flwr" or name.startswith("flwr."):
            raise ImportError("No module named 'flwr'")
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ConfigError, match=r"pip install 'gradinv\[flower\]'"):
        _flwr.require_flwr()
