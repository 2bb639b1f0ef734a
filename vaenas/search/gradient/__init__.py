"""The gradient search, paper Algorithm 3 (VAENAS-G; `gradient.sampling=softmax` is plain ProxylessNAS).

- config: GradientConfig (the one-shot config plus its `gradient` section)
- search: GradientSearch (on OneShotSearch's supernet, trainer, VAE and scoring) and its helpers
- report: diversity.png and report.md
- cli: main
"""

from vaenas.search.gradient.config import GradientConfig, GradientSection
from vaenas.search.gradient.search import (
    GradientSearch,
    ValidationStream,
    initial_logits,
    mean_entropy,
    most_probable_architecture,
    path_entropy,
    sample_softmax,
    sample_two_paths,
)

__all__ = [
    "GradientConfig",
    "GradientSearch",
    "GradientSection",
    "ValidationStream",
    "initial_logits",
    "mean_entropy",
    "most_probable_architecture",
    "path_entropy",
    "sample_softmax",
    "sample_two_paths",
]
