"""The living table of paper 004: every registered attack and defense with its threat model per
gradinv next to the one Carletti et al. give.

Carletti, Foggia, Mazzocca, Parrella, Vento, "SoK: Gradient Inversion Attacks in Federated
Learning", USENIX Security 2025 (``../shared/papers/004_*.txt``) tabulate attacks (family, threat
model A–H, learning algorithm, label recovery, ...) and defenses (the threat models under which
each is effective). :func:`build_catalog` builds the same table from gradinv's registries
(:data:`gradinv.attacks.ATTACKS`, :data:`gradinv.defenses.DEFENSES`,
:data:`gradinv.attacks.LABEL_METHODS`):

* per attack: name, family, paper (the class's citation), the threat model per gradinv (the
  weakest A–H granting the attack's default requirements, as ``gradinv list`` computes it), the
  threat model per paper 004 (:data:`PAPER_004_ATTACKS`, transcribed from 004's table), the learning
  algorithm gradinv supports, the label recovery, what gradinv implements and where it deviates (from
  the attack's docstrings), and the reason wherever the two threat-model columns differ;
* per defense: its stage and paper, and 004's effectiveness per threat model where 004 lists the
  defense or its technique (:data:`PAPER_004_DEFENSES`); gradinv applies every defense under every
  threat model;
* an optional measured headline number and the command that produced it (``measured``), per attack,
  defense and label method: :mod:`gradinv.studies.headlines` derives them from finished study runs
  (``gradinv catalog --studies DIR ...``); ``sources`` lists the commands of those runs.

Renderers: :func:`render_markdown`, :func:`render_html` (the report page helpers of
:mod:`gradinv.report.html`), :func:`render_json`. Pure: nothing here touches files or the CLI
(``gradinv catalog`` is :mod:`gradinv.cli.catalog`).

>>> cat = build_catalog()
>>> dlg = cat.attack("dlg")
>>> dlg.threat_gradinv, dlg.threat_004, dlg.agrees
('A', 'A', True)
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from gradinv.attacks import ATTACKS, LABEL_METHODS, Attack
from gradinv.attacks.labels import AUTO_DESCRIPTION, LABEL_STRATEGIES
from gradinv.defenses import DEFENSES
from gradinv.errors import ConfigError, did_you_mean
from gradinv.report.html import _e, _table, html_page
from gradinv.threat import THREAT_MODELS, weakest_granting

__all__ = [
    "PAPER_004",
    "PAPER_004_ATTACKS",
    "PAPER_004_DEFENSES",
    "AttackEntry",
    "Catalog",
    "DefenseEntry",
    "DefenseRow",
    "LabelEntry",
    "Measured",
    "PaperRow",
    "build_catalog",
    "render_html",
    "render_json",
    "render_markdown",
]

PAPER_004 = (
    "Carletti, Foggia, Mazzocca, Parrella, Vento. SoK: Gradient Inversion Attacks in Federated Learning. "
    "USENIX Security 2025"
)

# --------------------------------------------------------------------------------------------------
# Paper 004, transcribed
# --------------------------------------------------------------------------------------------------

#: 004's label-recovery symbols, spelled out (its "Symbol legend").
LABEL_SYMBOLS: Mapping[str, str] = {
    "★": "optimization-based label reconstruction",
    "🆕": "new label recovery method",
    "◦": "assumes label knowledge",
    "-": "no label restoration algorithm used",
    "[2]": "uses the label recovery of [2] (iDLG)",
    "link": "(the text extraction shows only a link in this column)",
}


@dataclass(frozen=True)
class PaperRow:
    """One row of 004's attack table, as printed (``ref`` is 004's reference number)."""

    ref: int
    work: str
    category: str
    technique: str
    threat_model: str
    learning: str
    resolution: str
    batch_size: str
    shared_model: str
    label_recovery: str  # the symbol as printed; LABEL_SYMBOLS spells it out

    @property
    def label_meaning(self) -> str:
        return LABEL_SYMBOLS.get(self.label_recovery, self.label_recovery)


_OPT, _GEN, _ANA = "Optimization-based", "Generative Model-based", "Analytic-based"

#: 004's attack table for the attacks gradinv implements, keyed by gradinv's attack name; ``None``
#: where 004 does not list the paper. Each row is copied from 004's table (the row's work and
#: reference number are given; "Both" = FedSGD and FedAvg, "Input Size" = any resolution).
PAPER_004_ATTACKS: Mapping[str, PaperRow | None] = {
    # [1] "Deep Leakage from Gradients", row "Zhu et al. (2019) [1] | A | FedSGD | 64×64 | 8 | LeNet | ★"
    "dlg": PaperRow(
        1, "Zhu et al. (2019)", _OPT, "Basic Optimization", "A", "FedSGD", "64×64", "8", "LeNet", "★"
    ),
    # [2] "iDLG", row "Zhao et al. (2020) [2] | A | FedSGD | 32×32 | 1 | LeNet | 🆕"
    "idlg": PaperRow(
        2, "Zhao et al. (2020)", _OPT, "Basic Optimization", "A", "FedSGD", "32×32", "1", "LeNet", "🆕"
    ),
    # [3] "Inverting Gradients", row "Geiping et al. (2020) [3] | B | FedSGD | 32×32 | 100 | ResNets | ◦"
    "inverting-gradients": PaperRow(
        3, "Geiping et al. (2020)", _OPT, "Basic Optimization", "B", "FedSGD", "32×32", "100", "ResNets", "◦"
    ),
    # [4] "See Through Gradients", row "Yin et al. (2021) [4] | E | FedSGD | 224×224 | 48 | ResNet-50 | 🆕"
    "gradinversion": PaperRow(
        4, "Yin et al. (2021)", _OPT, "Basic Optimization", "E", "FedSGD", "224×224", "48", "ResNet-50", "🆕"
    ),
    # [6] "Data Leakage in Federated Averaging", row "Dimitrov et al. (2022) [6] | C | FedAVG | 32×32 |
    # 10×5 | CNNs | link" (the label column of the extraction holds a link)
    "fedavg-leakage": PaperRow(
        6,
        "Dimitrov et al. (2022)",
        _OPT,
        "Basic Optimization",
        "C",
        "FedAvg",
        "32×32",
        "10×5",
        "CNNs",
        "link",
    ),
    # [8] "Cocktail Party Attack", row "Kariyappa et al. (2023) [8] | B | FedSGD | 224×224 | 1024 |
    # VGG-16 | ★"
    "cocktail-party": PaperRow(
        8,
        "Kariyappa et al. (2023)",
        _OPT,
        "Basic Optimization",
        "B",
        "FedSGD",
        "224×224",
        "1024",
        "VGG-16",
        "★",
    ),
    # [17] "Beyond Inferring Class Representatives", row "Wang et al. (2019) [17] | D | FedSGD | 64×64 | 1 |
    # LeNet, ResNet-18 | [2]" (Generative Model-based, Online Opt.)
    "mgan-representatives": PaperRow(
        17, "Wang et al. (2019)", _GEN, "Online Opt.", "D", "FedSGD", "64×64", "1", "LeNet, ResNet-18", "[2]"
    ),
    # [18] "GRNN", row "Ren et al. (2022) [18] | B | FedSGD | 64×64 | 256 | LeNet, ResNet-18 | ★"
    # (Generative Model-based, Direct Reconstruction)
    "grnn": PaperRow(
        18,
        "Ren et al. (2022)",
        _GEN,
        "Direct Reconstruction",
        "B",
        "FedSGD",
        "64×64",
        "256",
        "LeNet, ResNet-18",
        "★",
    ),
    # [20] "Gradient Inversion with Generative Image Prior", row "Jeon et al. (2021) [20] | D | FedSGD |
    # 64×64 | 4 | ResNet-18 | ◦" (Latent-Space Optimization)
    "gias": PaperRow(
        20,
        "Jeon et al. (2021)",
        _GEN,
        "Latent-Space Optimization",
        "D",
        "FedSGD",
        "64×64",
        "4",
        "ResNet-18",
        "◦",
    ),
    # [21] "Generative Gradient Leakage", row "Li et al. (2022) [21] | D | FedSGD | 224×224 | 1 | ResNet-18 |
    # [2]"
    "ggl": PaperRow(
        21,
        "Li et al. (2022)",
        _GEN,
        "Latent-Space Optimization",
        "D",
        "FedSGD",
        "224×224",
        "1",
        "ResNet-18",
        "[2]",
    ),
    # [22] "GIFD", row "Fang et al. (2023) [22] | D | FedSGD | 64×64 | 1 | ResNet-18 | [2]"
    "gifd": PaperRow(
        22,
        "Fang et al. (2023)",
        _GEN,
        "Latent-Space Optimization",
        "D",
        "FedSGD",
        "64×64",
        "1",
        "ResNet-18",
        "[2]",
    ),
    # Learning to Invert (Wu et al., UAI 2023) is not in 004's table
    "lti": None,
    # [25] "R-GAP", row "Zhu et al. (2021) [25] | B | FedSGD | 64×64 | 1 | 6 layer CNN | 🆕" (Closed Form)
    "rgap": PaperRow(
        25, "Zhu et al. (2021)", _ANA, "Closed Form", "B", "FedSGD", "64×64", "1", "6 layer CNN", "🆕"
    ),
    # [27] "SPEAR", row "Dimitrov et al. (2024) [27] | B | FedSGD | 256×256 | 25 | 6 layer FC-NN | -"
    "spear": PaperRow(
        27,
        "Dimitrov et al. (2024)",
        _ANA,
        "Closed Form",
        "B",
        "FedSGD",
        "256×256",
        "25",
        "6 layer FC-NN",
        "-",
    ),
    # [28] "Robbing the Fed", row "Fowl et al. (2022) [28] | G | Both | Input Size | 256 |
    # Model Agnostic² | -" (² = adds linear layers)
    "robbing-the-fed": PaperRow(
        28,
        "Fowl et al. (2022)",
        _ANA,
        "Gradient Sparsification",
        "G",
        "Both",
        "Input Size",
        "256",
        "Model Agnostic (adds linear layers)",
        "-",
    ),
    # [29] "Fishing for User Data", row "Wen et al. (2022) [29] | F | FedSGD | Input Size | 1 |
    # Model Agnostic | -"
    "fishing": PaperRow(
        29,
        "Wen et al. (2022)",
        _ANA,
        "Gradient Sparsification",
        "F",
        "FedSGD",
        "Input Size",
        "1",
        "Model Agnostic",
        "-",
    ),
    # [30] "When the Curious Abandon Honesty", row "Boenisch et al. (2023) [30] | G | Both | Input Size |
    # 100 | FC Networks³ | -"
    "trap-weights": PaperRow(
        30,
        "Boenisch et al. (2023)",
        _ANA,
        "Gradient Sparsification",
        "G",
        "Both",
        "Input Size",
        "100",
        "FC Networks (targets linear layers)",
        "-",
    ),
    # [31] "Reconstructing Individual Data Points in FL Hardened with DP and Secure Aggregation", row
    # "Boenisch et al. (2023) [31] | H | FedSGD | Input Size | 100 | FC Networks³ | -" (Gradient Isolation)
    "sybil-ddp": PaperRow(
        31,
        "Boenisch et al. (2023)",
        _ANA,
        "Gradient Isolation",
        "H",
        "FedSGD",
        "Input Size",
        "100",
        "FC Networks (targets linear layers)",
        "-",
    ),
    # not in 004's table: CPL (Wei et al., ESORICS 2020), SAPAG (Wang et al., 2020), the FC bias trick
    # (Phong et al., IEEE TIFS 2018), inconsistent models (Pasquini et al., ACM CCS 2022)
    "cpl": None,
    "sapag": None,
    "fc-bias": None,
    "inconsistent-models": None,
}

#: Why gradinv's threat model differs from 004's, per attack (only where it does).
DISAGREEMENTS: Mapping[str, str] = {
    "mgan-representatives": (
        "004 rates the whole mGAN-AI attack, whose GAN stage trains a generator on auxiliary data of the "
        "client's distribution (surrogate data, D). gradinv implements only the first stage, the data "
        "representatives, an optimisation that needs basic knowledge alone, so it runs under B."
    ),
    "robbing-the-fed": (
        "By default gradinv places the bin cut-offs at quantiles of an assumed Gaussian of the measured "
        "quantity, which needs no data (F); 004 lists the paper under G, where the server knows the data "
        "distribution. With cutoffs = 'surrogate' gradinv also requires surrogate data (G)."
    ),
    "trap-weights": (
        "By default gradinv's trap uses a fixed scale on each row's positive half (0.95), which needs no "
        "data (F); 004 lists the paper under G (data-enhanced manipulator). With calibrate = true the "
        "per-row scale is calibrated on surrogate images and gradinv requires G."
    ),
}


@dataclass(frozen=True)
class DefenseRow:
    """One row of 004's defense table: the threat models under which the defense is effective
    (green), partially effective (orange) or not (red), as printed."""

    refs: str
    category: str
    technique: str
    where: str
    effective: str
    partial: str
    ineffective: str
    match: Literal["paper", "technique"]  # the same paper, or only the same technique as gradinv's


#: 004's rows that several gradinv defenses share (the same technique)
_CLIENT_DP = DefenseRow("[38]", "DP-based", "client-level DP", "Client", "A-C", "D-H", "", "technique")
_SPARSIFICATION = DefenseRow(
    "[42,43]",
    "Gradient Perturbation",
    "gradient pruning / sparsification",
    "Client",
    "A",
    "B-C",
    "D-H",
    "technique",
)
_QUANTISATION = DefenseRow(
    "[14]", "Gradient Perturbation", "quantisation", "Client", "A", "B-C", "D-H", "technique"
)

#: 004's defense table for gradinv's defenses, keyed by gradinv's defense name; ``None`` where 004 lists
#: neither the paper nor its technique. "technique" rows are 004's row for another paper of the same
#: technique (the note of :data:`DEFENSE_NOTES` says which).
PAPER_004_DEFENSES: Mapping[str, DefenseRow | None] = {
    # [44] "Limits the magnitude of gradients": A (green) B (orange) - C (orange) D (red) - H (red)
    "clipping": DefenseRow(
        "[44]", "Gradient Perturbation", "gradient clipping", "Client", "A", "B-C", "D-H", "technique"
    ),
    # [38] FedCDP "Clients add noise to their own updates": A (green) - C (green) D (orange) - H (orange)
    "dp-sgd": _CLIENT_DP,
    "gaussian-noise": _CLIENT_DP,
    # [42,43] "Transmits only the most significant gradient elements": A (green) B (orange) - C (orange)
    # D (red) - H (red)
    "pruning": _SPARSIFICATION,
    "topk": _SPARSIFICATION,
    # [14] "Reduces gradient precision with fewer bits": A (green) B (orange) - C (orange) D (red) - H (red)
    "qsgd": _QUANTISATION,
    "signsgd": _QUANTISATION,
    # [45] Soteria: A (green) - B (green) C (orange) D (red) - H (red)
    "soteria": DefenseRow(
        "[45]", "Gradient Perturbation", "representation perturbation", "Client", "A-B", "C", "D-H", "paper"
    ),
    # [58] PRECODE: A (green) - B (green) C (orange) - H (orange)
    "precode": DefenseRow(
        "[58]", "Model Modification", "variational block", "Client", "A-B", "C-H", "", "paper"
    ),
    "mixup": None,
    "instahide": None,
}

#: How a gradinv defense relates to 004's row (or why 004 has none).
DEFENSE_NOTES: Mapping[str, str] = {
    "clipping": "004 cites McMahan et al. [37] for server-side DP; gradinv's flat clipping alone is 004's "
    "'limits the magnitude of gradients' row [44].",
    "dp-sgd": "004 rates client-side DP by FedCDP [38]; DP-SGD (Abadi et al.) noises the client's own steps.",
    "gaussian-noise": "004 rates clients adding noise to their own updates by FedCDP [38].",
    "pruning": "004's row for gradient pruning [42,43]; gradinv's pruning follows DLG §5.",
    "topk": "top-k sparsification is 004's 'transmits only the most significant gradient elements' [42,43].",
    "qsgd": "004's quantisation row [14] (Yue et al.'s evaluation of reduced precision).",
    "signsgd": "signSGD is 1-bit quantisation, 004's quantisation row [14].",
    "mixup": "004 does not list MixUp; its closest row is vicinal-distribution augmentation [55] "
    "(A-B effective, C-H partially).",
    "instahide": "004 does not list InstaHide.",
}

# --------------------------------------------------------------------------------------------------
# gradinv's side: what the registry does not carry
# --------------------------------------------------------------------------------------------------

#: The learning algorithms each attack supports (from the attacks' code: which update kinds they read).
LEARNING: Mapping[str, str] = {
    "dlg": "FedSGD; FedAvg deltas as a pseudo-gradient",
    "idlg": "FedSGD; FedAvg deltas as a pseudo-gradient",
    "cpl": "FedSGD; FedAvg deltas as a pseudo-gradient",
    "inverting-gradients": "FedSGD; FedAvg deltas as a pseudo-gradient",
    "mgan-representatives": "FedSGD; FedAvg deltas as a pseudo-gradient",
    "sapag": "FedSGD; FedAvg deltas as a pseudo-gradient",
    "gradinversion": "FedSGD; FedAvg deltas as a pseudo-gradient",
    "fedavg-leakage": "FedAvg (simulated local training); FedSGD with mode = 'none'",
    "cocktail-party": "FedSGD; FedAvg of one local step",
    "rgap": "FedSGD; FedAvg of one local step",
    "spear": "FedSGD; FedAvg of one local step",
    "fc-bias": "FedSGD; FedAvg (exact at N = 1 without weight decay)",
    "robbing-the-fed": "FedSGD (cumulative bins); FedAvg (sparse bins)",
    "trap-weights": "FedSGD; FedAvg",
    "fishing": "FedSGD; FedAvg (sample count needs training details)",
    "inconsistent-models": "FedSGD; FedAvg without weight decay",
    "sybil-ddp": "FedSGD; FedAvg (as the inner attack)",
    "gias": "FedSGD; FedAvg deltas as a pseudo-gradient",
    "gifd": "FedSGD; FedAvg deltas as a pseudo-gradient",
    "ggl": "FedSGD; FedAvg deltas as a pseudo-gradient",
    "grnn": "FedSGD; FedAvg deltas as a pseudo-gradient",
    "lti": "FedSGD; FedAvg (the surrogate clients train as the view's training details say)",
}

#: Label recovery of attacks whose config has no ``labels`` option, or whose ``auto`` differs from the
#: shared one (the attack's code says so).
LABELS: Mapping[str, str] = {
    "dlg": "optimised jointly with the data (soft labels, argmax)",
    "gradinversion": "auto: known if granted, else yin (the paper's)",
    "cocktail-party": "none",
    "fc-bias": "B = 1: the one negative classifier-bias gradient (iDLG's sign rule)",
    "rgap": "the negative entry of the last layer's gradient",
    "spear": "per sample, from the recovered first-layer gradient column",
    "robbing-the-fed": "none",
    "trap-weights": "none",
    "fishing": "the fished target class",
    "inconsistent-models": "the inner attack's",
    "sybil-ddp": "the inner attack's",
    "grnn": "generated: the generator's label branch (softmax), trained jointly with the image",
    "lti": "none (the inversion network outputs images only)",
}


# --------------------------------------------------------------------------------------------------
# The catalog
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """A measured headline number (as displayed, e.g. ``"PSNR 31.2 dB"``) and the command that
    produced it."""

    value: str
    command: str


@dataclass(frozen=True)
class AttackEntry:
    """One attack of the catalog."""

    name: str
    title: str
    family: str
    paper: str
    active: bool
    requires: tuple[str, ...]
    assumes: tuple[str, ...]
    threat_gradinv: str | None
    threat_004: str | None
    paper_004: PaperRow | None
    learning: str
    label_recovery: str
    implements: str
    deviations: str
    disagreement: str | None
    measured: Measured | None = None

    @property
    def agrees(self) -> bool:
        return self.threat_004 is not None and self.threat_004 == self.threat_gradinv


@dataclass(frozen=True)
class DefenseEntry:
    """One defense of the catalog. gradinv applies every defense under every threat model
    (``threat_gradinv``); ``paper_004`` is 004's effectiveness per threat model."""

    name: str
    title: str
    stage: str
    paper: str
    description: str
    paper_004: DefenseRow | None
    note: str
    measured: Measured | None = None
    threat_gradinv: str = "any"


