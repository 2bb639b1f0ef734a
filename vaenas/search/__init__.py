"""Search methods (DESIGN §2), one package each, behind one CLI (`python -m vaenas.search method=...`):

- `tabular/`: the tabular VAENAS study on real ground truth (paper §5.3, Table 4, Fig. 2) and the
  any-time comparison with random search and regularized evolution (the default method);
- `oneshot/`: the one-shot search, paper Algorithm 2 (VAENAS-OS, and its SPOS baseline);
- `gradient/`: the gradient search, paper Algorithm 3 (VAENAS-G, and plain ProxylessNAS).

What several methods share sits here, once: `evolution` (the search strategies on a tabular
benchmark and SPOS breeding), `cli` (the argument parser and the method dispatch) and `configs/`
(the packaged YAML configs). Below them: vaenas.config (typed configs), vaenas.runtime (run
folder, checkpoints, ranks), vaenas.supernet, vaenas.sampler.
"""

from pathlib import Path

#: packaged configs of every method, usable as `--config tabular_nb101`
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"
