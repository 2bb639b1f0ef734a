"""The tabular VAENAS study on real ground truth (paper §5.3, Table 4, Fig. 2), plus any-time curves.

- config: TabularConfig (its sections, checks, budgets against the benchmark's size)
- study: TabularStudy, run_study (the paper protocol per seed; the any-time methods)
- loop: vaenas_loop (the VAENAS loop of the any-time comparison)
- results: SeedResult and its parts (what a seed produces), save_seed / load_seeds (the run folder)
- report: write_run (results.md, CSVs, figures)
- cli: main (`python -m vaenas.search`, the default method)
"""

from vaenas.search.tabular.config import ANYTIME_METHODS, TabularConfig, check_budgets
from vaenas.search.tabular.loop import vaenas_loop
from vaenas.search.tabular.report import markdown_report, write_run
from vaenas.search.tabular.results import Curve, Found, LoopRound, SeedResult, load_seeds, save_seed
from vaenas.search.tabular.study import TabularStudy, run_study

__all__ = [
    "ANYTIME_METHODS",
    "Curve",
    "Found",
    "LoopRound",
    "SeedResult",
    "TabularConfig",
    "TabularStudy",
    "check_budgets",
    "load_seeds",
    "markdown_report",
    "run_study",
    "save_seed",
    "vaenas_loop",
    "write_run",
]
