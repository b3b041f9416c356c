"""Threat models A–H as pure data: knowledge flags, the named table, and requirement checks.

The threat models are those of Carletti et al., "SoK: Gradient Inversion Attacks in Federated
Learning" (USENIX Security 2025). Each :class:`ThreatModel` grants a set of :class:`Knowledge`
flags; attacks declare :class:`Requirement` s, and :func:`check_requirements` explains a refusal by
naming the missing knowledge and the weakest threat model that grants it.

This module is values and logic only: it imports nothing of gradinv but :mod:`gradinv.errors`, so
the typed core (:mod:`gradinv.types`) can name a :class:`ThreatModel`. Building the attacker's view
from the ground truth under a threat model is :func:`gradinv.threat.observe`, which also re-exports
every name here.

Mapping of the assumption levels of Du et al. ("SoK: On Gradient Leakage in Federated Learning",
USENIX Security 2025, §2.2) onto the same flags (:data:`LEVELS`):

* level 0 basic information (gradient, model, data dimension, N) -> model updates + basic knowledge
* level 1 priors (TV, smoothness, ...) -> no flag: generic priors are always available
* level 2 data distribution (to pre-train a generator) -> surrogate data
* level 3 client-side training details -> training details
* level 4 BN statistics -> client data distribution
* level 5 malicious behaviour -> active manipulation + client selection

>>> get_threat_model("B").allows(Knowledge.BASIC_KNOWLEDGE)
True
>>> get_threat_model("B+labels").id
'B+labels'
>>> weakest_granting({Knowledge.CLIENT_DATA_DISTRIBUTION}).id
'E'
>>> threat_model_from_levels([0, 4]).describe()
'L04 (Du et al. levels [0, 4]): model updates, basic knowledge, client data distribution'

Where a fact of basic knowledge came from, when the threat model does not grant it, is a
:class:`Fact` in the view (:attr:`gradinv.types.AttackerView.facts`): read off the model the attacker
sees (:attr:`Source.MODEL`), assumed by the attack (:attr:`Source.ASSUMED`) or granted
(:attr:`Source.GRANTED`).

>>> Fact("num_samples", Source.ASSUMED, "DLG's B = 1").describe()
"num_samples: assumed (DLG's B = 1)"
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from gradinv.errors import AttackRefused, ConfigError, did_you_mean

__all__ = [
    "BASIC_FIELDS",
    "LEVELS",
    "THREAT_MODELS",
    "Fact",
    "Knowledge",
    "Requirement",
    "Source",
    "ThreatModel",
    "check_requirements",
    "ensure_requirements",
    "get_threat_model",
    "threat_model_from_levels",
    "weakest_granting",
]


class Knowledge(str, Enum):
    """Knowledge and capabilities a threat model may grant (columns of the SoK's table)."""

    MODEL_UPDATES = "model_updates"
    BASIC_KNOWLEDGE = "basic_knowledge"
    TRAINING_DETAILS = "training_details"
    SURROGATE_DATA = "surrogate_data"
    CLIENT_DATA_DISTRIBUTION = "client_data_distribution"
    ACTIVE_MANIPULATION = "active_manipulation"
    CLIENT_SELECTION = "client_selection"
    LABELS = "labels"

    @property
    def label(self) -> str:
        return _DESCRIPTIONS[self][0]

    @property
    def exposes(self) -> str:
        return _DESCRIPTIONS[self][1]


_DESCRIPTIONS: dict[Knowledge, tuple[str, str]] = {
    Knowledge.MODEL_UPDATES: (
        "model updates",
        "the shared update and the global model as sent (and what the model reveals: the label space, "
        "and the input shape where the architecture fixes it)",
    ),
    Knowledge.BASIC_KNOWLEDGE: (
        "basic knowledge",
        "number of samples, input shape, label space and input normalisation",
    ),
    Knowledge.TRAINING_DETAILS: (
        "training details",
        "the client's protocol, lr, epochs, batch size, momentum, weight decay, shuffling, forward mode",
    ),
    Knowledge.SURROGATE_DATA: ("surrogate data", "images from the client's distribution, not its own"),
    Knowledge.CLIENT_DATA_DISTRIBUTION: (
        "client data distribution",
        "the batch's BatchNorm statistics and label histogram",
    ),
    Knowledge.ACTIVE_MANIPULATION: ("active manipulation", "crafting the model sent to clients"),
    Knowledge.CLIENT_SELECTION: (
        "client selection",
        "choosing participating clients and sending them different models",
    ),
    Knowledge.LABELS: ("labels", "the batch's labels as a multiset (extension, not in the SoK table)"),
}


@dataclass(frozen=True)
class ThreatModel:
    """A named set of granted :class:`Knowledge` flags."""

    id: str
    name: str
    grants: frozenset[Knowledge]
    applicability: str = ""

    def allows(self, knowledge: Knowledge) -> bool:
        """Whether the flag is granted. The label histogram of client data distribution also grants
        ``labels`` (the labels as a multiset)."""
        if knowledge is Knowledge.LABELS and Knowledge.CLIENT_DATA_DISTRIBUTION in self.grants:
            return True
        return knowledge in self.grants

    def with_changes(self, grant: Iterable[Knowledge] = (), revoke: Iterable[Knowledge] = ()) -> ThreatModel:
        """A custom threat model derived from this one, e.g. ``B+labels``."""
        add, rem = frozenset(grant) - self.grants, frozenset(revoke) & self.grants
        if not add and not rem:
            return self
        suffix = "".join(f"+{k.value}" for k in sorted(add, key=_order)) + "".join(
            f"-{k.value}" for k in sorted(rem, key=_order)
        )
        return ThreatModel(self.id + suffix, f"{self.name} (custom)", (self.grants | add) - rem, "custom")

    def describe(self) -> str:
        flags = ", ".join(k.label for k in sorted(self.grants, key=_order))
        return f"{self.id} ({self.name}): {flags}"


def _order(k: Knowledge) -> int:
    return list(Knowledge).index(k)


K = Knowledge
_TABLE: list[tuple[str, str, tuple[Knowledge, ...], str]] = [
    ("A", "Eavesdropper", (K.MODEL_UPDATES,), "***"),
    ("B", "Informed Eavesdropper", (K.MODEL_UPDATES, K.BASIC_KNOWLEDGE), "***"),
    (
        "C",
        "Parameter-Aware Eavesdropper",
        (K.MODEL_UPDATES, K.BASIC_KNOWLEDGE, K.TRAINING_DETAILS),
        "***",
    ),
    (
        "D",
        "Data-Enhanced Eavesdropper",
        (K.MODEL_UPDATES, K.BASIC_KNOWLEDGE, K.TRAINING_DETAILS, K.SURROGATE_DATA),
        "**",
    ),
    (
        "E",
        "Statistical-Informed Eavesdropper",
        (
            K.MODEL_UPDATES,
            K.BASIC_KNOWLEDGE,
            K.TRAINING_DETAILS,
            K.SURROGATE_DATA,
            K.CLIENT_DATA_DISTRIBUTION,
        ),
        "**",
    ),
    (
        "F",
        "Active Manipulator",
        (K.MODEL_UPDATES, K.BASIC_KNOWLEDGE, K.TRAINING_DETAILS, K.ACTIVE_MANIPULATION),
        "*",
    ),
    (
        "G",
        "Data-Enhanced Manipulator",
        (K.MODEL_UPDATES, K.BASIC_KNOWLEDGE, K.TRAINING_DETAILS, K.SURROGATE_DATA, K.ACTIVE_MANIPULATION),
        "*",
    ),
    (
        "H",
        "Active Client Manipulator",
        (
            K.MODEL_UPDATES,
            K.BASIC_KNOWLEDGE,
            K.TRAINING_DETAILS,
            K.SURROGATE_DATA,
            K.ACTIVE_MANIPULATION,
            K.CLIENT_SELECTION,
        ),
        "*",
    ),
]

THREAT_MODELS: dict[str, ThreatModel] = {
    tid: ThreatModel(tid, name, frozenset(flags), stars) for tid, name, flags, stars in _TABLE
}

#: Assumption levels of Du et al. (2025), §2.2, mapped onto knowledge flags.
LEVELS: dict[int, frozenset[Knowledge]] = {
    0: frozenset({K.MODEL_UPDATES, K.BASIC_KNOWLEDGE}),
    1: frozenset(),
    2: frozenset({K.SURROGATE_DATA}),
    3: frozenset({K.TRAINING_DETAILS}),
    4: frozenset({K.CLIENT_DATA_DISTRIBUTION}),
    5: frozenset({K.ACTIVE_MANIPULATION, K.CLIENT_SELECTION}),
}


def _parse_knowledge(name: str) -> Knowledge:
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return Knowledge(key)
    except ValueError:
        valid = [k.value for k in Knowledge]
        raise ConfigError(
            f"Unknown knowledge flag {name!r}.{did_you_mean(key, valid)} Valid flags: {', '.join(valid)}."
        ) from None


def get_threat_model(spec: str | ThreatModel) -> ThreatModel:
    """Look up ``"A"`` ... ``"H"``, optionally with ``+flag`` / ``-flag`` changes (``"B+labels"``)."""
    if isinstance(spec, ThreatModel):
        return spec
    text = str(spec).strip()
    base, changes = text[:1].upper(), text[1:]
    if base not in THREAT_MODELS:
        raise ConfigError(
            f"Unknown threat model {spec!r}. Valid threat models: "
            + "; ".join(f"{t.id} ({t.name})" for t in THREAT_MODELS.values())
            + ". Add or remove flags with '+flag' / '-flag', e.g. 'B+labels'."
        )
    grant: list[Knowledge] = []
    revoke: list[Knowledge] = []
    token = ""
    sign = ""
    for ch in changes + "+":
        if ch in "+-":
            if sign and token:
                (grant if sign == "+" else revoke).append(_parse_knowledge(token))
            elif sign or token:
                raise ConfigError(f"Malformed threat model {spec!r}; expected e.g. 'B+labels' or 'E-labels'.")
            sign, token = ch, ""
        else:
            token += ch
    return THREAT_MODELS[base].with_changes(grant, revoke)


def threat_model_from_levels(levels: Iterable[int]) -> ThreatModel:
    """A custom threat model granting the flags of Du et al.'s assumption levels (0–5)."""
    flags: set[Knowledge] = set()
    used = sorted(set(levels))
    for lvl in used:
        if lvl not in LEVELS:
            raise ConfigError(f"Expected assumption levels in 0..5, but got {lvl}.")
        flags |= LEVELS[lvl]
    return ThreatModel("L" + "".join(map(str, used)), f"Du et al. levels {used}", frozenset(flags), "custom")


def weakest_granting(needs: Iterable[Knowledge]) -> ThreatModel | None:
    """The named threat model (A–H) granting all ``needs`` with the fewest flags, if any."""
    need = frozenset(needs)
    fits = [t for t in THREAT_MODELS.values() if all(t.allows(k) for k in need)]
    if not fits:
        return None
    return min(fits, key=lambda t: (len(t.grants), t.id))


@dataclass(frozen=True)
class Requirement:
    """One piece of knowledge an attack needs, and why."""

    knowledge: Knowledge
    reason: str


def check_requirements(attack: str, requirements: Iterable[Requirement], threat: ThreatModel) -> list[str]:
    """Return one explanation per requirement the threat model does not grant (empty: allowed)."""
    reqs = list(requirements)
    missing = [r for r in reqs if not threat.allows(r.knowledge)]
    if not missing:
        return []
    target = weakest_granting(r.knowledge for r in reqs)
    custom = threat.id + "".join(f"+{r.knowledge.value}" for r in missing)
    hint = (
        f" The weakest threat model that grants it is {target.id} ({target.name}): set [threat] "
        f'model = "{target.id}" (or grant only what is missing: model = "{custom}").'
        if target is not None
        else f' No threat model in the A–H table grants all of these; use a custom one: model = "{custom}".'
    )
    out = []
    for r in missing:
        out.append(
            f"{attack} requires {r.knowledge.label} ({r.knowledge.exposes}) because {r.reason}; "
            f"threat model {threat.id} ({threat.name}) does not grant it.{hint}"
        )
    return out


def ensure_requirements(attack: str, requirements: Iterable[Requirement], threat: ThreatModel) -> None:
    problems = check_requirements(attack, requirements, threat)
    if problems:
        raise AttackRefused(" ".join(problems))


#: The view fields basic knowledge grants (:class:`gradinv.types.AttackerView`).
BASIC_FIELDS = ("num_samples", "input_shape", "num_classes", "normalization")


class Source(str, Enum):
    """Where a fact in the attacker's view came from."""

    GRANTED = "granted"  # the threat model grants it
    MODEL = "model"  # read off the global model the attacker sees (architecture, layer widths)
    ASSUMED = "assumed"  # assumed by the attack (the paper's assumption or a configured value)
    UNKNOWN = "unknown"  # neither granted nor revealed by the model (the view's field is None)

    @property
    def label(self) -> str:
        return _SOURCE_LABELS[self.value]


_SOURCE_LABELS = {
    "granted": "granted",
    "model": "inferred from the model",
    "assumed": "assumed",
    "unknown": "unknown",
}


@dataclass(frozen=True)
class Fact:
    """Provenance of one field of the attacker's view (``field``: a name in :data:`BASIC_FIELDS`):
    its ``source`` and, in words, how it was obtained (``detail``)."""

    field: str
    source: Source
    detail: str = ""

    def describe(self) -> str:
        return f"{self.field}: {self.source.label}" + (f" ({self.detail})" if self.detail else "")
