"""Architecture samplers (DESIGN §1): uniform U(α), the VAE p_θ(α|z) and their mixture Γ."""

from vaenas.sampler.distinct import draw_new, first_new
from vaenas.sampler.metrics import quality_metrics
from vaenas.sampler.mixture import MixtureSampler
from vaenas.sampler.uniform import UniformSampler
from vaenas.sampler.vae import ArchitectureVAE, VAEConfig, VAESampler

__all__ = [
    "ArchitectureVAE", "MixtureSampler", "UniformSampler", "VAEConfig", "VAESampler", "draw_new", "first_new",
    "quality_metrics",
]