@dataclass(frozen=True)
class LabelEntry:
    """A label recovery method (``labels = NAME``)."""

    name: str
    description: str
    paper: str
    assumption: str
    measured: Measured | None = None


@dataclass(frozen=True)
class Catalog:
    attacks: tuple[AttackEntry, ...]
    defenses: tuple[DefenseEntry, ...]
    labels: tuple[LabelEntry, ...]
    #: the commands of the study runs the measured numbers come from (empty: none measured)
    sources: tuple[str, ...] = ()
    #: where those runs come from, for people (e.g. shipped quick-scale runs of a gradinv version)
    sources_note: str = ""

    def attack(self, name: str) -> AttackEntry:
        return next(a for a in self.attacks if a.name == name)

    def defense(self, name: str) -> DefenseEntry:
        return next(d for d in self.defenses if d.name == name)

    def to_dict(self) -> dict[str, Any]:
        def entry(e: AttackEntry | DefenseEntry) -> dict[str, Any]:
            d = asdict(e)
            if isinstance(e, AttackEntry):
                d["agrees_with_004"] = e.agrees
                if e.paper_004 is not None:
                    d["paper_004"]["label_meaning"] = e.paper_004.label_meaning
            return d

        return {
            "source": PAPER_004,
            "threat_models": {t.id: t.name for t in THREAT_MODELS.values()},
            "attacks": [entry(a) for a in self.attacks],
            "defenses": [entry(d) for d in self.defenses],
            "labels": [asdict(m) for m in self.labels],
            "measured_from": list(self.sources),
            "measured_note": self.sources_note,
        }


