"""ArchitectureVAE / VAESampler: the decoder agrees with the decode op, Algorithm 1 on real data."""

import math

import pytest
import torch

from vaenas import ops
from vaenas.sampler import ArchitectureVAE, UniformSampler, VAEConfig, VAESampler
from vaenas.spaces import get_space
from vaenas.spaces.base import DecodeConstraints

BACKENDS = ["reference", None]  # None: the default choice, what VAESampler uses


def budget_constraints():
    """Odd vocabularies and an NB101-style edge budget: at most 2 non-zero of the first 5 tokens."""
    vocab = torch.tensor([2, 2, 2, 2, 2, 3, 5, 4, 1, 3])
    mask = torch.zeros(len(vocab), dtype=torch.bool)
    mask[:5] = True
    return DecodeConstraints(vocab, mask, 2)


def nb201_constraints():
    return DecodeConstraints.vocabulary_only((5,) * 6)


def randomized_vae(constraints, generator, hidden=24):
    model = ArchitectureVAE(constraints, latent_dim=7, embedding_dim=11, hidden_dim=hidden)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.6)
    return model.eval()


@torch.no_grad()
def stepwise_greedy(model, z, constraints):
    """Greedy decoding one step at a time through the module's own nn.LSTM, masks written out."""
    vocab, budget_mask, budget_max = constraints.vocab_sizes, constraints.budget_mask, constraints.budget_max
    offsets = torch.cumsum(vocab, 0) - vocab
    max_vocab = int(vocab.max())
    h = torch.tanh(model.latent(z))[None]
    c = torch.zeros_like(h)
    row = torch.zeros(len(z), dtype=torch.long)
    used = torch.zeros(len(z), dtype=torch.long)
    tokens, log_prob = [], torch.zeros(len(z))
    for t in range(len(vocab)):
        out, (h, c) = model.decoder(model.embedding(row)[:, None], (h, c))
        logits = out[:, 0] @ model.weight_out[t].T + model.bias_out[t]
        allowed = (torch.arange(max_vocab) < vocab[t]).expand(len(z), -1)
        if bool(budget_mask[t]):
            allowed = allowed & ~((used >= budget_max)[:, None] & (torch.arange(max_vocab) != 0))
        log_p = torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=1)
        token = log_p.argmax(dim=1)
        tokens.append(token)
        log_prob += log_p.gather(1, token[:, None])[:, 0]
        if bool(budget_mask[t]):
            used += (token != 0).long()
        row = 1 + offsets[t] + token
    return torch.stack(tokens, dim=1), log_prob


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make_constraints", [nb201_constraints, budget_constraints])
def test_greedy_op_decode_equals_stepwise_module_decode(make_constraints, backend, generator):
    """decoder_weights() hands the module's decoder to the op exactly (input_table, heads, h0)."""
    constraints = make_constraints()
    model = randomized_vae(constraints, generator)
    z = torch.randn(203, 7, generator=generator)
    tokens, log_prob = ops.vae_decode(z, model.decoder_weights(), constraints, greedy=True, backend=backend)
    expected_tokens, expected_log_prob = stepwise_greedy(model, z, constraints)
    assert torch.equal(tokens, expected_tokens)
    torch.testing.assert_close(log_prob, expected_log_prob, rtol=1e-5, atol=1e-4)
    if bool(constraints.budget_mask.any()):
        spent = ((tokens != 0) & constraints.budget_mask).sum(dim=1)
        assert int(spent.max()) == 2  # the budget binds for some rows and is never exceeded


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make_constraints", [nb201_constraints, budget_constraints])
def test_teacher_forced_likelihood_equals_op_log_prob_of_sampled_strings(make_constraints, backend, generator):
    """The training likelihood (decode_logits, masks included) is the distribution the op samples."""
    constraints = make_constraints()
    model = randomized_vae(constraints, generator)
    z = torch.randn(157, 7, generator=generator)
    uniforms = torch.rand(157, len(constraints.vocab_sizes), generator=generator)
    tokens, log_prob = ops.vae_decode(
        z, model.decoder_weights(), constraints, uniforms=uniforms, temperature=1.0, backend=backend
    )
    with torch.no_grad():
        torch.testing.assert_close(model.log_likelihood(z, tokens), log_prob, rtol=1e-5, atol=1e-4)


