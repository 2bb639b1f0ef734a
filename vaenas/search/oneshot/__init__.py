"""The one-shot search, paper Algorithm 2 (VAENAS-OS; `vaenas.epsilon_inc=0` is its SPOS baseline).

- config: OneShotConfig and its sections (the gradient search extends them), RESUMABLE_KEYS
- search: OneShotSearch (supernet training on Γ, refits, final search, export, state)
- train: Trainer (one supernet step; the all-reduce of the gradients a step used)
- final_search: Evolution, SupernetOracle, cost_limit (SPOS evolution on supernet scores)
- costs: search_cost_model (the exported network's cost and latency tables), unreachable_budget
- report: the plots and report.md
- cli: main, METHOD, and what the gradient CLI shares with it (start_search, supernet_backend)
"""

from vaenas.search.oneshot.config import (
    RESUMABLE_KEYS,
    EvalConfig,
    OneShotConfig,
    RunConfig,
    SearchConfig,
    SupernetConfig,
    TrainConfig,
    VAENASConfig,
)
from vaenas.search.oneshot.search import OneShotSearch
from vaenas.search.oneshot.cli import start_search, supernet_backend

__all__ = [
    "RESUMABLE_KEYS",
    "EvalConfig",
    "OneShotConfig",
    "OneShotSearch",
    "RunConfig",
    "SearchConfig",
    "SupernetConfig",
    "TrainConfig",
    "VAENASConfig",
    "start_search",
    "supernet_backend",
]
