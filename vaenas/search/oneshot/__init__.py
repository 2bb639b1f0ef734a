"""The one-shot search, paper Algorithm 2 (VAENAS-OS; `vaenas.epsilon_inc=0` is its SPOS baseline).

- config: OneShotConfig and its sections (the gradient search extends them), RESUMABLE_KEYS
- search: OneShotSearch (supernet training on Γ, refits, final search, export, state)
- train: Trainer (one supernet step; the all-reduce of the gradients a step used)
- final_search: Evolution, SupernetOracle, cost_limit (SPOS evolution on supernet scores)
- report: the plots and report.md
- cli: main, and what the gradient CLI shares with it (load_run_config, run_dir_of, start_search)
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
from vaenas.search.oneshot.cli import load_run_config, run_dir_of, start_search

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
    "load_run_config",
    "run_dir_of",
    "start_search",
]
