"""UniformSampler, MixtureSampler (paper eq. 5) and the quality metrics."""

import pytest
import torch

from vaenas.sampler import MixtureSampler, UniformSampler, VAEConfig, VAESampler, quality_metrics


class ConstantVAE:
    """Stands in for VAESampler: every row it yields is all 4s, and it counts its calls."""

    def __init__(self, space):
        self.space, self.calls = space, 0

    def sample(self, n, generator=None, temperature=1.0, accept=None, max_rounds=20):
        self.calls += 1
        return torch.full((n, self.space.length), 4, dtype=torch.long)


def test_uniform_sampler_and_accept_filter(nb201_space, generator):
    sampler = UniformSampler(nb201_space)
    archs = sampler.sample(3000, generator)
    assert archs.shape == (3000, 6) and bool(nb201_space.is_valid(archs).all())
    counts = torch.bincount(archs.flatten(), minlength=5).float() / archs.numel()
    assert torch.allclose(counts, torch.full((5,), 0.2), atol=0.02)
    # a filter that keeps about 1/25 of the space still yields exactly n rows, all accepted
    accepted = sampler.sample(200, generator, accept=lambda a: (a[:, 0] == 2) & (a[:, 5] == 3))
    assert accepted.shape == (200, 6) and bool(((accepted[:, 0] == 2) & (accepted[:, 5] == 3)).all())
    with pytest.raises(RuntimeError, match="only 0 of 5"):
        sampler.sample(5, generator, accept=lambda a: a[:, 0] > 4, max_rounds=2)


def test_uniform_sampler_is_seeded(nb201_space):
    sampler = UniformSampler(nb201_space)
    first = sampler.sample(50, torch.Generator().manual_seed(3))
    assert torch.equal(first, sampler.sample(50, torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("epsilon", [0.0, 1.0, 0.3])
def test_mixture_draws_each_row_from_the_vae_with_probability_epsilon(nb201_space, generator, epsilon):
    vae = ConstantVAE(nb201_space)
    mixture = MixtureSampler(UniformSampler(nb201_space), vae, epsilon=epsilon)
    archs = mixture.sample(4000, generator)
    from_vae = mixture.last_from_vae
    assert bool((archs[from_vae] == 4).all())
    fraction = float(from_vae.float().mean())
    if epsilon == 0.0:
        assert vae.calls == 0 and fraction == 0.0
    elif epsilon == 1.0:
        assert fraction == 1.0 and bool((archs == 4).all())
    else:
        assert abs(fraction - epsilon) < 0.03
        # uniform rows are uniform, so only about 5^-6 of them look like the VAE's constant row
        assert float((archs[~from_vae] == 4).all(dim=1).float().mean()) < 0.01


def test_mixture_schedule_state_and_bad_arguments(nb201_space):
    uniform = UniformSampler(nb201_space)
    mixture = MixtureSampler(uniform, ConstantVAE(nb201_space), epsilon=0.0, epsilon_inc=0.3, epsilon_max=0.8)
    assert [round(mixture.step(), 6) for _ in range(4)] == [0.3, 0.6, 0.8, 0.8]
    restored = MixtureSampler(uniform, ConstantVAE(nb201_space))
    restored.load_state_dict(mixture.state_dict())
    assert (restored.epsilon, restored.epsilon_inc, restored.epsilon_max) == (0.8, 0.3, 0.8)
    for kwargs in (dict(epsilon=-0.1), dict(epsilon=1.2), dict(epsilon_max=2.0), dict(epsilon_inc=-0.1)):
        with pytest.raises(ValueError):
            MixtureSampler(uniform, ConstantVAE(nb201_space), **kwargs)


def test_mixture_with_a_real_vae_and_accept(nb201_space, generator):
    vae = VAESampler(nb201_space, VAEConfig(batch_size=32), seed=0)
    mixture = MixtureSampler(UniformSampler(nb201_space), vae, epsilon=0.5)
    archs = mixture.sample(300, generator, accept=lambda a: a[:, 2] != 0)
    assert archs.shape == (300, 6) and bool((archs[:, 2] != 0).all())
    assert 0 < int(mixture.last_from_vae.sum()) < 300


def test_quality_metrics_are_fractions_and_measure_what_they_say(nb201_space, nb201_table, generator):
    archs, accuracy = nb201_table
    train = archs[accuracy.argsort(descending=True)[:48]]
    sampler = VAESampler(nb201_space, VAEConfig(kl_weight=0.01, batch_size=48), seed=1)
    sampler.fit(train, n_iters=300)
    metrics = quality_metrics(sampler, train, train, n_prior=500, generator=generator)
    assert set(metrics) == {"reconstruction", "validity", "uniqueness", "novelty"}
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    assert metrics["validity"] == 1.0  # every NAS-Bench-201 string is valid
    # trained on 48 strings, the VAE reconstructs them and its samples mostly repeat them
    assert metrics["reconstruction"] >= 0.9
    assert metrics["novelty"] < 0.9 and metrics["uniqueness"] < 0.5
    # against the whole space as training set nothing is novel
    assert quality_metrics(sampler, archs, train[:8], n_prior=200, generator=generator)["novelty"] == 0.0
    untrained = VAESampler(nb201_space, seed=2)
    fresh = quality_metrics(untrained, train, train, n_prior=500, generator=generator)
    assert fresh["reconstruction"] < 0.2 and fresh["uniqueness"] > 0.7 and fresh["novelty"] > 0.9


def test_mixture_rejects_a_start_epsilon_above_its_cap(nb201_space):
    # step() would silently lower such an ε to the cap (0.5 -> 0.2)
    with pytest.raises(ValueError, match="epsilon 0.5 exceeds epsilon_max 0.2"):
        MixtureSampler(UniformSampler(nb201_space), ConstantVAE(nb201_space), epsilon=0.5, epsilon_max=0.2)
    mixture = MixtureSampler(UniformSampler(nb201_space), ConstantVAE(nb201_space), epsilon=0.2, epsilon_max=0.2)
    assert mixture.step() == 0.2
