"""Entry point of the ``gradinv`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gradinv import __version__
from gradinv.errors import GradinvError

#: command modules in the order ``gradinv --help`` lists them; other modules of gradinv.cli that
#: define ``add_parser`` are added after these (new commands need no edit here)
ORDER = ("demo", "attack", "list_cmd", "catalog")


def build_parser() -> argparse.ArgumentParser:
    import gradinv.cli as pkg
    from gradinv._discovery import import_submodules

    modules = {m.__name__.rsplit(".", 1)[1]: m for m in import_submodules(pkg, skip=("app", "common"))}
    parser = argparse.ArgumentParser(
        prog="gradinv",
        description="Gradient inversion attacks and defenses in federated learning.",
    )
    parser.add_argument("--version", action="version", version=f"gradinv {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = [n for n in ORDER if n in modules] + sorted(set(modules) - set(ORDER))
    for name in names:
        if hasattr(modules[name], "add_parser"):
            modules[name].add_parser(sub)
    return parser


def _sleep_idle_threads() -> None:
    """Make idle OpenMP threads sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE``) before torch loads
    its OpenMP runtime.

    On a machine whose cores other processes also use, spinning threads steal the cores the working
    threads need. Measured on 2 cores shared with other busy processes: the demo took 33 min with
    spinning and 2:05 without; one DLG step 9x faster, one Inverting Gradients step 20x. On idle cores
    spinning is somewhat faster (up to ~2x per step here), but the load of a machine changes during a
    run, and the passive policy bounds the worst case. Results do not change: same threads, same
    reductions. An ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` already in the environment wins."""
    if "torch" in sys.modules:  # too late: the runtime read its settings (e.g. main() called in-process)
        return
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; bad input prints one clear error (no traceback) and returns 2."""
    _sleep_idle_threads()
    from gradinv.cli.common import setup_logging

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a flag argparse refused (it printed why)
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except GradinvError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # a file-system problem outside gradinv's checks (permissions, disk full, a path that vanished)
        if args.verbose >= 2:
            raise
        where = f" {e.filename!r}" if e.filename else ""
        print(
            f"error: Expected to read or write{where}, but the operating system refused: "
            f"{e.strerror or e}. Check the path, its permissions and the free disk space "
            "(-vv shows the traceback).",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
