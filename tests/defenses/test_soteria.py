"""Soteria: scores against the authors' per-feature backward loop, and only the representation
layer's weight gradient changes."""

from __future__ import annotations

import math

import pytest
import torch

from gradinv.defenses import create_defense
from gradinv.defenses.soteria import defended_layer, soteria_mask, soteria_scores
from gradinv.errors import ConfigError
from gradinv.models import build_model
from tests.defenses.conftest import make_ctx, real_update


def naive_scores(model: torch.nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The authors' loop: one backward per representation element f, with x.grad summed per sample."""
    m = model.eval()
    feats: list[torch.Tensor] = []
    h = m.get_submodule(layer).register_forward_pre_hook(lambda _m, a: feats.append(a[0]))
    x = x.clone().requires_grad_(True)
    m(x)
    h.remove()
    r = feats[0]
    n, f = r.shape
    out = torch.zeros(f, dtype=torch.float64)
    for j in range(f):
        sel = torch.zeros_like(r)
        sel[:, j] = 1
        (g,) = torch.autograd.grad(r, x, grad_outputs=sel, retain_graph=True)
        out[j] = (g.reshape(n, -1).double().norm(dim=1) / r[:, j].detach().double().abs()).sum()
    return out


def test_scores_match_the_per_feature_loop(lenet, batch):
    x = batch.model_input()
    fast = soteria_scores(lenet, x, chunk_size=50)
    slow = naive_scores(lenet, x, "fc")
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=0)


def test_only_the_representation_layer_changes(lenet, batch):
    upd = real_update(lenet, batch)
    out, info = create_defense("soteria", ratio=0.6).apply(upd, make_ctx(lenet, batch))
    for k in upd.params:
        if k != "fc.weight":
            assert torch.equal(out.params[k], upd.params[k]), k
    w, w0 = out.params["fc.weight"], upd.params["fc.weight"]
    pruned = (w == 0).all(0) & (w0 != 0).any(0)
    f = w0.shape[1]
    assert int(pruned.sum()) == math.floor(0.6 * f)
    assert torch.equal(w[:, ~pruned], w0[:, ~pruned])  # kept columns are untouched
    # the pruned columns are the elements with the smallest scores (oracle: the authors' loop)
    scores = naive_scores(lenet, batch.model_input(), "fc")
    assert scores[pruned].max() <= scores[~pruned].min() * (1 + 1e-6)
    assert info["pruned_fraction"] == pytest.approx(math.floor(0.6 * f) / f)


def test_relu_batchnorm_model_and_explicit_layer(batch):
    model = build_model("convnet", num_classes=10, image_size=16, width=2, seed=0)  # BN + ReLU
    upd = real_update(model, batch)
    out = create_defense("soteria", ratio=0.5, layer="model.linear").apply(upd, make_ctx(model, batch))[0]
    changed = [k for k in upd.params if not torch.equal(out.params[k], upd.params[k])]
    assert changed == ["model.linear.weight"]
    assert not torch.isnan(soteria_scores(model, batch.model_input())).any()  # inf = unit dead for all
    with pytest.raises(ConfigError, match=r"nn\.Linear"):
        defended_layer(model, "model.conv0")


def test_mask_prunes_floor_ratio_and_never_inf():
    scores = torch.tensor([3.0, math.inf, 1.0, 2.0])
    assert soteria_mask(scores, 0.5).tolist() == [True, True, False, False]
    assert soteria_mask(scores, 0.0).all()