def test_loss_parts_and_gradients(nb201_space, generator):
    model = ArchitectureVAE(nb201_space.decode_constraints(), 8, 8, 16)
    archs = nb201_space.sample(31, generator)
    mean, logvar = model.encode(archs)
    assert mean.shape == logvar.shape == (31, 8)
    logits = model.decode_logits(model.reparameterize(mean, logvar, generator), archs)
    assert logits.shape == (31, 6, 5) and bool(torch.isfinite(logits).all())
    losses = model.loss(archs, kl_weight=0.3, generator=generator)
    assert float(losses["kl"].detach()) >= 0 and float(losses["recon"].detach()) > 0
    torch.testing.assert_close(losses["loss"], losses["recon"] + 0.3 * losses["kl"])
    losses["loss"].backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    # an untrained decoder is near uniform: about log(5) nats per position
    assert abs(float(losses["recon"].detach()) - 6 * math.log(5)) < 1.5


def test_fit_topk_concentrates_samples_on_accurate_nb201_cells(nb201_space, nb201_table, generator):
    """The paper's central claim on real ground truth: a VAE trained on the top half of 1000
    random NAS-Bench-201 cells samples cells with clearly higher CIFAR-10 accuracy than U(α)."""
    archs, accuracy = nb201_table
    seen = torch.randperm(len(archs), generator=generator)[:1000]
    sampler = VAESampler(nb201_space, VAEConfig(), seed=7)
    result = sampler.fit_topk(archs[seen], accuracy[seen], top_fraction=0.5, n_iters=400)
    assert result["n_train"] == 500 and math.isfinite(result["loss"])

    vae_archs = sampler.sample(2000, generator)
    uniform_archs = UniformSampler(nb201_space).sample(2000, generator)
    vae_mean = float(accuracy[nb201_space.index_of(vae_archs)].mean())
    uniform_mean = float(accuracy[nb201_space.index_of(uniform_archs)].mean())
    top_half_mean = float(accuracy[seen].sort(descending=True).values[:500].mean())
    print(f"mean CIFAR-10 accuracy: VAE {vae_mean:.2f}, uniform {uniform_mean:.2f}, training set {top_half_mean:.2f}")
    assert vae_mean > uniform_mean + 3.0
    assert vae_mean > top_half_mean - 1.5  # the VAE reproduces the distribution it was fitted to


def test_fit_topk_keeps_the_top_fraction(nb201_space, generator):
    sampler = VAESampler(nb201_space, VAEConfig(batch_size=16), seed=0)
    archs = nb201_space.sample(10, generator)
    scores = torch.randn(10, generator=generator)
    assert sampler.fit_topk(archs, scores, top_fraction=0.25, n_iters=1)["n_train"] == 3
    assert sampler.fit_topk(archs, scores, top_fraction=1.0, n_iters=1)["n_train"] == 10
    assert sampler.fit_topk(archs[:1], scores[:1], top_fraction=0.01, n_iters=1)["n_train"] == 1
    # training on one repeated string: the top-1 by score, nothing else
    sampler.fit_topk(archs, scores, top_fraction=0.1, n_iters=150)
    best = archs[scores.argmax()]
    assert bool((sampler.sample(50, generator) == best).all(dim=1).float().mean() > 0.9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(top_fraction=0.0), "top_fraction"),
        (dict(top_fraction=1.5), "top_fraction"),
        (dict(scores=torch.zeros(7)), "8 architectures but 7 scores"),
        (dict(scores=torch.tensor([float("nan")] * 8)), "NaN"),
        (dict(n_iters=-1), "n_iters"),
    ],
)
def test_fit_topk_rejects_bad_arguments(nb201_space, generator, kwargs, message):
    sampler = VAESampler(nb201_space, seed=0)
    arguments = dict(archs=nb201_space.sample(8, generator), scores=torch.randn(8, generator=generator))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        sampler.fit_topk(**arguments)
    with pytest.raises(ValueError, match="invalid token"):
        sampler.fit_topk(torch.full((8, 6), 5), torch.zeros(8))


