"""Library code leaves torch's global RNG alone: defenses, model construction and clients draw from
explicit generators or seeds, and PRECODE's sampling bottleneck owns its generator."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch.func import functional_call, vmap

from gradinv.defenses import DefenseChain, create_defense
from gradinv.fl import local_update
from gradinv.models import MODELS, build_model, reseed
from gradinv.models.init import new_linear
from gradinv.types import TrainingConfig
from tests.defenses.test_contract import ROWS  # every registered defense, small parameters
from tests.helpers import photo_batch, tiny_lenet

TRAININGS = {
    "fedsgd": TrainingConfig(seed=3),
    "fedavg": TrainingConfig(protocol="fedavg", epochs=2, batch_size=2, lr=0.05, seed=3),
}


@pytest.fixture
def batch(photos):
    return photo_batch(photos, [0, 1, 2, 3], labels=[3, 1, 4, 1], size=16)


@pytest.mark.parametrize("protocol", sorted(TRAININGS))
@pytest.mark.parametrize("name", sorted(ROWS))
def test_local_update_with_a_defense_leaves_the_global_rng_alone(name, protocol, batch):
    d = create_defense(name, **ROWS[name])
    model = d.transform_model(tiny_lenet(size=16), generator=torch.Generator().manual_seed(1))
    runs = []
    for global_seed in (0, 1):  # the caller's RNG state does not change the client's update
        torch.manual_seed(global_seed)
        state = torch.random.get_rng_state()
        runs.append(local_update(model, batch, TRAININGS[protocol], client_id=2, hooks=DefenseChain.of([d])))
        assert torch.equal(torch.random.get_rng_state(), state)
    for k, v in runs[0].update.params.items():
        assert torch.equal(v, runs[1].update.params[k]), k


@pytest.mark.parametrize("name", sorted(MODELS))
def test_seeded_build_leaves_the_global_rng_alone(name):
    state = torch.random.get_rng_state()
    build_model(name, num_classes=10, image_size=16, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_precode_layers_come_from_the_generator_as_from_a_seeded_global_rng():
    pre = create_defense("precode", latent_dim=8)
    state = torch.random.get_rng_state()
    a = pre.transform_model(tiny_lenet(size=16), generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(7)  # the old way: the new layers drawn from the global RNG
    b = pre.transform_model(tiny_lenet(size=16))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    torch.manual_seed(3)
    ref = torch.nn.Linear(5, 4)
    assert torch.equal(new_linear(5, 4, generator=torch.Generator().manual_seed(3)).weight, ref.weight)


def test_precode_samples_from_its_own_generator(batch):
    m = create_defense("precode", latent_dim=8).transform_model(tiny_lenet(size=16)).train()
    x = batch.model_input()
    assert reseed(m, 5) == 1
    state = torch.random.get_rng_state()
    with torch.no_grad():
        first, second = m(x), m(x)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not torch.equal(first, second)  # a fresh epsilon per pass
    reseed(m, 5)
    with torch.no_grad():
        assert torch.equal(m(x), first)
    torch.manual_seed(5)  # the stream is the global RNG's after torch.manual_seed(5)
    with torch.no_grad():
        assert torch.equal(_forward_with_global_epsilon(m, x), first)


def _forward_with_global_epsilon(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    vb = m.fc.bottleneck
    stats = vb.encoder(m.flatten(m.body(x)))
    mu, std = stats[:, :8], torch.nn.functional.softplus(stats[:, 8:])
    return m.fc.classifier(vb.decoder(mu + std * torch.randn_like(std)))


def test_precode_model_copies_continue_the_stream(batch):
    m = create_defense("precode", latent_dim=8).transform_model(tiny_lenet(size=16)).train()
    x = batch.model_input()
    reseed(m, 2)
    m(x).sum().backward()  # the bottleneck keeps (mu, sigma) with their autograd graph
    c = copy.deepcopy(m)
    p = pickle.loads(pickle.dumps(m))
    with torch.no_grad():
        want = m(x)
        assert torch.equal(c(x), want) and torch.equal(p(x), want)


def test_precode_under_vmap_draws_per_candidate(batch):
    m = create_defense("precode", latent_dim=8).transform_model(tiny_lenet(size=16)).train()
    x = batch.model_input()
    params = {k: v.detach() for k, v in m.named_parameters()}
    xs = x.unsqueeze(0).expand(3, *x.shape)
    state = torch.random.get_rng_state()
    reseed(m, 1)
    out = vmap(lambda xi: functional_call(m, params, (xi,)), randomness="different")(xs)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not torch.equal(out[0], out[1])
    reseed(m, 1)
    again = vmap(lambda xi: functional_call(m, params, (xi,)), randomness="different")(xs)
    assert torch.equal(out, again)
    copy.deepcopy(m)  # the batched (mu, sigma) of the vmap pass are not copied


def test_precode_clients_draw_their_own_epsilon(batch):
    pre = create_defense("precode", latent_dim=8)
    m = pre.transform_model(tiny_lenet(size=16))
    tr = TrainingConfig(seed=3)
    a, b, a2 = (local_update(m, batch, tr, client_id=k, hooks=DefenseChain.of([pre])) for k in (0, 1, 0))
    key = "fc.bottleneck.encoder.weight"
    assert torch.equal(a.update.params[key], a2.update.params[key])
    assert not torch.equal(a.update.params[key], b.update.params[key])