def _paragraphs(doc: str | None) -> list[str]:
    text = inspect.cleandoc(doc or "")
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _deviations(cls: type) -> str:
    """The module docstring's paragraphs on deviations and extensions."""
    module = sys.modules.get(cls.__module__)
    paras = _paragraphs(module.__doc__ if module is not None else "")
    keep = [p for p in paras if p.startswith(("Deviation", "Extension", "Why the default deviates"))]
    return " ".join(keep)


def _label_recovery(name: str, cls: type[Attack]) -> str:
    strategy = getattr(cls.config_cls(), "labels", None)
    if name in LABELS or not isinstance(strategy, str):
        return LABELS.get(name, "")
    if strategy in LABEL_STRATEGIES:
        return f"{strategy} (see the label recovery methods)"
    method = LABEL_METHODS.get(strategy)
    return f"{strategy}: {method.description} ({method.paper})"


def _check_measured(measured: Mapping[str, Measured], names: list[str], what: str) -> None:
    for key, value in measured.items():
        if key not in names:
            raise ConfigError(
                f"Unknown {what} {key!r} in the measured numbers.{did_you_mean(key, names)} "
                f"Valid names: {', '.join(names)}."
            )
        if not isinstance(value, Measured):
            raise ConfigError(f"Expected a Measured(value, command) for {key!r}, but got {value!r}.")


