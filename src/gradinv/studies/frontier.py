"""The privacy–utility frontier of client-side defenses in multi-round federated training.

A CPU-scaled version of the post-processing study of Du, Hu, Wang, Sun, Gong, Ren, Chen, "SoK: On
Gradient Leakage in Federated Learning", USENIX Security 2025 (§6, Fig. 11, Appx. B-III / C-III):
for every defense and every strength (plus "no defense"),

1. **utility** — train the model with FedAvg for ``[fl] rounds`` rounds with the defense on every
   client (:func:`gradinv.fl.training.train_federated`) and record the final test accuracy;
2. **leakage** — ``[victim] clients`` victim clients, each holding ``[victim] num_images`` training
   images, join round ``[victim] round`` with the same local training and defense; the server
   observes each victim's update under ``[threat]``, runs every configured attack on it, and the
   reconstructions are matched and scored (PSNR, SSIM, LPIPS when its weights are present, ST-LPIPS
   when configured, label accuracy, the BRR variants of ``[metrics] leakage``), then averaged over the
   victims.

Deviations from the paper (scaled for CPUs): a small model and a few rounds instead of ResNet-18 /
Swin over 100 clients; victims join one round as extra clients (the paper keeps one victim with
N = 10 in a pool of 100 clients); leakage is measured by PSNR by default (the paper uses LPIPS,
whose ImageNet backbone is often unavailable offline).

**Resumable.** Every finished point (defense, strength) is written atomically to
``OUT/points/<key>.json`` as soon as it finishes; a rerun loads the finished points and computes only
the missing ones, so Ctrl-C or a crash loses no finished point. The key hashes the point's defense
parameters and every setting that changes results (data, model, training, federation, victim,
threat, attacks, metrics): after such a change old points are ignored (and reported as stale), never
mixed in.

The config schema and the points it spans live in :mod:`gradinv.studies.frontier_config`.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

import gradinv
from gradinv.defenses.base import DefenseChain
from gradinv.errors import AttackRefused, DataError
from gradinv.fl import MaliciousServer, simulate_round
from gradinv.fl.training import RoundLog, VictimClient, train_federated
from gradinv.models.seeding import reseed
from gradinv.pipeline import ScoredAttack, attack_and_score
from gradinv.studies import frontier_config
from gradinv.studies.frontier_config import *  # noqa: F403  (the config schema, re-exported)
from gradinv.studies.frontier_config import AttackEntry, FrontierConfig, Point, jsonable
from gradinv.types import Batch

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.data.dataset import ImageDataset
    from gradinv.defenses.base import Defense
    from gradinv.types import GroundTruth


__all__ = [
    *frontier_config.__all__,
    "FrontierData",
    "FrontierEvent",
    "FrontierResult",
    "compute_point",
    "load_finished_points",
    "load_frontier_data",
    "run_frontier",
]

logger = logging.getLogger(__name__)

POINTS_DIR = "points"


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontierData:
    """The materialised data of a study: the regular clients' pool, the test set, the victims' batches."""

    train: Batch
    test: Batch
    victims: tuple[Batch, ...]
    num_classes: int
    dataset: str
    victim_indices: tuple[tuple[int, ...], ...]
    normalization: str

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "train_images": self.train.size,
            "test_images": self.test.size,
            "victim_indices": [list(v) for v in self.victim_indices],
            "victim_labels": [v.labels.tolist() for v in self.victims],
            "image_shape": list(self.train.input_shape),
            "num_classes": self.num_classes,
            "normalization": self.normalization,
        }


def _seeded_subset(n: int, cap: int | None, seed: int) -> np.ndarray:
    if cap is None or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def load_frontier_data(cfg: FrontierConfig) -> FrontierData:
    """Load ``[data]``, pick the victims' images, hold out or load the test set, cap the sizes."""
    from gradinv.data import check_labels, get_normalization, load_source, select_indices
    from gradinv.models import MODELS

    d, v = cfg.data, cfg.victim
    spec = MODELS.get(cfg.model.name)
    ds = load_source(d.source, download=d.download)
    channels = d.channels or ds.channels
    norm_name = spec.default_normalization if d.normalization == "auto" else d.normalization
    norm = get_normalization(norm_name, channels)
    num_classes = cfg.model.num_classes or ds.num_classes
    per = v.images_per_victim
    victim_idx = select_indices(
        ds.labels,
        num_images=None if v.indices is not None else v.clients * per,
        indices=v.indices,
        seed=v.seed,
        composition=v.composition,
        duplicates=v.duplicates,
    )
    rest = np.setdiff1d(np.arange(len(ds)), np.asarray(victim_idx))
    if d.test_source is not None:
        test_ds: ImageDataset = load_source(d.test_source, download=d.download)
        train_rows = rest
    else:
        perm = np.random.default_rng(d.seed + 1).permutation(rest)
        n_test = max(1, round(d.test_fraction * len(rest)))
        test_ds, train_rows = ds.subset(np.sort(perm[:n_test])), np.sort(perm[n_test:])
    train_rows = train_rows[_seeded_subset(len(train_rows), d.train_images, d.seed)]
    test_rows = _seeded_subset(len(test_ds), d.test_images, d.seed + 2)
    if len(train_rows) == 0:
        raise DataError(f"Expected training images besides the victim's, but {d.source!r} has none left.")
    for labels in (ds.labels[train_rows], test_ds.labels[test_rows], ds.labels[np.asarray(victim_idx)]):
        check_labels(labels, num_classes)

    groups = [victim_idx[k * per : (k + 1) * per] for k in range(v.clients)]

    def batch(source: ImageDataset, rows: Sequence[int] | np.ndarray) -> Batch:
        return source.to_batch(rows, image_size=d.image_size, channels=channels, normalization=norm)

    return FrontierData(
        train=batch(ds, train_rows),
        test=batch(test_ds, test_rows),
        victims=tuple(batch(ds, group) for group in groups),
        num_classes=num_classes,
        dataset=ds.name,
        victim_indices=tuple(tuple(int(i) for i in g) for g in groups),
        normalization=norm.name,
    )


