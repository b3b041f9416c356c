"""``gradinv list``: models, attacks (with their threat-model requirements), label recovery methods,
threat models A–H, assumption levels, metrics, data sources, initialisation schemes, aggregations and
defenses (with their stage and parameters)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gradinv.attacks import ATTACKS, LABEL_METHODS
from gradinv.attacks.labels import AUTO_DESCRIPTION
from gradinv.data import NORMALIZATIONS, SOURCE_FORMS
from gradinv.defenses import DEFENSES
from gradinv.fl import AGGREGATORS
from gradinv.metrics import METRICS
from gradinv.models import INIT_SCHEMES, MODELS
from gradinv.threat import LEVELS, THREAT_MODELS, Knowledge, weakest_granting

SECTIONS = ("models", "attacks", "labels", "threats", "metrics", "data", "inits", "aggregations", "defenses")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list models, attacks, threat models, metrics, data sources, defenses")
    p.add_argument("what", nargs="?", choices=SECTIONS, help="one section only")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def catalog() -> dict[str, Any]:
    """Everything ``gradinv list`` shows, as plain data."""
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


def _print_text(cat: dict[str, Any], what: str | None) -> None:
    def show(section: str) -> bool:
        return what is None or what == section

    if show("models"):
        print("MODELS (gradinv attack --model NAME)")
        for m in cat["models"]:
            opts = f" options: {', '.join(m['options'])}" if m["options"] else ""
            print(f"  {m['name']:<10} {m['description']}")
            print(f"  {'':<10} init {m['default_init']}, normalisation {m['default_normalization']}.{opts}")
        print()
    if show("attacks"):
        print("ATTACKS (requirements -> weakest threat model granting them)")
        for a in cat["attacks"]:
            print(
                f"  {a['name']:<20} {a['family']:<13} needs {', '.join(a['requires'])} "
                f"-> {a['weakest_threat_model']}"
            )
            print(f"  {'':<20} {a['paper']}")
        print()
    if show("labels"):
        print("LABEL RECOVERY (attack option labels = NAME)")
        for m in cat["labels"]:
            print(
                f"  {m['name']:<10} {m['description']}" + (f" [{m['assumption']}]" if m["assumption"] else "")
            )
        print()
    if show("threats"):
        print("THREAT MODELS (Carletti et al., USENIX Security 2025); add/remove flags with +flag/-flag")
        for t in cat["threats"]:
            print(f"  {t['id']}  {t['name']:<34} {', '.join(t['grants'])}")
        print("  flags expose:")
        for k, v in cat["knowledge"].items():
            print(f"    {k:<25} {v}")
        print("  assumption levels of Du et al. (USENIX Security 2025) as flags:")
        for lvl, flags in cat["levels"].items():
            print(f"    level {lvl}: {', '.join(flags) or '(priors: always available)'}")
        print()
    if show("metrics"):
        print("METRICS (all computed after Hungarian matching of reconstructions to ground truth)")
        for m in cat["metrics"]:
            arrow = "higher better" if m["higher_is_better"] else "lower better"
            print(f"  {m['name']:<15} {arrow:<13} {m['title']}: {m['description']}")
            if m["needs"]:
                print(f"  {'':<15} {'':<13} needs: {', '.join(m['needs'])}")
        print()
    if show("data"):
        print("DATA SOURCES ([data] source = ...)")
        for d in cat["data"]:
            print(f"  {d['form']:<20} {d['description']}")
        print(f"  normalisations: {', '.join(cat['normalizations'])}")
        print()
    if show("inits"):
        print("INITIALISATIONS ([model] init = ...)")
        for k, v in cat["inits"].items():
            print(f"  {k:<10} {v}")
        print()
    if show("aggregations"):
        print("AGGREGATION ([server] aggregation = ...)")
        for a in cat["aggregations"]:
            print(f"  {a['name']:<10} server sees individual updates: {a['reveals_individual']}")
        print()
    if show("defenses"):
        print("DEFENSES ([[defenses]] name = NAME, then parameters; applied in the order given)")
        for d in cat["defenses"]:
            params = ", ".join(f"{k}={v!r}" for k, v in d["parameters"].items())
            print(f"  {d['name']:<15} {d['stage']:<9} {d['description']}")
            print(f"  {'':<15} {'':<9} parameters: {params or '(none)'}")
            print(f"  {'':<15} {'':<9} {d['paper']}")


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