def test_warm_start_keeps_weights_and_optimizer(nb201_space, generator):
    sampler = VAESampler(nb201_space, VAEConfig(batch_size=32), seed=3)
    archs = nb201_space.sample(64, generator)
    scores = torch.randn(64, generator=generator)
    first = sampler.fit_topk(archs, scores, n_iters=200)
    weights = {k: v.clone() for k, v in sampler.model.state_dict().items()}
    second = sampler.fit_topk(archs, scores, n_iters=1)
    # one more Adam step moves the trained weights a little; a re-initialised model would be far
    for name, value in sampler.model.state_dict().items():
        assert (value - weights[name]).abs().max() < 0.05, name
    assert next(iter(sampler.optimizer.state.values()))["step"] == 201
    assert second["recon"] < first["recon"] + 1.0
    fresh = VAESampler(nb201_space, VAEConfig(batch_size=32), seed=3)
    with torch.no_grad():
        fresh_recon = float(fresh.model.loss(archs[scores.argsort(descending=True)[:32]])["recon"])
    assert fresh_recon > first["recon"] + 1.0


def test_seeded_sampling_and_training_are_reproducible(nb201_space, generator):
    archs, scores = nb201_space.sample(40, generator), torch.randn(40, generator=generator)
    draws = []
    for _ in range(2):
        sampler = VAESampler(nb201_space, VAEConfig(batch_size=16), seed=11)
        sampler.fit_topk(archs, scores, n_iters=20)
        draws.append(sampler.sample(64, torch.Generator().manual_seed(5)))
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(sampler.sample(64, torch.Generator().manual_seed(6)), draws[0])


def test_state_dict_round_trip_continues_identically(nb201_space, generator):
    archs, scores = nb201_space.sample(40, generator), torch.randn(40, generator=generator)
    sampler = VAESampler(nb201_space, VAEConfig(batch_size=16), seed=2)
    sampler.fit_topk(archs, scores, n_iters=10)
    restored = VAESampler(nb201_space, VAEConfig(batch_size=16), seed=99)
    restored.load_state_dict(sampler.state_dict())
    for s in (sampler, restored):
        s.fit_topk(archs, scores, n_iters=5)
    assert torch.equal(sampler.sample(30), restored.sample(30))
    with pytest.raises(ValueError, match="sizes"):
        VAESampler(nb201_space, VAEConfig(hidden_dim=8)).load_state_dict(sampler.state_dict())


def test_sample_accept_filter_and_exhaustion(nb201_space, generator):
    sampler = VAESampler(nb201_space, seed=4)
    rows = sampler.sample(100, generator, accept=lambda a: a[:, 0] == 3)
    assert rows.shape == (100, 6) and bool((rows[:, 0] == 3).all())
    with pytest.raises(RuntimeError, match="only 0 of 10"):
        sampler.sample(10, generator, accept=lambda a: torch.zeros(len(a), dtype=torch.bool), max_rounds=3)
    with pytest.raises(ValueError, match="BoolTensor"):
        sampler.sample(10, generator, accept=lambda a: a[:, 0])
    assert sampler.sample(0, generator).shape == (0, 6)


@pytest.mark.parametrize("method", ["fit", "fit_topk"])
def test_fit_rejects_invalid_architectures_naming_the_row(method):
    # an NB101 row with 10 edges has log p = -inf under the decoder's 9-edge budget: training on it
    # would report loss inf while Adam keeps stepping
    space = get_space("nasbench101")
    archs = space.sample(4, torch.Generator().manual_seed(0))
    archs[2, :21] = 0
    archs[2, :10] = 1
    sampler = VAESampler(space, VAEConfig(batch_size=4), seed=0)
    arguments = (archs, torch.arange(4.0)) if method == "fit_topk" else (archs,)
    with pytest.raises(ValueError, match="row 2 is not: it has 10 edges"):
        getattr(sampler, method)(*arguments, n_iters=1)


def test_constructing_a_sampler_leaves_global_random_state_alone(nb201_space, monkeypatch):
    """The constructor seeds its own initialisation: no torch.cuda seeding, the CPU stream unchanged."""
    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: seeded.append(("manual_seed_all", seed)))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: seeded.append(("manual_seed", seed)))
    before = torch.get_rng_state()
    first = VAESampler(nb201_space, seed=7)
    assert seeded == []
    assert torch.equal(torch.get_rng_state(), before)
    # still deterministic per seed
    again, other = VAESampler(nb201_space, seed=7), VAESampler(nb201_space, seed=8)
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[name]), name
    assert not torch.equal(first.model.weight_out, other.model.weight_out)