# --------------------------------------------------------------------------------------------------
# One point
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontierEvent:
    """Progress of :func:`run_frontier`. ``kind``: ``skip`` (point already finished), ``start``,
    ``round`` (a training round finished: ``round_log``), ``attack`` (``step`` of ``steps`` of attack
    ``attack``), ``point`` (the point finished and was written: ``record``)."""

    kind: Literal["skip", "start", "round", "attack", "point"]
    index: int
    total: int
    point: Point
    round_log: RoundLog | None = None
    attack: str = ""
    step: int = 0
    steps: int = 0
    record: Mapping[str, Any] | None = None


ProgressFn = Callable[[FrontierEvent], None]


def _build_model(cfg: FrontierConfig, data: FrontierData) -> torch.nn.Module:
    from gradinv.models import build_model

    c, h, w = data.train.input_shape
    return build_model(
        cfg.model.name,
        num_classes=data.num_classes,
        in_channels=c,
        image_size=(h, w),
        init=cfg.model.init,
        seed=cfg.model.seed,
        checkpoint=cfg.model.checkpoint,
        **dict(cfg.model.options),
    )


def _thumbnail(truth: Tensor, recon: Tensor) -> str:
    from gradinv.report.grid import image_grid

    img = image_grid([truth.cpu(), recon.cpu()], scale=2, max_cols=8)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _attacked_round(
    server: MaliciousServer | None, truth: GroundTruth, cfg: FrontierConfig, defenses: Sequence[Defense]
) -> GroundTruth:
    """The victim's round as the attack meets it. A passive attack (no ``server``) observes the round
    of the honest training; an active one runs the server of that same round instead (the same global
    model, clients, batches and defenses), crafting the models it sends."""
    if server is None:
        return truth
    return simulate_round(
        truth.model,
        truth.batches,
        truth.training,
        num_classes=truth.num_classes,
        server=server,
        hooks=[DefenseChain.of(defenses) for _ in truth.batches],
        victim=truth.victim,
        round_index=cfg.victim.round,
    )


def _victim_record(scored: ScoredAttack) -> dict[str, Any]:
    ev, result = scored.evaluation, scored.result
    rec = result.reconstruction
    return {
        "metrics": {k: float(m.mean) for k, m in ev.metrics.items()},
        "per_image": {k: [float(v) for v in m.per_image] for k, m in ev.metrics.items()},
        "true_labels": scored.target.labels.tolist(),
        "recovered_labels": rec.labels.cpu().tolist() if rec.labels is not None else None,
        "label_method": rec.label_method,
        "iterations": result.iterations,
        "seconds": result.seconds,
    }


