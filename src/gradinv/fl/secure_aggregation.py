"""Secure aggregation with pairwise masks, dropout recovery and distributed DP noise.

Protocol: Bonawitz, Ivanov, Kreuter, Marcedone, McMahan, Patel, Ramage, Segal, Seth, "Practical
Secure Aggregation for Privacy-Preserving Machine Learning", ACM CCS 2017 (the semi-honest variant,
§4 of the paper). Every client ``u`` of the round:

1. **Advertise keys.** Holds a key-agreement pair ``(sk_u, pk_u = g^sk_u mod p)`` and a self-mask seed
   ``b_u``.
2. **Share keys.** Splits ``sk_u`` and ``b_u`` into Shamir shares (threshold ``t``), one per client.
3. **Masked input.** Sends ``y_u = x_u + PRG(b_u) + sum_{v > u} PRG(s_uv) - sum_{v < u} PRG(s_uv)`` in
   the ring ``Z_{2^64}``, with ``s_uv = H(pk_v^sk_u mod p)`` the pairwise seed both ends derive
   (Diffie–Hellman). Pairwise masks cancel in the sum.
4. **Unmasking.** If at least ``t`` clients survive, they reveal their shares of ``b_u`` for every
   survivor and of ``sk_v`` for every client ``v`` that dropped out after step 2; the server
   rebuilds those secrets, removes the survivors' self-masks and the dropped clients' leftover
   pairwise masks, and learns only ``sum_{u survived} x_u``. Fewer than ``t`` survivors: the round
   is refused with an :class:`~gradinv.errors.UpdateError`.

Arithmetic is **exact**: each client quantises its contribution to fixed point with ``fraction_bits``
fractional bits (``q = round(x * 2^f)``, int64 in two's complement, i.e. ``Z_{2^64}``), masks add
and cancel modulo ``2^64`` without error, and the decoded sum equals ``sum_u q_u / 2^f`` exactly (then
rounded once to float64). The only error is quantisation, at most ``M * 2^-(f+1)`` per coordinate of
the sum of M clients (``2.3e-9`` for M = 10, f = 32). A client whose values would let the ring sum
overflow (``|q| * M >= 2^63``) is refused with an error naming ``fraction_bits``.

Weighting (FedAvg's sample-weighted mean): each client pre-scales its update by its weight ``w_u``
(its sample count, or 1 with ``weighting = "uniform"``) and appends ``w_u`` as one more masked
coordinate, so the server learns only the sums ``sum w_u x_u`` and ``sum w_u`` and divides.

Distributed DP (``ddp_sigma``, ``ddp_clip``): before masking, each of the M clients of the round
clips its parameter update to L2 norm ``ddp_clip`` (if set) and adds ``N(0, ddp_sigma^2 / M)`` to
every coordinate of its weighted contribution, so the sum carries ``N(0, ddp_sigma^2)`` (Kairouz,
Liu, Steinke, "The Distributed Discrete Gaussian Mechanism for Federated Learning with Secure
Aggregation", ICML 2021, with continuous noise here). Buffer deltas (BatchNorm statistics) are
masked but neither clipped nor noised. Clients controlled by the server (sybils, marked by
:class:`SybilClient` through ``ClientUpdate.info["sybil"]``) add no noise: that is the attack of
Boenisch et al. (EuroS&P 2023, ``gradinv.attacks.sybil_ddp``).

Simulation, not cryptography: key agreement is textbook Diffie–Hellman in ``Z_p^*`` with
``p = 2^255 - 19``, ``g = 2`` (no authentication, no side-channel care); secrets derive from
``seed`` and the client id through SHA-256; the PRG is NumPy's PCG64 (the paper uses AES in counter
mode); shares are not encrypted between clients (the paper routes them through the server under
authenticated encryption). What the server *reads* is faithful: the masked vectors and the sum.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import torch

from gradinv.errors import ConfigError, UpdateError
from gradinv.fl.aggregation import AGGREGATORS
from gradinv.fl.server import SYBIL_INFO_KEY, SybilClient
from gradinv.settings import as_dict, from_mapping
from gradinv.types import ClientUpdate, ModelUpdate, UpdateKind

__all__ = [
    "SYBIL_INFO_KEY",
    "MaskedRound",
    "SecureAggregationConfig",
    "SecureAggregator",
    "SybilClient",
    "decode_ring",
    "encode_ring",
    "pairwise_seed",
    "prg_mask",
    "public_key",
    "secure_sum",
    "shamir_reconstruct",
    "shamir_share",
]

logger = logging.getLogger(__name__)

Ring = npt.NDArray[np.uint64]

_P = 2**255 - 19  # prime modulus of the (toy) Diffie-Hellman group
_G = 2
_Q = 2**521 - 1  # Mersenne prime: field of the Shamir shares (larger than every secret)


# --------------------------------------------------------------------------------------------------
# Primitives: secrets, key agreement, PRG, Shamir shares, fixed point
# --------------------------------------------------------------------------------------------------


def _derive(*parts: object, modulus: int) -> int:
    """A deterministic integer in ``[1, modulus)`` from SHA-512 of ``parts``."""
    digest = hashlib.sha512("|".join(map(str, ("gradinv-secagg", *parts))).encode()).digest()
    extra = hashlib.sha512(digest).digest()
    return int.from_bytes(digest + extra, "big") % (modulus - 1) + 1


def _secret_key(seed: int, client: int) -> int:
    return _derive(seed, client, "sk", modulus=_P - 1)


def _self_seed(seed: int, client: int) -> int:
    return _derive(seed, client, "b", modulus=2**256)


def public_key(secret: int) -> int:
    """``g^secret mod p``: the key a client advertises."""
    return pow(_G, secret, _P)


def pairwise_seed(secret: int, other_public: int) -> int:
    """The seed two clients share: SHA-256 of the Diffie–Hellman secret ``other_public^secret``.

    >>> a, b = 12345, 67890
    >>> pairwise_seed(a, public_key(b)) == pairwise_seed(b, public_key(a))
    True
    """
    shared = pow(other_public, secret, _P)
    return int.from_bytes(hashlib.sha256(shared.to_bytes(32, "big")).digest(), "big")


def prg_mask(seed: int, size: int) -> Ring:
    """``size`` pseudo-random elements of ``Z_{2^64}`` expanded from ``seed`` (PCG64)."""
    out: Ring = np.random.PCG64(seed).random_raw(size)
    return out


def shamir_share(secret: int, xs: Sequence[int], threshold: int, *, salt: object = "") -> dict[int, int]:
    """Shamir shares ``{x: f(x)}`` of ``secret`` (``f`` of degree ``threshold - 1`` over ``GF(2^521-1)``,
    ``f(0) = secret``); coefficients derive from ``salt`` (deterministic simulation).

    >>> shares = shamir_share(42, [1, 2, 3, 4], 3, salt="doc")
    >>> shamir_reconstruct({x: shares[x] for x in (1, 3, 4)})
    42
    """
    if not 1 <= threshold <= len(xs):
        raise ConfigError(f"Expected a threshold in [1, {len(xs)}], but got {threshold}.")
    if any(x % _Q == 0 for x in xs) or len(set(xs)) != len(xs):
        raise ConfigError(f"Expected distinct non-zero share points, but got {list(xs)}.")
    coeffs = [secret % _Q] + [_derive(salt, "coef", i, modulus=_Q) for i in range(1, threshold)]

    def f(x: int) -> int:  # Horner
        acc = 0
        for c in reversed(coeffs):
            acc = (acc * x + c) % _Q
        return acc

    return {x: f(x) for x in xs}


def shamir_reconstruct(shares: Mapping[int, int]) -> int:
    """The secret ``f(0)`` from ``{x: f(x)}`` by Lagrange interpolation (needs ``threshold`` shares)."""
    xs = list(shares)
    total = 0
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * (-xj) % _Q
                den = den * (xi - xj) % _Q
        total = (total + shares[xi] * num * pow(den, -1, _Q)) % _Q
    return total


def encode_ring(values: npt.NDArray[np.float64], *, fraction_bits: int, parties: int) -> Ring:
    """Fixed-point encoding ``round(x * 2^f)`` as elements of ``Z_{2^64}`` (two's complement).

    Raises :class:`UpdateError` when a sum of ``parties`` such values could overflow the ring.

    >>> r = encode_ring(np.array([1.5, -0.25]), fraction_bits=8, parties=2)
    >>> decode_ring(r + r, fraction_bits=8).tolist()
    [3.0, -0.5]
    """
    scaled = np.rint(np.asarray(values, dtype=np.float64) * 2.0**fraction_bits)
    limit = 2.0**63 / parties
    peak = float(np.abs(scaled).max()) if scaled.size else 0.0
    if not peak < limit:
        raise UpdateError(
            f"Expected every fixed-point value |x| * 2^{fraction_bits} below 2^63 / {parties} clients "
            f"(|x| < {limit / 2.0**fraction_bits:.3g}), but got |x| = {peak / 2.0**fraction_bits:.3g}. "
            "Lower `fraction_bits` in aggregation_options, or clip the updates."
        )
    out: Ring = scaled.astype(np.int64).view(np.uint64)
    return out


def decode_ring(ring: Ring, *, fraction_bits: int) -> npt.NDArray[np.float64]:
    """Inverse of :func:`encode_ring` for a (sum of) encoded vector(s)."""
    out: npt.NDArray[np.float64] = ring.view(np.int64).astype(np.float64) / 2.0**fraction_bits
    return out


# --------------------------------------------------------------------------------------------------
# The protocol on ring vectors
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskedRound:
    """What the server holds after one round: each survivor's masked vector and the unmasked sum
    (both in ``Z_{2^64}``), who survived and who dropped out."""

    masked: Mapping[int, Ring]
    total: Ring
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    threshold: int


def _check_clients(ids: Sequence[int], threshold: int | None, dropped: Iterable[int]) -> tuple[int, set[int]]:
    n = len(ids)
    t = n // 2 + 1 if threshold is None else threshold
    if not 1 <= t <= n:
        raise ConfigError(
            f"Expected the secure-aggregation `threshold` in [1, {n}] for {n} clients, but got {t}."
        )
    gone = set(dropped)
    unknown = sorted(gone - set(ids))
    if unknown:
        raise ConfigError(
            f"Expected `dropped` to list client ids of the round ({', '.join(map(str, ids))}), but got "
            f"unknown id(s) {unknown}."
        )
    survivors = n - len(gone)
    if survivors < t:
        raise UpdateError(
            f"Expected at least threshold = {t} surviving clients to unmask the sum, but got {survivors} "
            f"of {n} ({len(gone)} dropped). The server cannot recover the aggregate; lower `threshold` "
            "or drop fewer clients."
        )
    return t, gone


def secure_sum(
    inputs: Mapping[int, Ring],
    *,
    seed: int = 0,
    threshold: int | None = None,
    dropped: Iterable[int] = (),
) -> MaskedRound:
    """Run the masking and unmasking rounds over the clients' ring vectors ``{client_id: x_u}``.

    ``dropped`` clients advertise keys and share secrets but send no masked input; the sum covers
    the survivors. ``threshold`` (default ``floor(M / 2) + 1``) is the Shamir threshold."""
    ids = sorted(inputs)
    if not ids:
        raise UpdateError("Expected at least one client input to aggregate, but got none.")
    size = {int(v.shape[0]) for v in inputs.values()}
    if len(size) != 1:
        raise UpdateError(f"Expected client vectors of one length, but got lengths {sorted(size)}.")
    (d,) = size
    t, gone = _check_clients(ids, threshold, dropped)
    survivors = [u for u in ids if u not in gone]

    # rounds 0-1: keys and shares (share points x = id + 1; client ids are >= 0)
    sk = {u: _secret_key(seed, u) for u in ids}
    pk = {u: public_key(sk[u]) for u in ids}
    b = {u: _self_seed(seed, u) for u in ids}
    points = [u + 1 for u in ids]
    sk_shares = {u: shamir_share(sk[u], points, t, salt=(seed, u, "sk")) for u in ids}
    b_shares = {u: shamir_share(b[u], points, t, salt=(seed, u, "b")) for u in ids}

    # round 2: masked inputs (each pairwise mask expanded once, added by one end, subtracted by the other)
    masked = {u: inputs[u].astype(np.uint64, copy=True) + prg_mask(b[u], d) for u in survivors}
    for i, u in enumerate(ids):
        for v in ids[i + 1 :]:
            if u in gone and v in gone:
                continue
            m = prg_mask(pairwise_seed(sk[u], pk[v]), d)
            if u not in gone:
                masked[u] += m
            if v not in gone:
                masked[v] -= m

    # round 4: unmasking from `t` survivors' shares
    helpers = [u + 1 for u in survivors[:t]]
    total = np.zeros(d, dtype=np.uint64)
    for u in survivors:
        total += masked[u]
    for u in survivors:
        b_u = shamir_reconstruct({x: b_shares[u][x] for x in helpers})
        total -= prg_mask(b_u, d)
    for v in sorted(gone):
        sk_v = shamir_reconstruct({x: sk_shares[v][x] for x in helpers})
        for u in survivors:
            m = prg_mask(pairwise_seed(sk_v, pk[u]), d)
            if u < v:
                total -= m  # u added +PRG(s_uv)
            else:
                total += m  # u subtracted PRG(s_vu)
    logger.debug(
        "secure aggregation: %d clients, %d dropped, threshold %d, %d coordinates", len(ids), len(gone), t, d
    )
    return MaskedRound(masked, total, tuple(survivors), tuple(sorted(gone)), t)


# --------------------------------------------------------------------------------------------------
# The aggregator
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecureAggregationConfig:
    """Options of ``aggregation = "secure"`` (``[server] aggregation_options``).

    * ``seed``: derives every client's secrets (and DDP noise); the round is deterministic.
    * ``fraction_bits``: fixed-point precision ``f`` (quantisation step ``2^-f``).
    * ``threshold``: Shamir threshold ``t`` (default ``floor(M / 2) + 1``).
    * ``dropped``: client ids that drop out after sharing their keys (their updates are lost; the
      survivors' sum is recovered if at least ``t`` survive).
    * ``weighting``: ``samples`` (FedAvg's weighted mean) or ``uniform``.
    * ``ddp_sigma``: standard deviation of the distributed-DP noise in the *sum* (0: off).
    * ``ddp_clip``: L2 bound each client clips its parameter update to before weighting (None: off).
    """

    seed: int = 0
    fraction_bits: int = 32
    threshold: int | None = None
    dropped: tuple[int, ...] = ()
    weighting: Literal["samples", "uniform"] = "samples"
    ddp_sigma: float = 0.0
    ddp_clip: float | None = None

    def __post_init__(self) -> None:
        if not 8 <= self.fraction_bits <= 52:
            raise ConfigError(
                f"Expected `fraction_bits` to be an int in [8, 52], but got {self.fraction_bits}. "
                "32 keeps a quantisation step of 2.3e-10 with room for sums up to 2^31."
            )
        if self.threshold is not None and self.threshold < 1:
            raise ConfigError(f"Expected `threshold` >= 1 (or unset), but got {self.threshold}.")
        if self.weighting not in ("samples", "uniform"):
            raise ConfigError(f"Expected `weighting` 'samples' or 'uniform', but got {self.weighting!r}.")
        if not (math.isfinite(self.ddp_sigma) and self.ddp_sigma >= 0):
            raise ConfigError(f"Expected `ddp_sigma` to be a finite number >= 0, but got {self.ddp_sigma}.")
        if self.ddp_clip is not None and not (math.isfinite(self.ddp_clip) and self.ddp_clip > 0):
            raise ConfigError(f"Expected `ddp_clip` > 0 (or unset), but got {self.ddp_clip}.")

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


@dataclass(frozen=True)
class _Layout:
    """How a :class:`ModelUpdate` flattens into one vector: parameters, then buffers."""

    params: tuple[tuple[str, tuple[int, ...], torch.dtype], ...]
    buffers: tuple[tuple[str, tuple[int, ...], torch.dtype], ...]

    @classmethod
    def of(cls, update: ModelUpdate) -> _Layout:
        def spec(d: Mapping[str, torch.Tensor]) -> tuple[tuple[str, tuple[int, ...], torch.dtype], ...]:
            return tuple((k, tuple(v.shape), v.dtype) for k, v in d.items())

        return cls(spec(update.params), spec(update.buffers))

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for _, s, _ in self.params)

    def check(self, cu: ClientUpdate, kind: UpdateKind) -> None:
        if cu.update.kind is not kind:
            raise UpdateError(
                f"Expected updates of one kind ({kind.value}), but client {cu.client_id} sent "
                f"{cu.update.kind.value}."
            )
        got = _Layout.of(cu.update)
        if [(k, s) for k, s, _ in got.params + got.buffers] != [
            (k, s) for k, s, _ in self.params + self.buffers
        ]:
            raise UpdateError(
                f"Expected every client to send the same tensors (names and shapes) in the same order, "
                f"but client {cu.client_id} differs. Secure aggregation needs one model architecture."
            )

    def flatten(self, update: ModelUpdate) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        def cat(d: Mapping[str, torch.Tensor]) -> npt.NDArray[np.float64]:
            if not d:
                return np.zeros(0)
            return torch.cat([t.detach().reshape(-1).double().cpu() for t in d.values()]).numpy()

        return cat(update.params), cat(update.buffers)

    def unflatten(self, vec: npt.NDArray[np.float64], kind: UpdateKind, *, cast: bool = True) -> ModelUpdate:
        """Tensors of the layout's shapes (and dtypes, unless ``cast`` is False: float64)."""
        flat = torch.from_numpy(np.ascontiguousarray(vec))
        out: list[dict[str, torch.Tensor]] = [{}, {}]
        i = 0
        for slot, specs in enumerate((self.params, self.buffers)):
            for name, shape, dtype in specs:
                n = math.prod(shape)
                out[slot][name] = flat[i : i + n].reshape(shape).to(dtype if cast else flat.dtype)
                i += n
        return ModelUpdate(kind, out[0], out[1])


def _noise_generator(seed: int, client: int) -> torch.Generator:
    return torch.Generator().manual_seed(_derive(seed, client, "ddp", modulus=2**63))


@AGGREGATORS.register("secure")
class SecureAggregator:
    """Secure aggregation (Bonawitz et al., CCS 2017): the server sees only masked vectors and the
    (weighted) sum; optional distributed DP noise. See the module docstring.

    >>> SecureAggregator(ddp_sigma=0.1).config.ddp_sigma
    0.1
    """

    name: ClassVar[str] = "secure"
    reveals_individual: ClassVar[bool] = False

    def __init__(self, config: SecureAggregationConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise ConfigError("Pass either a SecureAggregationConfig or keyword options, not both.")
        self.config = config or from_mapping(
            SecureAggregationConfig, options, section="server.aggregation_options", context="for 'secure'"
        )

    def _contribution(self, cu: ClientUpdate, layout: _Layout, *, parties: int) -> npt.NDArray[np.float64]:
        """What client ``cu`` feeds into the masking, in float64: its (clipped, noised) weighted
        parameters, its weighted buffer deltas, then its weight."""
        cfg = self.config
        params, buffers = layout.flatten(cu.update)
        weight = float(cu.num_samples) if cfg.weighting == "samples" else 1.0
        if cfg.ddp_clip is not None:
            norm = float(np.linalg.norm(params))
            if norm > cfg.ddp_clip:
                params = params * (cfg.ddp_clip / norm)
        params = params * weight
        sybil = cu.info.get(SYBIL_INFO_KEY, 0.0) > 0
        if cfg.ddp_sigma > 0 and not sybil:
            std = cfg.ddp_sigma / math.sqrt(parties)
            gen = _noise_generator(cfg.seed, cu.client_id)
            params = params + std * torch.randn(params.size, generator=gen, dtype=torch.float64).numpy()
        return np.concatenate([params, buffers * weight, [weight]])

    def aggregate(self, updates: Sequence[ClientUpdate]) -> tuple[ModelUpdate, tuple[ModelUpdate, ...]]:
        """Return (weighted mean of the survivors' updates, the survivors' masked vectors). The masked
        vectors are the ring elements read as fixed point (float64): uniformly spread, uncorrelated
        with the plaintext."""
        if not updates:
            raise UpdateError("Expected at least one update to aggregate, but got none.")
        ids = [u.client_id for u in updates]
        if len(set(ids)) != len(ids) or min(ids) < 0:
            raise UpdateError(f"Expected distinct client ids >= 0, but got {ids}.")
        kind = updates[0].update.kind
        layout = _Layout.of(updates[0].update)
        for cu in updates:
            layout.check(cu, kind)
        cfg = self.config
        m = len(updates)
        inputs = {
            cu.client_id: encode_ring(
                self._contribution(cu, layout, parties=m), fraction_bits=cfg.fraction_bits, parties=m
            )
            for cu in updates
        }
        rnd = secure_sum(inputs, seed=cfg.seed, threshold=cfg.threshold, dropped=cfg.dropped)
        total = decode_ring(rnd.total, fraction_bits=cfg.fraction_bits)
        weight = float(total[-1])
        if weight <= 0:
            raise UpdateError(
                f"Expected a positive total weight, but the survivors' weights sum to {weight}."
            )
        aggregate = layout.unflatten(total[:-1] / weight, kind)
        received = tuple(
            layout.unflatten(
                decode_ring(rnd.masked[u], fraction_bits=cfg.fraction_bits)[:-1], kind, cast=False
            )
            for u in rnd.survivors
        )
        if rnd.dropped:
            logger.info(
                "secure aggregation: clients %s dropped; aggregate over %s", rnd.dropped, rnd.survivors
            )
        return aggregate, received
