"""Quality metrics of a trained VAE sampler, as reported by D-VAE and arch2vec.

- reconstruction accuracy: fraction of held-out architectures decoded back exactly (greedy) from
  the posterior mean;
- validity: fraction of prior samples (z ~ N(0, I), decoded once, no resampling) that are valid;
- uniqueness: distinct valid samples / valid samples;
- novelty: distinct valid samples not in the training set / distinct valid samples.
Duplicates are counted by space.canonical_key (the same network, whatever its string).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from vaenas.sampler.vae import VAESampler

logger = logging.getLogger(__name__)


@torch.no_grad()
def reconstruction_accuracy(vae_sampler: VAESampler, archs: Tensor) -> float:
    """Fraction of rows of archs [N, T] that greedy decoding of their posterior mean reproduces."""
    archs = vae_sampler.space.check_tokens(archs)
    if len(archs) == 0:
        raise ValueError("reconstruction_accuracy needs at least one architecture")
    vae_sampler.model.eval()
    mean, _ = vae_sampler.model.encode(archs.to(vae_sampler.device))
    decoded, _ = vae_sampler.decode(mean, greedy=True)
    return float((decoded == archs).all(dim=1).float().mean())


def quality_metrics(
    vae_sampler: VAESampler,
    train_archs: Tensor,
    test_archs: Tensor,
    n_prior: int = 1000,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """{'reconstruction', 'validity', 'uniqueness', 'novelty'}, each in [0, 1].

    train_archs [N, T]: what the VAE was trained on (for novelty); test_archs [M, T]: held out.
    """
    if n_prior < 1:
        raise ValueError(f"n_prior must be >= 1, got {n_prior}")
    space = vae_sampler.space
    reconstruction = reconstruction_accuracy(vae_sampler, test_archs)
    samples = vae_sampler.sample_prior(n_prior, generator)
    valid = space.is_valid(samples)
    valid_keys = space.canonical_key(samples[valid]) if bool(valid.any()) else []
    unique = set(valid_keys)
    train_keys = set(space.canonical_key(space.check_tokens(train_archs)))
    metrics = {
        "reconstruction": reconstruction,
        "validity": float(valid.float().mean()),
        "uniqueness": len(unique) / len(valid_keys) if valid_keys else 0.0,
        "novelty": len(unique - train_keys) / len(unique) if unique else 0.0,
    }
    logger.debug("VAE quality: %s", metrics)
    return metrics