def _mean_metrics(victims: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each metric's mean over the victims that have it (NaN values ignored; +inf stays +inf)."""
    names = sorted({k for v in victims for k in v["metrics"]})
    out = {}
    for k in names:
        vals = [v["metrics"][k] for v in victims if k in v["metrics"] and not math.isnan(v["metrics"][k])]
        out[k] = sum(vals) / len(vals) if vals else math.nan
    return out


def _attack_record(
    entry: AttackEntry,
    truths: Sequence[GroundTruth],
    cfg: FrontierConfig,
    defenses: Sequence[Defense],
    *,
    device: torch.device,
    progress: Callable[[int, int, float], None] | None,
) -> dict[str, Any]:
    """Run attack ``entry`` on every victim through the attack-and-score stage; metrics are averaged
    over the victims. A refusal (threat model, structure) is recorded with its reason."""
    attack = entry.build()
    base: dict[str, Any] = {"label": entry.label, "attack": entry.name, "title": attack.title}
    threat = cfg.threat.resolve()
    runs: list[ScoredAttack] = []
    try:
        server = (
            MaliciousServer(
                attack,
                threat,
                num_classes=truths[0].num_classes,
                aggregator=cfg.fl.aggregation,
                options=cfg.fl.aggregation_options,
            )
            if attack.active
            else None
        )
        for truth in truths:
            attacked = _attacked_round(server, truth, cfg, defenses)
            for m in (attacked.model, *(attacked.client_models or ())):
                reseed(m, cfg.victim.seed)  # models that sample (PRECODE): every attack, the same stream
            scored = attack_and_score(attacked, attack, threat, cfg.metrics, progress=progress, device=device)
            if scored.interrupted:  # a truncated attack is not a finished point
                raise KeyboardInterrupt
            runs.append(scored)
    except AttackRefused as e:
        return {**base, "status": "refused", "reason": str(e)}
    victims = [_victim_record(r) for r in runs]
    unavailable: dict[str, str] = {}
    for r in runs:
        unavailable.update({k: v for k, v in r.evaluation.unavailable.items() if k not in unavailable})
    out: dict[str, Any] = {
        **base,
        "status": "ok",
        "metrics": _mean_metrics(victims),
        "unavailable": unavailable,
        "victims": victims,
        "seconds": sum(r.result.seconds for r in runs),
        "notes": list(runs[0].result.notes),
        "parameters": attack.config.to_dict(),
    }
    if attack.active:
        out["crafted_models"] = True
    if cfg.frontier.images:
        truth_images = [r.target.images.float()[r.evaluation.matching.truth_index] for r in runs]
        out["image_png"] = _thumbnail(
            torch.cat(truth_images), torch.cat([r.evaluation.matched_images for r in runs])
        )
    return out


def compute_point(
    cfg: FrontierConfig,
    point: Point,
    data: FrontierData,
    *,
    device: str | torch.device | None = "cpu",
    progress: ProgressFn | None = None,
    index: int = 0,
    total: int = 1,
) -> dict[str, Any]:
    """Train with the point's defense and attack every victim's defended update; the point's record.

    Raises ``KeyboardInterrupt`` when interrupted (also inside an attack), so a half-computed point
    is never recorded."""
    from gradinv.device import resolve_device

    dev = resolve_device(device)
    defenses = point.build_defenses()
    model = _build_model(cfg, data)

    def on_round(log: RoundLog) -> None:
        if progress is not None:
            progress(FrontierEvent("round", index, total, point, round_log=log))

    t0 = time.perf_counter()
    fed = train_federated(
        model,
        data.train,
        data.test,
        cfg.training,
        cfg.fl,
        defenses=defenses,
        victims=[VictimClient(b, round=cfg.victim.round) for b in data.victims],
        progress=on_round,
        device=dev,
    )
    t1 = time.perf_counter()
    truths = fed.victim_truths
    attacks = []
    for entry in cfg.attacks:

        def on_step(step: int, steps: int, loss: float, _label: str = entry.label) -> None:
            if progress is not None:
                progress(FrontierEvent("attack", index, total, point, attack=_label, step=step, steps=steps))

        attacks.append(_attack_record(entry, truths, cfg, defenses, device=dev, progress=on_step))
    t2 = time.perf_counter()
    updates = [t.victim_update for t in truths]
    last = fed.history[-1]
    return {
        "schema": 1,
        "key": point.key,
        "point": point.to_dict(),
        "defense": _defense_info(defenses),
        "accuracy": fed.final_accuracy,
        "accuracy_curve": [[r, a] for r, a in fed.accuracy_curve],
        "train_loss_curve": [h.train_loss for h in fed.history],
        "client_info": dict(last.info),
        "victim": {
            "round": cfg.victim.round,
            "clients": len(updates),
            "num_samples": [u.num_samples for u in updates],
            "local_steps": [u.local_steps for u in updates],
            "update_norm": sum(u.update.norm() for u in updates) / len(updates),
            "info": [dict(u.info) for u in updates],
        },
        "attacks": attacks,
        "seconds": {"training": t1 - t0, "attacks": t2 - t1},
        "data": data.describe(),
        "fingerprint": cfg.fingerprint(),
        "gradinv_version": gradinv.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _defense_info(defenses: Sequence[Defense]) -> dict[str, Any] | None:
    if not defenses:
        return None
    d = defenses[0]
    return {
        "name": d.name,
        "title": d.title,
        "stage": d.stage,
        "paper": d.paper,
        "config": d.config.to_dict(),
    }


# --------------------------------------------------------------------------------------------------
# Storage and the study loop
# --------------------------------------------------------------------------------------------------


def _write_point(points_dir: Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` to ``points_dir/<key>.json`` atomically (temp file, fsync, rename)."""
    path = points_dir / f"{record['key']}.json"
    tmp = points_dir / f".{record['key']}.{os.getpid()}.tmp"
    text = json.dumps(jsonable(record), indent=1, allow_nan=False)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_finished_points(out_dir: str | Path, cfg: FrontierConfig) -> tuple[dict[str, dict[str, Any]], int]:
    """The finished points of ``cfg`` found in ``out_dir/points`` (by key), and how many other point
    files (another configuration, or unreadable) were ignored."""
    points_dir = Path(out_dir) / POINTS_DIR
    wanted = {p.key for p in cfg.points()}
    fp = cfg.fingerprint()
    found: dict[str, dict[str, Any]] = {}
    ignored = 0
    if not points_dir.is_dir():
        return found, 0
    for path in sorted(points_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            logger.warning("ignoring unreadable point file %s: %s", path, e)
            ignored += 1
            continue
        key = record.get("key") if isinstance(record, dict) else None
        if key in wanted and record.get("fingerprint") == fp and path.stem == key:
            found[key] = record
        else:
            ignored += 1
    return found, ignored


@dataclass(frozen=True)
class FrontierResult:
    """The records of every point (in config order), which were computed now, and the outputs."""

    config: FrontierConfig
    records: tuple[Mapping[str, Any], ...]
    computed: tuple[str, ...]
    skipped: tuple[str, ...]
    missing: tuple[str, ...]
    stale: int
    outputs: Mapping[str, Path]

    @property
    def complete(self) -> bool:
        return not self.missing


def run_frontier(
    cfg: FrontierConfig,
    out_dir: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
    device: str | torch.device | None = None,
    compute: bool = True,
) -> FrontierResult:
    """Compute every missing point of ``cfg`` (each written to ``OUT/points`` as soon as it finishes),
    then write the table (CSV, JSON), the plot (PNG) and the HTML report from all finished points.

    ``compute=False`` only writes the outputs from the points already finished."""
    from gradinv.studies.frontier_report import write_outputs

    out = Path(out_dir or cfg.run.out)
    points_dir = out / POINTS_DIR
    points_dir.mkdir(parents=True, exist_ok=True)
    points = cfg.points()
    finished, stale = load_finished_points(out, cfg)
    if stale:
        logger.warning("%d point file(s) in %s belong to another configuration; ignored", stale, points_dir)
    todo = [p for p in points if p.key not in finished]
    computed: list[str] = []
    if compute and todo:
        data = load_frontier_data(cfg)
        dev = device or cfg.run.device
        for p in points:
            if p.key in finished:
                if progress is not None:
                    progress(FrontierEvent("skip", p.order, len(points), p, record=finished[p.key]))
                continue
            if progress is not None:
                progress(FrontierEvent("start", p.order, len(points), p))
            logger.info("frontier point %d/%d: %s", p.order + 1, len(points), p.describe())
            # module-level lookup on purpose: tests count computations by replacing compute_point
            record = compute_point(
                cfg, p, data, device=dev, progress=progress, index=p.order, total=len(points)
            )
            _write_point(points_dir, record)
            finished[p.key] = record
            computed.append(p.key)
            if progress is not None:
                progress(FrontierEvent("point", p.order, len(points), p, record=record))
    elif progress is not None:
        for p in points:
            if p.key in finished:
                progress(FrontierEvent("skip", p.order, len(points), p, record=finished[p.key]))
    records = tuple(finished[p.key] for p in points if p.key in finished)
    missing = tuple(p.key for p in points if p.key not in finished)
    outputs = write_outputs(cfg, points, records, out) if records else {}
    return FrontierResult(
        config=cfg,
        records=records,
        computed=tuple(computed),
        skipped=tuple(p.key for p in points if p.key in finished and p.key not in computed),
        missing=missing,
        stale=stale,
        outputs=outputs,
    )
