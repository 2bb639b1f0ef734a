"""vaenas: neural architecture search with a learned (VAE) architecture sampler.

Layers (DESIGN.md §2): vaenas.spaces (encodings, validity, cost) ← vaenas.ops (custom ops) ←
vaenas.sampler / vaenas.supernet ← vaenas.search (loops, tabular study, CLI).
"""

from vaenas._extension import build_info

__version__ = "0.1.0"
__all__ = ["build_info", "__version__"]