def build_catalog(
    measured: Mapping[str, Measured] | None = None,
    *,
    labels_measured: Mapping[str, Measured] | None = None,
    sources: tuple[str, ...] = (),
    sources_note: str = "",
) -> Catalog:
    """The catalog of every registered attack, defense and label method; ``measured`` adds a
    headline number and its command per attack or defense name, ``labels_measured`` per label
    method (kept apart: ``idlg`` names both an attack and a label method), ``sources`` the commands
    of the runs they come from (:func:`gradinv.studies.headlines.catalog_measured` gives all three) and
    ``sources_note`` says where those runs come from."""
    measured = dict(measured or {})
    labels_measured = dict(labels_measured or {})
    _check_measured(measured, [*ATTACKS.names(), *DEFENSES.names()], "attack or defense")
    _check_measured(labels_measured, [*LABEL_METHODS.names(), "known", "auto"], "label method")
    attacks = []
    for name, cls in ATTACKS.items():
        weakest = weakest_granting(r.knowledge for r in cls.base_requirements)
        ours = weakest.id if weakest is not None else None
        row = PAPER_004_ATTACKS.get(name)
        theirs = row.threat_model if row is not None else None
        if row is None:
            why: str | None = "004 does not list this paper."
        elif theirs != ours:
            why = DISAGREEMENTS.get(name)
        else:
            why = None
        doc = _paragraphs(cls.__doc__)
        attacks.append(
            AttackEntry(
                name=name,
                title=cls.title,
                family=cls.family,
                paper=cls.paper,
                active=cls.active,
                requires=tuple(r.knowledge.value for r in cls.base_requirements),
                assumes=tuple(cls.assumptions),
                threat_gradinv=ours,
                threat_004=theirs,
                paper_004=row,
                learning=LEARNING.get(name, ""),
                label_recovery=_label_recovery(name, cls),
                implements=doc[0] if doc else "",
                deviations=_deviations(cls),
                disagreement=why,
                measured=measured.get(name),
            )
        )
    defenses = []
    for name, dcls in DEFENSES.items():
        info = dcls.describe()
        defenses.append(
            DefenseEntry(
                name=name,
                title=info["title"],
                stage=info["stage"],
                paper=info["paper"],
                description=info["description"],
                paper_004=PAPER_004_DEFENSES.get(name),
                note=DEFENSE_NOTES.get(name, ""),
                measured=measured.get(name),
            )
        )
    labels = (
        *(
            LabelEntry(m.name, m.description, m.paper, m.assumption, labels_measured.get(m.name))
            for _, m in LABEL_METHODS.items()
        ),
        LabelEntry(
            "known",
            "the true labels as a multiset",
            "",
            "threat model grants labels (E, or +labels)",
            labels_measured.get("known"),
        ),
        LabelEntry("auto", AUTO_DESCRIPTION, "", "", labels_measured.get("auto")),
    )
    return Catalog(tuple(attacks), tuple(defenses), labels, tuple(sources), sources_note)


