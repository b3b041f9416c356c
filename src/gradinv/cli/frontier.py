"""``gradinv frontier``: the privacy–utility frontier of defenses, an alias of ``gradinv study run
frontier`` (the built-in study; :mod:`gradinv.studies.tradeoff` draws and ranks the frontier).

``gradinv frontier`` runs the built-in ``frontier`` study; ``gradinv frontier FILE`` (or
``--config FILE``) a study file of one's own; every flag of ``gradinv study run`` applies.
``--report-only`` is ``gradinv study report OUT``. A config of the earlier frontier runner (its
``[fl]``, ``[victim]``, ``[[attacks]]`` and ``[frontier]`` tables) is refused with the mapping of its
keys onto a study file."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradinv.cli.common import add_command, check_text_file
from gradinv.cli.study import add_study_run_flags, run_report, run_study_cmd
from gradinv.errors import ConfigError

#: the folder ``gradinv frontier`` writes to without --out
DEFAULT_OUT = Path("gradinv-out/frontier")

HELP = "privacy–utility frontier of defenses (= gradinv study run frontier)"
DESCRIPTION = (
    "Train with FedAvg under each defense setting (the final test accuracy is the utility), attack a "
    "defended update of an early round (the leakage), and draw and rank the frontier. An alias of `gradinv "
    "study run frontier` (or of a study FILE); every flag of `gradinv study run` applies."
)

#: tables only a config of the earlier frontier runner has
_LEGACY_TABLES = ("fl", "victim", "attacks", "frontier", "run")

MIGRATION = """Frontier configs are now study files, run by the study engine (resumable SQLite store, process
pool and Ray executors). The built-in study `frontier` is the former configs/frontier_digits.toml
(`gradinv frontier`), configs/frontier_cifar10.toml the CIFAR-10 one. To move a config of your own,
add a [study] table (name, metrics = ["final_accuracy", "psnr", ...], rows = ["defense"]) and map:
  [fl] rounds                              -> [pretrain] total_rounds (the final accuracy after it)
  [fl] num_clients, clients_per_round,
       split, seed, eval_every             -> [pretrain] clients, clients_per_round, split, seed, eval_every
  [data] train_images                      -> [pretrain] images_per_client = train_images / clients
  [data] test_source / test_fraction       -> [pretrain] test_images (held-out rows of [data] source)
  [victim] round                           -> [pretrain] rounds (the attacked round)
  [victim] num_images                      -> [data] num_images
  [victim] clients                         -> [study] repeats (each repeat a new victim batch)
  [[attacks]] (several)                    -> [attack] (one), or an axis named "attack" whose values
                                              set the whole [attack] table, in [study] columns
  [[defenses]] name, param, values         -> [[axes]] name = "defense", one value per setting, e.g.
      { label = "qsgd 4 bits", set = { defenses = [{ name = "qsgd", bits = 4 }] } }
      and { label = "none", set = { defenses = [] } }
  [frontier] leakage, max_accuracy_drop,
             leakage_threshold             -> [study.frontier] axis = "defense", leakage,
                                              max_utility_drop, leakage_threshold
  [run] out                                -> --out
See docs/frontier.md and src/gradinv/studies/builtin/frontier.toml."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "frontier", HELP, DESCRIPTION)
    p.add_argument(
        "study", nargs="?", metavar="NAME|FILE", help="a study name or file (default: the built-in frontier)"
    )
    p.add_argument("--config", "-c", type=Path, help="a study file (the same as NAME|FILE)")
    p.add_argument("--out", "-o", type=Path, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument(
        "--report-only", action="store_true", help="compute nothing; rebuild the outputs from the store"
    )
    add_study_run_flags(p)
    p.set_defaults(func=run)


def check_not_legacy(path: Path) -> None:
    """Refuse a config of the earlier frontier runner with the migration (a missing file, a study file
    or an experiment file are left to the study loader, which names what is wrong)."""
    from gradinv.config import read_toml

    if not path.is_file():
        return
    check_text_file(path, option="NAME|FILE")
    doc = read_toml(path)
    legacy = [t for t in _LEGACY_TABLES if t in doc]
    if "study" not in doc and legacy:
        tables = ", ".join(f"[{t}]" for t in legacy)
        raise ConfigError(
            f"Expected a study file (with a [study] table), but {path} is a config of the earlier frontier "
            f"runner (it has {tables}). {MIGRATION}"
        )


def run(args: argparse.Namespace) -> int:
    if args.study is not None and args.config is not None:
        raise ConfigError(
            f"Expected one study, but got both {args.study!r} and --config {str(args.config)!r}. Give one."
        )
    study = str(args.config) if args.config is not None else (args.study or "frontier")
    if args.out is None:
        args.out = DEFAULT_OUT
    if args.report_only:
        args.dir = args.out
        return run_report(args)
    check_not_legacy(Path(study))
    args.study = study
    return run_study_cmd(args)
