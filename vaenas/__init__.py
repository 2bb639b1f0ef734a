"""vaenas: neural architecture search with a learned (VAE) architecture sampler.

Layers (DESIGN.md §2): vaenas.config (typed configs) and vaenas.spaces (encodings, validity, cost)
← vaenas.ops (custom ops) ← vaenas.sampler / vaenas.supernet / vaenas.data ← vaenas.runtime (what
every long job shares) ← vaenas.search (one package per method: tabular, oneshot, gradient; one CLI).
"""

from vaenas._extension import build_info

__version__ = "0.1.0"
__all__ = ["build_info", "__version__"]