# --------------------------------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------------------------------


def _md(text: object) -> str:
    return str(text if text is not None else "—").replace("|", "\\|").replace("\n", " ")


def _md_row(*cells: object) -> str:
    """One row of a Markdown table, every cell escaped."""
    return "| " + " | ".join(_md(v) for v in cells) + " |"


def _measured_text(m: Measured | None) -> str:
    return f"{m.value} (`{m.command}`)" if m is not None else "—"


def _defense_004(row: DefenseRow | None) -> str:
    if row is None:
        return "not listed"
    parts = [f"effective {row.effective}"]
    if row.partial:
        parts.append(f"partially {row.partial}")
    if row.ineffective:
        parts.append(f"not {row.ineffective}")
    how = "" if row.match == "paper" else " (same technique)"
    return f"{row.refs}{how}: " + ", ".join(parts)


def _agreement(a: AttackEntry) -> str:
    if a.agrees:
        return "yes"
    return "not listed" if a.threat_004 is None else "no"


def _sources_markdown(catalog: Catalog) -> list[str]:
    if not catalog.sources:
        return []
    return [
        "Measured numbers: each measured cell is one study run's headline (the rule: "
        "`gradinv.studies.headlines`), with the command that reproduces it. "
        + (f"{catalog.sources_note} " if catalog.sources_note else "")
        + "They come from these runs:",
        "",
        *(f"- `{c}`" for c in catalog.sources),
        "",
    ]


