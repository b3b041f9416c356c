"""Secure aggregation against oracles: the plain (weighted) sum, exact integer sums, Lagrange
interpolation, closed-form noise scales; real client updates on real photos."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gradinv.errors import ConfigError, UpdateError
from gradinv.fl import AGGREGATORS, local_update, run_round, weighted_mean
from gradinv.fl.secure_aggregation import (
    SYBIL_INFO_KEY,
    SecureAggregator,
    SybilClient,
    decode_ring,
    encode_ring,
    pairwise_seed,
    public_key,
    secure_sum,
    shamir_reconstruct,
    shamir_share,
)
from gradinv.models import build_model
from gradinv.threat import observe
from gradinv.types import ClientUpdate, GroundTruth, ModelUpdate, TrainingConfig
from tests.helpers import photo_batch


def _random_updates(
    sizes: list[int], dim: int = 3000, seed: int = 0, kind: str = "gradient"
) -> list[ClientUpdate]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for k, n in enumerate(sizes):
        params = {"w": torch.randn(dim // 3, 2, generator=gen), "b": torch.randn(dim // 3, generator=gen)}
        out.append(ClientUpdate(k, ModelUpdate(kind, params), n, 1, 0.0))
    return out


def _flat(u: ModelUpdate) -> torch.Tensor:
    return torch.cat([t.reshape(-1).double() for t in u.params.values()])


def test_secure_is_registered_and_hides_individual_updates():
    cls = AGGREGATORS.get("secure")
    assert cls is SecureAggregator and cls.reveals_individual is False


def test_ring_sum_is_exact_and_close_to_the_float_sum():
    rng = np.random.default_rng(0)
    m, f = 6, 32
    values = {k: rng.normal(scale=3.0, size=5000) for k in range(m)}
    enc = {k: encode_ring(v, fraction_bits=f, parties=m) for k, v in values.items()}
    rnd = secure_sum(enc, seed=3)
    oracle = sum(e.view(np.int64).astype(object) for e in enc.values())  # Python ints: no overflow
    assert (rnd.total.view(np.int64).astype(object) == oracle).all()  # exact in the ring
    plain = sum(values.values())
    err = np.abs(decode_ring(rnd.total, fraction_bits=f) - plain).max()
    assert err <= m * 2.0 ** -(f + 1) + 1e-12  # only quantisation


def test_masked_vectors_are_uncorrelated_with_the_plaintext():
    rng = np.random.default_rng(1)
    m, d = 4, 20000
    values = {k: rng.normal(size=d) * (k + 1) for k in range(m)}
    rnd = secure_sum({k: encode_ring(v, fraction_bits=24, parties=m) for k, v in values.items()}, seed=5)
    for k in range(m):
        masked = rnd.masked[k].view(np.int64).astype(np.float64)
        corr = np.corrcoef(masked, values[k])[0, 1]
        assert abs(corr) < 4 / np.sqrt(d)
        # masks spread over the whole ring: the masked values are ~uniform on [-2^63, 2^63)
        assert np.abs(masked).mean() > 2.0**61


def test_aggregate_equals_plain_weighted_mean_on_real_updates(photos):
    model = build_model("mlp", num_classes=10, in_channels=3, image_size=(16, 16), hidden=(32,), seed=0)
    batches = [photo_batch(photos, idx, size=16) for idx in ([0], [1, 2], [3, 4, 5], [6, 7])]
    tr = TrainingConfig("fedsgd")
    plain = run_round(model, batches, tr, aggregator="mean")
    secure = run_round(model, batches, tr, aggregator="secure")
    assert secure.reveals_individual is False and secure.aggregation == "secure"
    for name, t in plain.aggregate.params.items():
        torch.testing.assert_close(secure.aggregate.params[name], t, rtol=1e-6, atol=1e-8)
    assert len(secure.server_received) == len(batches)
    for u, y in zip(plain.updates, secure.server_received):
        assert not torch.allclose(_flat(y), _flat(u.update) * u.num_samples)


def test_per_client_models_through_secure_aggregation(photos):
    """A server sending different models: the aggregate is still the weighted mean of what each
    client computed on the model it received."""
    base = build_model("mlp", num_classes=10, in_channels=3, image_size=(16, 16), hidden=(16,), seed=0)
    models = [
        build_model("mlp", num_classes=10, in_channels=3, image_size=(16, 16), hidden=(16,), seed=s)
        for s in range(3)
    ]
    assert base is not models[0]
    batches = [photo_batch(photos, [k], size=16) for k in range(3)]
    tr = TrainingConfig("fedavg", epochs=2, batch_size=1, lr=0.05)
    rnd = run_round(models, batches, tr, aggregator="secure")
    oracle = weighted_mean(
        [local_update(m, b, tr, client_id=k).update for k, (m, b) in enumerate(zip(models, batches))],
        [1, 1, 1],
    )
    for name, t in oracle.params.items():
        torch.testing.assert_close(rnd.aggregate.params[name], t, rtol=1e-6, atol=1e-8)
    truth = GroundTruth(
        models[0], tuple(batches), tr, rnd, num_classes=10, victim=1, client_models=tuple(models)
    )
    view = observe(truth, "B")
    assert view.aggregated_over == 3 and view.num_samples == 3
    for name, p in view.model.named_parameters():  # the victim's received model, not model 0
        torch.testing.assert_close(p, dict(models[1].named_parameters())[name])
    torch.testing.assert_close(view.update.params["net.1.weight"], rnd.aggregate.params["net.1.weight"])


def test_dropout_recovers_the_survivors_sum():
    ups = _random_updates([1, 2, 3, 4, 5])
    agg, received = SecureAggregator(dropped=(1, 3), seed=7).aggregate(ups)
    survivors = [u for u in ups if u.client_id not in (1, 3)]
    oracle = weighted_mean([u.update for u in survivors], [u.num_samples for u in survivors])
    torch.testing.assert_close(_flat(agg), _flat(oracle), rtol=1e-6, atol=1e-7)
    assert len(received) == 3


def test_too_many_dropouts_are_refused_and_bad_ids_named():
    ups = _random_updates([1] * 5)
    with pytest.raises(UpdateError, match="threshold = 3 surviving clients"):
        SecureAggregator(dropped=(0, 1, 2)).aggregate(ups)
    SecureAggregator(dropped=(0, 1, 2), threshold=2).aggregate(ups)  # a lower threshold suffices
    with pytest.raises(ConfigError, match=r"unknown id\(s\) \[9\]"):
        SecureAggregator(dropped=(9,)).aggregate(ups)


def test_shamir_shares_reconstruct_with_threshold_only():
    secret = 2**200 + 12345
    shares = shamir_share(secret, [1, 2, 3, 4, 5, 6], 4, salt="t")
    for pick in ([1, 2, 3, 4], [6, 5, 2, 3], [1, 3, 5, 6, 2]):
        assert shamir_reconstruct({x: shares[x] for x in pick}) == secret
    assert shamir_reconstruct({x: shares[x] for x in [1, 2, 3]}) != secret


def test_key_agreement_is_symmetric_and_pairwise_distinct():
    keys = [1111, 2222, 3333]
    s01 = pairwise_seed(keys[0], public_key(keys[1]))
    assert s01 == pairwise_seed(keys[1], public_key(keys[0]))
    assert s01 != pairwise_seed(keys[0], public_key(keys[2]))


def test_options_are_validated():
    with pytest.raises(ConfigError, match="Valid keys"):
        SecureAggregator(ddp_sigmaa=1.0)
    with pytest.raises(ConfigError, match="fraction_bits"):
        SecureAggregator(fraction_bits=4)
    with pytest.raises(ConfigError, match="ddp_sigma"):
        SecureAggregator(ddp_sigma=-1.0)


def test_ring_overflow_is_refused_with_a_fix():
    ups = [
        ClientUpdate(k, ModelUpdate("gradient", {"w": torch.full((3,), 1e9)}), 1, 1, 0.0) for k in range(4)
    ]
    with pytest.raises(UpdateError, match="fraction_bits"):
        SecureAggregator().aggregate(ups)
    SecureAggregator(fraction_bits=16).aggregate(ups)


def _zero_updates(m: int, dim: int, sybils: int = 0) -> list[ClientUpdate]:
    return [
        ClientUpdate(
            k,
            ModelUpdate("gradient", {"w": torch.zeros(dim)}),
            1,
            1,
            0.0,
            {SYBIL_INFO_KEY: 1.0} if k < sybils else {},
        )
        for k in range(m)
    ]


@pytest.mark.parametrize(("sybils", "expected_factor"), [(0, 1.0), (7, 1 / np.sqrt(8))])
def test_distributed_dp_noise_scale_of_the_sum(sybils, expected_factor):
    m, d, sigma = 8, 40000, 0.5
    agg, _ = SecureAggregator(ddp_sigma=sigma, weighting="uniform", seed=11).aggregate(
        _zero_updates(m, d, sybils)
    )
    noise_of_sum = agg.params["w"].double() * m
    # sample std of d Gaussian draws: relative standard error 1/sqrt(2d) = 0.35%
    assert abs(noise_of_sum.std().item() / (sigma * expected_factor) - 1) < 0.02
    assert abs(noise_of_sum.mean().item()) < 5 * sigma * expected_factor / np.sqrt(d)


def test_distributed_dp_noise_is_deterministic_per_seed():
    ups = _zero_updates(3, 1000)
    a, _ = SecureAggregator(ddp_sigma=1.0, seed=1).aggregate(ups)
    b, _ = SecureAggregator(ddp_sigma=1.0, seed=1).aggregate(ups)
    c, _ = SecureAggregator(ddp_sigma=1.0, seed=2).aggregate(ups)
    assert torch.equal(a.params["w"], b.params["w"]) and not torch.equal(a.params["w"], c.params["w"])


def test_clipping_bounds_each_contribution():
    ups = _random_updates([1, 1, 1], dim=300, seed=4)
    clip = 0.5
    agg, _ = SecureAggregator(ddp_clip=clip, weighting="uniform").aggregate(ups)
    oracle = sum(_flat(u.update) * min(1.0, clip / float(_flat(u.update).norm())) for u in ups) / 3
    torch.testing.assert_close(_flat(agg), oracle, rtol=1e-6, atol=1e-8)


def test_sybil_client_sends_a_zero_update_and_says_so(photos):
    model = build_model("mlp", num_classes=10, in_channels=3, image_size=(16, 16), hidden=(8,), seed=0)
    batch = photo_batch(photos, [0, 1], size=16)
    for tr in (TrainingConfig("fedsgd"), TrainingConfig("fedavg", epochs=1, batch_size=1)):
        upd = local_update(copy.deepcopy(model), batch, tr, hooks=SybilClient())
        assert all(float(t.abs().max()) == 0 for t in upd.update.params.values())
        assert upd.info == {SYBIL_INFO_KEY: 1.0}
