"""Helpers shared by CLI commands: progress (bars or log lines), output folders, summaries, logging."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

from gradinv._checks import existing_file
from gradinv.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover  (torch and the registries load only when a command runs)
    from gradinv.experiment import DryRun, ExperimentResult

#: seconds between two progress lines when stderr is not a terminal
PROGRESS_INTERVAL = 10.0


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("gradinv").setLevel(level)


# --------------------------------------------------------------------------------------------------
# Output folders
# --------------------------------------------------------------------------------------------------


def prepare_out_dir(path: str | os.PathLike[str], *, option: str = "--out", create: bool = True) -> Path:
    """Check (and with ``create`` make) the output folder before any work starts.

    Raises :class:`ConfigError` when ``path`` is a file, lies under a file, or cannot be written to, so
    a run never computes for minutes and then fails to save its results."""
    p = Path(path).expanduser()
    existing = p
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == p else f"lies under {str(existing)!r}, which is a file"
        raise ConfigError(
            f"Expected {option} to be a directory, but {str(p)!r} {where}. Choose another output "
            f"directory ({option} DIR) or move the file away."
        )
    if not create:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(
                f"Expected a writable output directory ({option}), but {str(existing)!r} is not writable. "
                f"Choose a directory you can write to ({option} DIR)."
            )
        return p
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".gradinv-write-test-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(
            f"Expected a writable output directory ({option}), but {str(p)!r} could not be created or "
            f"written to: {err.strerror or err}. Choose a directory you can write to ({option} DIR)."
        ) from None
    return p


# --------------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------------


def is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def timestamp(now: float | None = None) -> str:
    """The wall-clock time as ``[HH:MM:SS]``, the prefix of every progress line."""
    return time.strftime("[%H:%M:%S]", time.localtime(now))


def format_duration(seconds: float) -> str:
    """``42`` -> ``0:42``, ``3725`` -> ``1:02:05``."""
    if not math.isfinite(seconds):
        return "?"
    total = max(0, round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressLines:
    """Progress as plain timestamped lines (for logs, CI, ``| tee``, notebooks), at most one every
    ``interval`` seconds plus the first and the last::

        [00:41:07] dlg 120/300 loss 0.0123 eta 0:42
    """

    def __init__(
        self,
        desc: str,
        *,
        stream: TextIO | None = None,
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desc = desc
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self._start: tuple[float, int] | None = None
        self._last: float | None = None
        self._done = False

    def eta(self, step: int, total: int | None) -> float | None:
        """Seconds left, from the rate since the first update (None until it can be estimated)."""
        if self._start is None or not total:
            return None
        t0, s0 = self._start
        elapsed, steps = self.clock() - t0, step - s0
        if steps <= 0 or elapsed <= 0:
            return None
        return max(0, total - step) * elapsed / steps

    def update(self, step: int, total: int | None = None, detail: str = "") -> None:
        now = self.clock()
        if self._start is None:
            self._start = (now, step)
        final = bool(total) and step >= (total or 0)
        if self._done or (not final and self._last is not None and now - self._last < self.interval):
            return
        self._last = now
        self._done = final
        parts = [timestamp(), self.desc, f"{step}/{total}" if total else str(step)]
        if detail:
            parts.append(detail)
        if final:
            parts.append(f"done in {format_duration(now - self._start[0])}")
        else:
            eta = self.eta(step, total)
            if eta is not None:
                parts.append(f"eta {format_duration(eta)}")
        print(" ".join(parts), file=self.stream or sys.stderr, flush=True)

    def message(self, text: str) -> None:
        """A timestamped line that is not rate-limited (a stage starts or ends)."""
        print(f"{timestamp()} {text}", file=self.stream or sys.stderr, flush=True)


@contextmanager
def progress_bar(
    desc: str,
    *,
    enabled: bool = True,
    stream: TextIO | None = None,
    interval: float = PROGRESS_INTERVAL,
) -> Iterator[Callable[[int, int, float], None] | None]:
    """Progress driven by an attack's ``progress(step, total, best_loss)`` callback: a tqdm bar with
    an ETA on a terminal, timestamped lines (:class:`ProgressLines`) otherwise."""
    if not enabled:
        yield None
        return
    out = stream or sys.stderr
    if not is_terminal(out):
        lines = ProgressLines(desc, stream=out, interval=interval)

        def log(step: int, total: int, loss: float) -> None:
            lines.update(step, total, f"loss {loss:.4g}")

        yield log
        return
    bar = tqdm(desc=desc, unit="it", leave=False, dynamic_ncols=True, file=out)

    def update(step: int, total: int, loss: float) -> None:
        changed = bar.total != total
        if changed:
            bar.total = total  # redrawn at once: the bar, its ETA and the total show from the start
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.4g}", refresh=changed)

    try:
        yield update
    finally:
        bar.close()


def _names(labels: list[int], names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names[i] if 0 <= i < len(names) else str(i) for i in sorted(labels)) or "none"


def print_summary(r: ExperimentResult, *, out: TextIO | None = None) -> None:
    """A compact human-readable summary of one experiment: metrics in their registered formats (the
    same as in report.html), labels, and what the iteration count counts::

        DLG on lenet | fedsgd | 32x32 | N=1 | threat B (Informed Eavesdropper)
          PSNR (dB)        mean     6.41   per image: 6.41
          ...
          2 L-BFGS steps (40 objective evaluations) in 4.42 s (110.6 ms per evaluation)
    """
    from gradinv.report.format import format_metric, format_number, format_seconds, iteration_counts
    from gradinv.report.html import metric_title

    out = out or sys.stdout
    ev, res = r.evaluation, r.result
    print(
        f"{r.attack.title} on {r.config.model.name} | {r.config.training.protocol} | "
        f"{r.scenario['image_shape'][1]}x{r.scenario['image_shape'][2]} | N={len(r.truth.labels)} | "
        f"threat {r.threat.id} ({r.threat.name})",
        file=out,
    )
    titles = {name: metric_title(name, m.title) for name, m in ev.metrics.items()}
    unavailable = {name: metric_title(name) for name in ev.unavailable}
    width = max((len(t) for t in (*titles.values(), *unavailable.values())), default=16)
    means = {name: format_metric(name, m.mean) for name, m in ev.metrics.items()}
    mean_w = max((len(v) for v in means.values()), default=8)
    for name, m in ev.metrics.items():
        per = ", ".join(format_metric(name, v) for v in m.per_image)
        print(f"  {titles[name]:<{width}}  mean {means[name]:>{mean_w}}   per image: {per}", file=out)
    for name, why in ev.unavailable.items():
        print(f"  {unavailable[name]:<{width}}  unavailable: {why.split('. ')[0].rstrip('.')}.", file=out)
    names = r.truth.class_names
    rec_labels = res.reconstruction.labels
    rec = _names(rec_labels.tolist(), names) if rec_labels is not None else "n/a"
    print(
        f"  labels: true {_names(r.truth.labels.tolist(), names)} | recovered {rec} "
        f"({res.reconstruction.label_method})",
        file=out,
    )
    counts = iteration_counts(res, family=r.attack.family)
    print(
        f"  {counts.text} in {format_seconds(res.seconds)} s "
        f"({format_number(res.seconds_per_iteration * 1000)} ms per {counts.per})",
        file=out,
    )


# --------------------------------------------------------------------------------------------------
# Aligned tables (the dry run)
# --------------------------------------------------------------------------------------------------


Row = tuple[str, str] | tuple[str, str, str]


def format_rows(rows: Sequence[Row], *, width: int | None = None) -> list[str]:
    """``key  value`` rows with the values in one column, long values wrapped under their column
    (``width``: default the terminal's, 100 when not a terminal).

    A key starting with spaces is a sub-row of the row above; an empty key continues the value
    above. A row ``(key, tag, text)`` aligns its tags in a column of their own and wraps the text
    under itself.

    >>> rows = [("threat", "B"), ("  basic", "granted", "sizes"), ("  labels", "not granted", "a multiset")]
    >>> print("\\n".join(format_rows(rows)))
    threat    B
      basic   granted      sizes
      labels  not granted  a multiset
    """
    import shutil
    import textwrap

    total = width or shutil.get_terminal_size((100, 24)).columns
    key_w = max((len(r[0]) for r in rows), default=0)
    tag_w = max((len(r[1]) for r in rows if len(r) == 3), default=0)
    lines = []
    for row in rows:
        key, value = row[0], row[-1]
        lead = f"{row[1]:<{tag_w}}  " if len(row) == 3 else ""
        text_w = max(30, total - key_w - 2 - len(lead))
        wrapped = textwrap.wrap(value, text_w, break_on_hyphens=False) or [""]
        lines.append(f"{key:<{key_w}}  {lead}{wrapped[0]}".rstrip())
        lines += [" " * (key_w + 2 + len(lead)) + w for w in wrapped[1:]]
    return lines


def _value(v: object) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return repr(v)  # a parameter as configured (1.0, 0.0001, 1e-05), not rounded
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}" if v else "{}"
    return str(v)


def dry_run_rows(plan: DryRun) -> list[Row]:
    """The rows :func:`print_dry_run` prints: scenario, threat model with every flag, the attacker's
    view, the attack with its parameters, and the verdict."""
    from gradinv.experiment import describe_view
    from gradinv.report.format import applicability_text
    from gradinv.threat import Knowledge

    sc, checked = plan.scenario, plan.checked
    cfg, threat, attack = sc.config, checked.threat, checked.attack
    victim = cfg.server.victim
    batch = sc.batches[victim]
    c, h, w = batch.input_shape
    defenses = ", ".join(type(d).__name__ for d in sc.defenses) or "none"
    tr = cfg.training
    training = tr.protocol + (
        f", {tr.epochs} epoch(s), batch size {tr.batch_size or 'all'}, lr {_value(tr.lr)}"
        if tr.protocol == "fedavg"
        else ""
    )
    source = cfg.data.source
    rows: list[Row] = [
        ("scenario", ""),
        ("  data", sc.dataset.name if source == sc.dataset.name else f"{sc.dataset.name} ({source})"),
        (
            "  victim batch",
            f"client {victim}: {batch.size} image(s) of {c}x{h}x{w}, indices "
            f"{_value(list(sc.client_indices[victim]))}",
        ),
        ("  model", f"{cfg.model.name}, {sc.num_classes} classes, normalization {sc.normalization}"),
        ("  training", training),
        ("  clients", f"{cfg.server.num_clients}, aggregation {cfg.server.aggregation}"),
        ("  defenses", defenses),
        ("threat model", f"{threat.id} ({threat.name})"),
    ]
    pre = sc.pretraining
    total = cfg.pretrain.training_rounds
    if pre is not None and total:
        n_train, n_test = len(pre.train_indices), len(pre.test_indices)
        more = f" ({total} in all: the final accuracy after the last)" if total > pre.rounds else ""
        rows.insert(
            -1,
            (
                "  pretraining",
                f"{pre.rounds} FedAvg round(s){more} on {n_train} training / {n_test} test rows first "
                "(not run in a dry run)",
            ),
        )
    if threat.applicability:
        rows.append(("  applicability", applicability_text(threat.applicability)))
    for k in Knowledge:
        status = "granted" if threat.allows(k) else "not granted"
        rows.append((f"  {k.value}", status, k.exposes))
    rows.append(("attacker's view", ""))
    for key, v in describe_view(checked.view).items():
        if key not in ("threat_model", "granted"):  # shown with the threat model
            rows.append((f"  {key}", _value(v)))
    rows.append(("attack", f"{attack.title} ({attack.name}), {attack.family}"))
    rows.append(("  requires", ", ".join(r.knowledge.value for r in attack.requirements()) or "nothing"))
    for key, v in attack.config.to_dict().items():
        rows.append((f"  {key}", _value(v)))
    if checked.problems:
        rows.append(("result", f"attack refused: {checked.problems[0]}"))
        rows += [("", p) for p in checked.problems[1:]]
    else:
        rows.append(("result", f"{attack.title}: ok, would run with the parameters above"))
    return rows


def print_dry_run(plan: DryRun, *, out: TextIO | None = None) -> int:
    """Print the dry run as an aligned table; returns the exit code (0 ok, 2 refused)."""
    for line in format_rows(dry_run_rows(plan)):
        print(line, file=out or sys.stdout)
    return 2 if plan.checked.problems else 0


# --------------------------------------------------------------------------------------------------
# Parsing command-line values
# --------------------------------------------------------------------------------------------------


def parse_int(raw: str, flag: str, *, minimum: int | None = None) -> int:
    """``raw`` as an integer (``>= minimum``), or a :class:`ConfigError` naming ``flag``."""
    bound = f" >= {minimum}" if minimum is not None else ""
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ConfigError(
            f"Expected {flag} to be an integer{bound}, but got {raw!r}. Write a whole number, e.g. "
            f"{flag} {max(minimum or 0, 1)}."
        ) from None
    if minimum is not None and value < minimum:
        raise ConfigError(
            f"Expected {flag} to be an integer{bound}, but got {value}. Use {flag} {minimum} or more."
        )
    return value


def parse_float(raw: str, flag: str) -> float:
    """``raw`` as a finite number, or a :class:`ConfigError` naming ``flag``."""
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise ConfigError(
            f"Expected {flag} to be a number, but got {raw!r}. Write e.g. {flag} 0.01 or {flag} 1e-3."
        ) from None
    if not math.isfinite(value):
        raise ConfigError(f"Expected {flag} to be a finite number, but got {raw!r}. Give a finite value.")
    return value


def parse_ints(raw: str, flag: str) -> list[int]:
    """A comma-separated list of integers (``"0,3,7"``)."""
    items = [v for v in str(raw).replace(" ", "").split(",") if v]
    bad = []
    for v in items:
        try:
            int(v)
        except ValueError:
            bad.append(v)
    if bad or not items:
        what = f"{', '.join(repr(b) for b in bad)} in {raw!r}" if bad else repr(raw)
        raise ConfigError(
            f"Expected {flag} to be comma-separated integers, but got {what}. Write e.g. {flag} 0,3,7."
        )
    return [int(v) for v in items]


def parse_toml_value(raw: str) -> object:
    """A TOML value (``16``, ``1e-3``, ``[64, 32]``, ``"relu"``, ``true``), or the raw string."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def parse_sets(items: list[str], *, flag: str = "--set") -> dict[str, object]:
    """``["attack.tv=1e-3", ...]`` -> ``{"attack.tv": 0.001, ...}``."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key.strip(" .") or not raw.strip():
            raise ConfigError(
                f"Expected {flag} SECTION.KEY=VALUE, but got {item!r}. "
                f"Write e.g. {flag} attack.iterations=100."
            )
        out[key.strip()] = parse_toml_value(raw.strip())
    return out


def int_type(minimum: int | None = None, *, flag: str = "the value") -> Callable[[str], int]:
    """An argparse ``type=`` that reads an integer with a clear message (argparse exits with code 2)."""
    import argparse

    def parse(raw: str) -> int:
        try:
            return parse_int(raw, flag, minimum=minimum)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def check_text_file(path: str | os.PathLike[str], *, option: str = "--config") -> None:
    """Refuse a config path that is not a UTF-8 text file (a binary file, a directory) up front."""
    p = existing_file(path, expected=f"a TOML config file ({option})")
    try:
        p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"Expected a UTF-8 TOML text file at {str(p)!r} ({option}), but byte {err.start} is not text "
            "(is this a binary file?). Give the path of a .toml config, e.g. configs/dlg_lenet.toml."
        ) from None
    except OSError as err:
        raise ConfigError(
            f"Expected a readable TOML config file at {str(p)!r} ({option}), but reading it failed: "
            f"{err.strerror or err}. Check the path and its permissions."
        ) from None


DEVICES = ("auto", "cpu", "cuda")


def choice_type(choices: tuple[str, ...], *, flag: str) -> Callable[[str], str]:
    """An argparse ``type=`` for a fixed set of words, refusing others in the error template."""
    import argparse

    from gradinv.errors import did_you_mean

    def parse(raw: str) -> str:
        if raw in choices:
            return raw
        raise argparse.ArgumentTypeError(
            f"Expected {flag} to be one of {', '.join(choices)}, but got {raw!r}.{did_you_mean(raw, choices)}"
        )

    return parse


def add_command(
    sub: argparse._SubParsersAction, name: str, help_: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """The parser of ``gradinv NAME``: ``help_`` is its line in ``gradinv --help``, ``description`` heads
    its own help, and ``epilog`` (examples) follows its flags as written, line breaks kept."""
    formatter = argparse.RawDescriptionHelpFormatter if epilog else argparse.HelpFormatter
    return sub.add_parser(name, help=help_, description=description, epilog=epilog, formatter_class=formatter)


def doc_examples(doc: str | None) -> str | None:
    """What follows ``Examples::`` in a command module's docstring (the epilog of its help)."""
    return doc.split("Examples::", 1)[1] if doc else None


def add_device_flag(p: argparse.ArgumentParser, help_: str) -> None:
    """``--device {auto,cpu,cuda}`` with a clear message for other values."""
    p.add_argument(
        "--device",
        type=choice_type(DEVICES, flag="--device"),
        metavar="{" + ",".join(DEVICES) + "}",
        help=help_,
    )


def add_run_flags(p: argparse.ArgumentParser, *, set_example: str, dry_run: str) -> None:
    """The flags every run command shares: ``--set``, ``--dry-run``, ``--no-progress``."""
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"set any config key; VALUE is parsed as TOML (e.g. --set {set_example})",
    )
    p.add_argument("--dry-run", action="store_true", help=dry_run)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