def render_markdown(catalog: Catalog) -> str:
    """The catalog as Markdown: summary tables of attacks and defenses, then one section per attack."""
    out = [
        "# gradinv catalog",
        "",
        f"The living table of *{PAPER_004}* (paper 004), built from gradinv's registries. "
        '"gradinv" is the weakest threat model A–H that grants what the attack needs by default '
        '(as `gradinv list` computes it); "004" is the threat model 004\'s table gives the paper.',
        "",
        *_sources_markdown(catalog),
        "## Attacks",
        "",
        "| attack | family | gradinv | 004 | agrees | learning algorithm | label recovery | measured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in catalog.attacks:
        out.append(
            _md_row(
                f"{a.title} (`{a.name}`)",
                a.family,
                a.threat_gradinv,
                a.threat_004,
                _agreement(a),
                a.learning,
                a.label_recovery,
                _measured_text(a.measured),
            )
        )
    header = "| defense | stage | gradinv (runs under) | 004 (effective under) | note | measured |"
    out += ["", "## Defenses", "", header]
    out.append("|---|---|---|---|---|---|")
    for d in catalog.defenses:
        out.append(
            _md_row(
                f"{d.title} (`{d.name}`)",
                d.stage,
                d.threat_gradinv,
                _defense_004(d.paper_004),
                d.note,
                _measured_text(d.measured),
            )
        )
    out += ["", "## Label recovery methods", "", "| method | description | paper | assumption | measured |"]
    out.append("|---|---|---|---|---|")
    for m in catalog.labels:
        out.append(
            f"| `{m.name}` | {_md(m.description)} | {_md(m.paper)} | {_md(m.assumption)} | "
            f"{_md(_measured_text(m.measured))} |"
        )
    out += ["", "## Attack details", ""]
    for a in catalog.attacks:
        out += [f"### {a.title} (`{a.name}`)", "", f"- paper: {a.paper}"]
        if a.paper_004 is not None:
            r = a.paper_004
            out.append(
                f"- 004 row [{r.ref}] {r.work}: {r.category} / {r.technique}, threat model {r.threat_model}, "
                f"{r.learning}, {r.resolution}, batch {r.batch_size}, {r.shared_model}, labels "
                f"{r.label_recovery} ({r.label_meaning})"
            )
        out.append(f"- threat model: gradinv {a.threat_gradinv}, 004 {a.threat_004 or 'not listed'}")
        out.append(f"- needs: {', '.join(a.requires)}")
        if a.assumes:
            out.append(f"- assumes without basic knowledge: {'; '.join(a.assumes)}")
        if a.disagreement:
            out.append(f"- disagreement with 004: {a.disagreement}")
        out.append(f"- implements: {a.implements}")
        out.append(f"- deviations: {a.deviations or 'none stated in its module docstring'}")
        if a.measured is not None:
            out.append(f"- measured: {a.measured.value} — `{a.measured.command}`")
        out.append("")
    return "\n".join(out)


def render_json(catalog: Catalog) -> str:
    """The catalog as JSON (``Catalog.to_dict``)."""
    return json.dumps(catalog.to_dict(), indent=2, ensure_ascii=False)


def render_html(catalog: Catalog) -> str:
    """The catalog as one self-contained HTML page (the report stylesheet)."""

    def measured(m: Measured | None) -> str:
        return "—" if m is None else f"{m.value} ({m.command})"

    attacks = _table(
        ["attack", "family", "gradinv", "004", "agrees", "learning algorithm", "label recovery", "measured"],
        (
            (
                f"{a.title} ({a.name})",
                a.family,
                a.threat_gradinv or "—",
                a.threat_004 or "—",
                _agreement(a),
                a.learning,
                a.label_recovery,
                measured(a.measured),
            )
            for a in catalog.attacks
        ),
    )
    defenses = _table(
        ["defense", "stage", "gradinv (runs under)", "004 (effective under)", "note", "measured"],
        (
            (
                f"{d.title} ({d.name})",
                d.stage,
                d.threat_gradinv,
                _defense_004(d.paper_004),
                d.note,
                measured(d.measured),
            )
            for d in catalog.defenses
        ),
    )
    labels = _table(
        ["method", "description", "paper", "assumption", "measured"],
        ((m.name, m.description, m.paper, m.assumption, measured(m.measured)) for m in catalog.labels),
    )
    sources = (
        "<p>Measured numbers: each measured cell is one study run's headline (the rule: "
        "gradinv.studies.headlines). "
        + (f"{_e(catalog.sources_note)} " if catalog.sources_note else "")
        + "They come from these runs:</p><ul>"
        + "".join(f"<li><code>{_e(c)}</code></li>" for c in catalog.sources)
        + "</ul>"
        if catalog.sources
        else ""
    )
    details = []
    for a in catalog.attacks:
        rows: list[tuple[str, object]] = [("paper", a.paper), ("needs", ", ".join(a.requires))]
        if a.paper_004 is not None:
            r = a.paper_004
            rows.append(
                (
                    "004 row",
                    f"[{r.ref}] {r.work}: {r.category} / {r.technique}, {r.threat_model}, {r.learning}, "
                    f"{r.resolution}, batch {r.batch_size}, {r.shared_model}, labels {r.label_meaning}",
                )
            )
        if a.assumes:
            rows.append(("assumes", "; ".join(a.assumes)))
        if a.disagreement:
            rows.append(("disagreement with 004", a.disagreement))
        rows.append(("implements", a.implements))
        rows.append(("deviations", a.deviations or "none stated in its module docstring"))
        if a.measured is not None:
            rows.append(("measured", measured(a.measured)))
        details.append(f"<h3>{_e(a.title)} ({_e(a.name)})</h3>" + _table(["item", "value"], rows))
    body = (
        "<h1>gradinv catalog</h1>"
        f'<p class="sub">The living table of <i>{_e(PAPER_004)}</i> (paper 004), built from gradinv\'s '
        "registries. <b>gradinv</b>: the weakest threat model A–H granting what the attack needs by "
        "default; <b>004</b>: the threat model 004 gives the paper.</p>"
        f"{sources}<h2>Attacks</h2>{attacks}<h2>Defenses</h2>{defenses}"
        f"<h2>Label recovery methods</h2>{labels}<h2>Attack details</h2>{''.join(details)}"
    )
    return html_page("gradinv catalog", body)
