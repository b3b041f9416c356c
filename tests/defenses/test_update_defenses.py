"""Property and oracle tests of the update-stage defenses: QSGD, signSGD, top-k, pruning,
Gaussian noise with clipping, flat clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradinv.defenses import DefenseChain, create_defense
from gradinv.defenses.clipping import clip_values
from gradinv.defenses.noise import clip_global_norm
from gradinv.defenses.pruning import prune_smallest
from gradinv.defenses.qsgd import qsgd_quantize
from gradinv.defenses.signsgd import sign_compress
from gradinv.defenses.topk import keep_topk
from gradinv.errors import ConfigError
from gradinv.types import ModelUpdate, UpdateKind
from tests.defenses.conftest import make_ctx, real_update


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------- QSGD


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("bucket_size", [None, 64])
@pytest.mark.parametrize("norm", ["l2", "max"])
def test_qsgd_at_most_2k_levels_per_bucket(lenet, batch, bits, bucket_size, norm):
    t = real_update(lenet, batch).params["body.2.weight"].reshape(-1)  # 3600 real gradient entries
    q = qsgd_quantize(t, bits=bits, bucket_size=bucket_size, norm=norm, generator=_gen())
    s = 2**bits - 1
    d = t.numel() if bucket_size is None else bucket_size
    for start in range(0, t.numel(), d):
        v, qv = t[start : start + d].double(), q[start : start + d].double()
        scale = v.norm() if norm == "l2" else v.abs().max()
        levels = torch.unique(qv.abs())
        assert len(levels) <= 2**bits
        # every magnitude is scale * l / s for an integer l in [0, s]; signs follow the input
        ell = qv.abs() / scale * s
        assert torch.allclose(ell, ell.round(), atol=1e-6) and ell.max() <= s + 1e-6
        nz = qv != 0
        assert (torch.sign(qv[nz]) == torch.sign(v[nz])).all()


@pytest.mark.parametrize("bits,norm", [(1, "l2"), (2, "max"), (3, "l2")])
def test_qsgd_is_unbiased_monte_carlo(lenet, batch, bits, norm):
    v = real_update(lenet, batch).params["fc.weight"][:3].reshape(-1)  # 576 entries
    reps = 4000
    # one bucket per copy of v: `reps` independent quantisations in one call
    q = qsgd_quantize(v.repeat(reps), bits=bits, bucket_size=v.numel(), norm=norm, generator=_gen(1))
    mean = q.view(reps, -1).double().mean(0)
    scale = float(v.norm() if norm == "l2" else v.abs().max())
    # each entry's variance is at most (scale / s)^2 / 4: allow 5 standard errors
    tol = 5 * scale / (2**bits - 1) / 2 / math.sqrt(reps)
    assert (mean - v.double()).abs().max() < tol
    # deterministic rounding to the nearest level would be biased by far more than tol
    nearest = (v.double().abs() / scale * (2**bits - 1)).round() * scale / (2**bits - 1) * torch.sign(v)
    assert (nearest - v.double()).abs().max() > 3 * tol


def test_qsgd_zero_and_high_precision():
    z = torch.zeros(10)
    assert torch.equal(qsgd_quantize(z, bits=2, generator=_gen()), z)
    t = torch.randn(100, generator=_gen(3))
    q = qsgd_quantize(t, bits=16, generator=_gen())
    assert (q - t).abs().max() <= t.norm() / (2**16 - 1) + 1e-6


def test_qsgd_defense_quantises_every_tensor_and_is_seeded(lenet, batch):
    upd = real_update(lenet, batch)
    d = create_defense("qsgd", bits=2, bucket_size=128)
    a = DefenseChain.of([d]).on_update(upd, make_ctx(lenet, batch, client_id=0))
    b = DefenseChain.of([d]).on_update(upd, make_ctx(lenet, batch, client_id=0))
    c = DefenseChain.of([d]).on_update(upd, make_ctx(lenet, batch, client_id=1))
    assert all(torch.equal(a.params[k], b.params[k]) for k in upd.params)  # same client seed
    assert any(not torch.equal(a.params[k], c.params[k]) for k in upd.params)  # another client
    for k in upd.params:
        assert len(torch.unique(a.params[k].abs())) <= 4 * math.ceil(upd.params[k].numel() / 128)


@pytest.mark.parametrize("bad", [{"bits": 0}, {"bits": 17}, {"bucket_size": 0}, {"norm": "l1"}])
def test_qsgd_rejects_bad_config(bad):
    with pytest.raises(ConfigError, match="Expected"):
        create_defense("qsgd", **bad)


# ------------------------------------------------------------------------------------------ signSGD


def test_signsgd_outputs_plus_minus_scale(lenet, batch):
    upd = real_update(lenet, batch)
    out = create_defense("signsgd").apply(upd, make_ctx(lenet, batch))[0]
    for k, t in upd.params.items():
        s = float(t.abs().mean())  # closed form: ||t||_1 / d
        torch.testing.assert_close(out.params[k].abs(), torch.full_like(t, s))
        assert torch.equal(out.params[k] >= 0, t >= 0)
    raw = create_defense("signsgd", scale="none").apply(upd, make_ctx(lenet, batch))[0]
    assert all(set(torch.unique(v).tolist()) <= {-1.0, 1.0} for v in raw.params.values())


def test_sign_of_zero_is_positive():
    assert sign_compress(torch.tensor([0.0, -2.0]), scale="none").tolist() == [1.0, -1.0]


# --------------------------------------------------------------------------------- top-k and pruning


@pytest.mark.parametrize("scope", ["global", "tensor"])
@pytest.mark.parametrize("k", [1, 37, 500])
def test_topk_keeps_exactly_the_k_largest(lenet, batch, scope, k):
    params = dict(real_update(lenet, batch).params)
    out = keep_topk(params, k=k, scope=scope)
    groups = [list(params)] if scope == "global" else [[n] for n in params]
    for names in groups:
        x = np.concatenate([params[n].reshape(-1).numpy() for n in names])
        y = np.concatenate([out[n].reshape(-1).numpy() for n in names])
        kk = min(k, x.size)
        oracle = np.argsort(-np.abs(x), kind="stable")[:kk]
        assert np.count_nonzero(y) == kk
        assert set(np.flatnonzero(y)) == set(oracle)
        np.testing.assert_array_equal(y[oracle], x[oracle])


def test_topk_ratio_rounds_up_and_validates(lenet, batch):
    params = dict(real_update(lenet, batch).params)
    n = sum(t.numel() for t in params.values())
    out = keep_topk(params, ratio=0.013)
    assert sum(int((t != 0).sum()) for t in out.values()) == math.ceil(0.013 * n)
    with pytest.raises(ConfigError, match="both"):
        create_defense("topk", k=3, ratio=0.5)
    with pytest.raises(ConfigError, match="ratio"):
        create_defense("topk", ratio=0.0)
    assert create_defense("topk").config.ratio == 0.1


@pytest.mark.parametrize("scope", ["tensor", "global"])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.7])
def test_pruning_removes_the_p_smallest(lenet, batch, scope, p):
    params = dict(real_update(lenet, batch).params)
    out = prune_smallest(params, ratio=p, scope=scope)
    groups = [list(params)] if scope == "global" else [[n] for n in params]
    for names in groups:
        x = np.concatenate([params[n].reshape(-1).numpy() for n in names])
        y = np.concatenate([out[n].reshape(-1).numpy() for n in names])
        removed = math.floor(round(p * x.size, 9))
        assert np.count_nonzero(y == 0) == removed
        kept = y != 0
        np.testing.assert_array_equal(y[kept], x[kept])
        if removed:
            assert np.abs(x[~kept]).max() <= np.abs(x[kept]).min()


# --------------------------------------------------------------------------- noise and clipping


def test_gaussian_noise_has_the_configured_std(lenet, batch):
    zero = ModelUpdate(UpdateKind.GRADIENT, {"w": torch.zeros(400, 500)})
    for params, std in [({"sigma": 0.05}, 0.05), ({"sigma": 0.5, "clip_norm": 0.2, "relative": True}, 0.1)]:
        d = create_defense("gaussian-noise", **params)
        out, info = d.apply(zero, make_ctx(lenet, batch))
        noise = out.params["w"].double()
        assert info["std"] == pytest.approx(std)
        assert float(noise.std()) == pytest.approx(std, rel=0.01)  # 200k samples: ~0.16% rel. s.e.
        assert abs(float(noise.mean())) < 5 * std / math.sqrt(noise.numel())


def test_norm_clipping_bounds_the_norm_and_keeps_the_direction(lenet, batch):
    upd = real_update(lenet, batch)
    norm = upd.norm()
    for c in (norm / 10, norm * 2):
        out = create_defense("gaussian-noise", sigma=0.0, clip_norm=c).apply(upd, make_ctx(lenet, batch))[0]
        assert out.norm() == pytest.approx(min(norm, c), rel=1e-5)
        for k in upd.params:
            torch.testing.assert_close(out.params[k], upd.params[k] * min(1.0, c / norm))
    clipped, before = clip_global_norm({"a": torch.tensor([3.0]), "b": torch.tensor([4.0])}, 1.0)
    assert before == 5.0 and torch.allclose(clipped["a"], torch.tensor([0.6]))
    with pytest.raises(ConfigError, match="clip_norm"):
        create_defense("gaussian-noise", relative=True)


def test_flat_clipping_bounds_values(lenet, batch):
    upd = real_update(lenet, batch)
    bound = 0.5 * max(float(t.abs().max()) for t in upd.params.values())
    out, info = create_defense("clipping", bound=bound).apply(upd, make_ctx(lenet, batch))
    for k, t in upd.params.items():
        o = out.params[k]
        assert float(o.abs().max()) <= bound
        inside = t.abs() <= bound
        assert torch.equal(o[inside], t[inside])
        assert torch.equal(o[~inside], torch.sign(t[~inside]) * bound)
    assert 0 < info["clipped_fraction"] < 1
    out = create_defense("clipping", bound=0.1, mode="norm").apply(upd, make_ctx(lenet, batch))[0]
    assert out.norm() == pytest.approx(0.1, rel=1e-5)
    assert torch.equal(clip_values({"w": torch.tensor([-2.0, 2.0])}, 1.0)["w"], torch.tensor([-1.0, 1.0]))


def test_update_defenses_keep_buffers(lenet, batch):
    upd = ModelUpdate(UpdateKind.DELTA, {"w": torch.randn(5)}, {"bn.running_mean": torch.randn(3)})
    for name in ("qsgd", "signsgd", "topk", "pruning", "gaussian-noise", "clipping"):
        out = create_defense(name).client_hooks().on_update(upd, make_ctx(lenet, batch))
        assert out.kind is UpdateKind.DELTA
        assert torch.equal(out.buffers["bn.running_mean"], upd.buffers["bn.running_mean"])
