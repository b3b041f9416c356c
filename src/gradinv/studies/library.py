"""The built-in studies: TOML files shipped in ``gradinv/studies/builtin``, one per paper finding.

``gradinv study list`` shows them; ``gradinv study run NAME`` runs one (a path to a user's own study
file works the same way). Each has a ``quick`` scale (minutes on 2 CPU cores) and a ``paper`` scale
(the paper's settings); docs/studies.md gives the measured quick-scale tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gradinv.config import read_toml
from gradinv.errors import ConfigError, did_you_mean

__all__ = ["BUILTIN_DIR", "BuiltinStudy", "builtin_studies", "find_study"]

BUILTIN_DIR = Path(__file__).with_name("builtin")


@dataclass(frozen=True)
class BuiltinStudy:
    name: str
    title: str
    paper: str
    claim: str
    scales: tuple[str, ...]
    path: Path


def builtin_studies() -> list[BuiltinStudy]:
    """Every built-in study, in the order of the files' names."""
    out = []
    for p in sorted(BUILTIN_DIR.glob("*.toml")):
        doc = read_toml(p)
        s = doc.get("study", {})
        out.append(
            BuiltinStudy(
                name=str(s.get("name", p.stem)),
                title=str(s.get("title", "")),
                paper=str(s.get("paper", "")),
                claim=str(s.get("claim", "")),
                scales=tuple(doc.get("scale", {})),
                path=p,
            )
        )
    return out


def find_study(name_or_path: str | Path) -> Path:
    """The study file for a built-in study's name, or the user's own study file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"Expected a study file at {str(p)!r}, but there is none.")
        return p
    studies = {s.name: s.path for s in builtin_studies()}
    if str(name_or_path) not in studies:
        raise ConfigError(
            f"Unknown study {str(name_or_path)!r}.{did_you_mean(str(name_or_path), studies)} "
            f"Built-in studies: {', '.join(studies)} (gradinv study list); "
            "or give a path to a study .toml file."
        )
    return studies[str(name_or_path)]
