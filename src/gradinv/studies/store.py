"""The crash-safe results store of a study: one SQLite file, one row per finished trial.

``OUT/study.sqlite`` (stdlib :mod:`sqlite3`, write-ahead log, ``synchronous=FULL``) holds

- ``trials``: one row per finished trial, keyed by :func:`gradinv.studies.spec.trial_key` (a hash of
  the trial's full resolved config plus the gradinv version). Each row is written in one transaction
  after its trial ends (``INSERT OR IGNORE``), so a ``kill -9`` at any moment loses no finished trial
  and never writes half of one or the same one twice;
- ``meta``: the study's name and the last spec run into it.

Only the driver writes (executors return rows). A row whose key is not a trial of the current spec
is **stale** (the config or the gradinv version changed): it is kept in the file but never mixed
into tables; :meth:`Store.stale_keys` reports it.

>>> import tempfile, pathlib
>>> from gradinv.studies.rows import TrialRow
>>> with tempfile.TemporaryDirectory() as d, Store(pathlib.Path(d) / "s.sqlite") as st:
...     row = TrialRow("k1", "demo", {"B": "1"}, {"B": 1}, 0, {}, {"psnr": 12.5})
...     st.add(row), st.add(row), len(st.rows()), st.rows()[0].metrics["psnr"]
(True, False, 1, 12.5)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from gradinv.errors import ConfigError
from gradinv.studies.rows import TrialRow

__all__ = ["STORE_NAME", "Store"]

STORE_NAME = "study.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    key TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    point TEXT NOT NULL,
    axis_values TEXT NOT NULL,
    repeat INTEGER NOT NULL,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    seconds REAL NOT NULL,
    version TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    images BLOB,
    unavailable TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = (
    "key, study, point, axis_values, repeat, config, metrics, status, message, seconds, version, "
    "unavailable, images"
)


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=False, allow_nan=True, default=str)


class Store:
    """A study's SQLite store (see the module docstring). Use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(trials)")}
        if "unavailable" not in columns:  # a store written before the column existed
            self._db.execute("ALTER TABLE trials ADD COLUMN unavailable TEXT NOT NULL DEFAULT '{}'")

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def claim(self, study: str) -> None:
        """Mark the store as ``study``'s; a store of another study is refused (another --out)."""
        found = self.meta("study")
        if found is not None and found != study:
            raise ConfigError(
                f"Expected {str(self.path)!r} to hold study {study!r}, but it holds study {found!r}. "
                "Give this study another --out folder."
            )
        self.set_meta("study", study)

    def set_meta(self, name: str, value: Any) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, _json(value)))

    def meta(self, name: str) -> Any:
        found = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if found is None else json.loads(found[0])

    def add(self, row: TrialRow) -> bool:
        """Write one finished trial in one transaction; ``False`` if its key was already stored."""
        values = (
            row.key,
            row.study,
            _json(dict(row.point)),
            _json(dict(row.values)),
            row.repeat,
            _json(dict(row.config)),
            _json(dict(row.metrics)),
            row.status,
            row.message,
            float(row.seconds),
            row.version,
            _json(dict(row.unavailable)),
            datetime.now(timezone.utc).isoformat(timespec="seconds"),
            row.images,
        )
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                f"INSERT OR IGNORE INTO trials ({_COLUMNS.replace(', images', ', finished_at, images')}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        return cur.rowcount == 1

    def keys(self) -> set[str]:
        return {k for (k,) in self._db.execute("SELECT key FROM trials")}

    def rows(self, keys: Collection[str] | None = None, *, images: bool = True) -> list[TrialRow]:
        """The stored rows (only those in ``keys`` when given), in insertion order."""
        cols = _COLUMNS if images else _COLUMNS.replace(", images", ", NULL")
        out = []
        for r in self._db.execute(f"SELECT {cols} FROM trials ORDER BY rowid"):
            if keys is not None and r[0] not in keys:
                continue
            out.append(
                TrialRow(
                    key=r[0],
                    study=r[1],
                    point=json.loads(r[2]),
                    values=json.loads(r[3]),
                    repeat=int(r[4]),
                    config=json.loads(r[5]),
                    metrics=json.loads(r[6]),
                    status=r[7],
                    message=r[8],
                    seconds=float(r[9]),
                    version=r[10],
                    unavailable=json.loads(r[11]),
                    images=r[12],
                )
            )
        return out

    def stale_keys(self, current: Collection[str]) -> set[str]:
        """Stored keys that are not trials of the current spec (changed config or version)."""
        return self.keys() - set(current)
