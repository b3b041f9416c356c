"""``gradinv list``: models, attacks (with their threat-model requirements), label recovery methods,
threat models A–H, assumption levels, metrics, data sources, initialisation schemes, aggregations and
defenses (with their stage and parameters)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list models, attacks, threat models, metrics, data sources, defenses")
    p.add_argument("what", nargs="?", choices=SECTIONS, help="one section only")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def catalog() -> dict[str, Any]:
    """Everything ``gradinv list`` shows, as plain data."""
    from gradinv.attacks import ATTACKS, LABEL_METHODS
    from gradinv.attacks.labels import AUTO_DESCRIPTION
    from gradinv.data import NORMALIZATIONS, SOURCE_FORMS
    from gradinv.defenses import DEFENSES
    from gradinv.fl import AGGREGATORS
    from gradinv.metrics import METRICS
    from gradinv.models import INIT_SCHEMES, MODELS
    from gradinv.threat import LEVELS, THREAT_MODELS, Knowledge, weakest_granting

    attacks = []
    for name, cls in ATTACKS.items():
        reqs = cls.base_requirements
        weakest = weakest_granting(r.knowledge for r in reqs)
        attacks.append(
            {
                "name": name,
                "title": cls.title,
                "family": cls.family,
                "active": cls.active,
                "requires": [r.knowledge.value for r in reqs],
                "weakest_threat_model": weakest.id if weakest else None,
                "paper": cls.paper,
                "parameters": cls.config_cls().to_dict(),
            }
        )
    return {
        "models": [
            {
                "name": n,
                "description": s.description,
                "paper": s.paper,
                "default_init": s.default_init,
                "default_normalization": s.default_normalization,
                "options": list(s.options),
                "pretrained": s.pretrained,
            }
            for n, s in MODELS.items()
        ],
        "attacks": attacks,
        "labels": [
            {"name": m.name, "description": m.description, "paper": m.paper, "assumption": m.assumption}
            for _, m in LABEL_METHODS.items()
        ]
        + [
            {
                "name": "known",
                "description": "the true labels as a multiset",
                "paper": "",
                "assumption": "threat model grants labels (E, or +labels)",
            },
            {
                "name": "auto",
                "description": AUTO_DESCRIPTION,
                "paper": "",
                "assumption": "",
            },
        ],
        "threats": [
            {
                "id": t.id,
                "name": t.name,
                "grants": [k.value for k in Knowledge if k in t.grants],
                "applicability": t.applicability,
            }
            for t in THREAT_MODELS.values()
        ],
        "levels": {str(lvl): sorted(k.value for k in flags) for lvl, flags in LEVELS.items()},
        "knowledge": {k.value: k.exposes for k in Knowledge},
        "metrics": [
            {
                "name": m.name,
                "title": m.display_title,
                "unit": m.unit,
                "higher_is_better": m.higher_is_better,
                "reduction": m.reduction,
                "description": m.description,
                "needs_weights": m.needs_weights,
                "needs": sorted(n.value for n in m.needs),
            }
            for m in METRICS.values()
        ],
        "data": [{"form": f, "description": d} for f, d in SOURCE_FORMS],
        "normalizations": sorted(NORMALIZATIONS),
        "inits": dict(INIT_SCHEMES),
        "aggregations": [
            {"name": n, "reveals_individual": c.reveals_individual} for n, c in AGGREGATORS.items()
        ],
        "defenses": [cls.describe() for _, cls in DEFENSES.items()],
    }


def _models_text(cat: dict[str, Any]) -> list[str]:
    lines = ["MODELS (gradinv attack --model NAME)"]
    for m in cat["models"]:
        opts = f" options: {', '.join(m['options'])}" if m["options"] else ""
        lines += [
            f"  {m['name']:<10} {m['description']}",
            f"  {'':<10} init {m['default_init']}, normalisation {m['default_normalization']}.{opts}",
        ]
    return lines


def _attacks_text(cat: dict[str, Any]) -> list[str]:
    lines = ["ATTACKS (requirements -> weakest threat model granting them)"]
    for a in cat["attacks"]:
        needs = ", ".join(a["requires"])
        lines += [
            f"  {a['name']:<20} {a['family']:<13} needs {needs} -> {a['weakest_threat_model']}",
            f"  {'':<20} {a['paper']}",
        ]
    return lines


def _labels_text(cat: dict[str, Any]) -> list[str]:
    return ["LABEL RECOVERY (attack option labels = NAME)"] + [
        f"  {m['name']:<10} {m['description']}" + (f" [{m['assumption']}]" if m["assumption"] else "")
        for m in cat["labels"]
    ]


def _threats_text(cat: dict[str, Any]) -> list[str]:
    return [
        "THREAT MODELS (Carletti et al., USENIX Security 2025); add/remove flags with +flag/-flag",
        *(f"  {t['id']}  {t['name']:<34} {', '.join(t['grants'])}" for t in cat["threats"]),
        "  flags expose:",
        *(f"    {k:<25} {v}" for k, v in cat["knowledge"].items()),
        "  assumption levels of Du et al. (USENIX Security 2025) as flags:",
        *(
            f"    level {lvl}: {', '.join(flags) or '(priors: always available)'}"
            for lvl, flags in cat["levels"].items()
        ),
    ]


def _metrics_text(cat: dict[str, Any]) -> list[str]:
    lines = ["METRICS (all computed after Hungarian matching of reconstructions to ground truth)"]
    for m in cat["metrics"]:
        arrow = "higher better" if m["higher_is_better"] else "lower better"
        lines.append(f"  {m['name']:<15} {arrow:<13} {m['title']}: {m['description']}")
        if m["needs"]:
            lines.append(f"  {'':<15} {'':<13} needs: {', '.join(m['needs'])}")
    return lines


def _data_text(cat: dict[str, Any]) -> list[str]:
    return [
        "DATA SOURCES ([data] source = ...)",
        *(f"  {d['form']:<20} {d['description']}" for d in cat["data"]),
        f"  normalisations: {', '.join(cat['normalizations'])}",
    ]


def _inits_text(cat: dict[str, Any]) -> list[str]:
    return ["INITIALISATIONS ([model] init = ...)", *(f"  {k:<10} {v}" for k, v in cat["inits"].items())]


def _aggregations_text(cat: dict[str, Any]) -> list[str]:
    return ["AGGREGATION ([server] aggregation = ...)"] + [
        f"  {a['name']:<10} server sees individual updates: {a['reveals_individual']}"
        for a in cat["aggregations"]
    ]


def _defenses_text(cat: dict[str, Any]) -> list[str]:
    lines = ["DEFENSES ([[defenses]] name = NAME, then parameters; applied in the order given)"]
    for d in cat["defenses"]:
        params = ", ".join(f"{k}={v!r}" for k, v in d["parameters"].items())
        lines += [
            f"  {d['name']:<15} {d['stage']:<9} {d['description']}",
            f"  {'':<15} {'':<9} parameters: {params or '(none)'}",
            f"  {'':<15} {'':<9} {d['paper']}",
        ]
    return lines


#: section -> its lines in the text listing (heading first), in the order they are shown
_TEXT: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "models": _models_text,
    "attacks": _attacks_text,
    "labels": _labels_text,
    "threats": _threats_text,
    "metrics": _metrics_text,
    "data": _data_text,
    "inits": _inits_text,
    "aggregations": _aggregations_text,
    "defenses": _defenses_text,
}
SECTIONS = tuple(_TEXT)


def _print_text(cat: dict[str, Any], what: str | None) -> None:
    for section, lines in _TEXT.items():
        if what in (None, section):
            print("\n".join(lines(cat)))
            if section != SECTIONS[-1]:  # a blank line after every section but the last
                print()


def run(args: argparse.Namespace) -> int:
    cat = catalog()
    if args.json:
        if args.what:
            key = "levels" if args.what == "threats" else args.what
            print(
                json.dumps(
                    {args.what: cat[args.what], **({"levels": cat["levels"]} if key == "levels" else {})},
                    indent=2,
                )
            )
        else:
            print(json.dumps(cat, indent=2))
    else:
        _print_text(cat, args.what)
    return 0
