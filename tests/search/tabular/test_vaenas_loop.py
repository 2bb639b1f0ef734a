"""The tabular VAENAS loop (issue 9): rounds, rejection of queried architectures, the temperature
that rises when draws repeat, the hotter exploring share, the report's paired differences, and the
any-time-only study."""

from __future__ import annotations

import math

import pytest
import torch

from vaenas.groundtruth import nasbench201
from vaenas.config import ConfigError, load_config
from vaenas.search.evolution import TabularOracle
from vaenas.search.tabular import (
    Curve,
    LoopRound,
    SeedResult,
    TabularConfig,
    check_budgets,
    markdown_report,
    run_study,
    vaenas_loop,
    write_run,
)

#: a small loop: 10 uniform queries, then 5 rounds of 10
LOOP = [
    "study.enabled=false", "anytime.methods=[vaenas]", "anytime.budget=60", "anytime.report_at=[10,30,60]",
    "anytime.loop_warmup=10", "anytime.round_size=10", "anytime.top_min=5", "anytime.first_fit_iters=30",
    "anytime.vae_iters=5", "vae.hidden_dim=16", "progress=false",
]


@pytest.fixture(scope="module")
def nb201():
    return nasbench201("cifar10")


def _loop(nb201, overrides: list[str], seed: int = 0) -> tuple[TabularOracle, list[LoopRound]]:
    config = load_config(None, [*LOOP, *overrides], cls=TabularConfig)
    oracle = TabularOracle(nb201, config.anytime.budget, 0.0, torch.Generator().manual_seed(seed))
    rounds = vaenas_loop(config, oracle, seed, torch.Generator().manual_seed(seed + 1))
    return oracle, rounds


def test_loop_spends_the_budget_in_rounds_after_a_uniform_warmup(nb201):
    oracle, rounds = _loop(nb201, [])
    archs, _ = oracle.history()
    assert oracle.used == 60 and len(set(nb201.space.canonical_key(archs))) == 60  # never a repeat
    assert [r.queried_before for r in rounds] == [10, 20, 30, 40, 50]
    assert all(r.new == 10 and 0 <= r.from_sampler <= r.new and r.drawn >= r.from_sampler for r in rounds)
    # the provenance adds up: the rows drawn from Γ are queried first in each round
    true = nb201.accuracy(archs)
    for r in rounds:
        if r.from_sampler:
            window = true[r.queried_before : r.queried_before + r.from_sampler]
            assert r.sampler_accuracy == pytest.approx(float(window.mean()))


def test_concentrated_vae_draws_again_hotter_until_it_finds_new_architectures(nb201):
    """A VAE fitted hard on its top 1 repeats it: the loop must not spend queries on repeats, so it
    raises the temperature for each further draw; without growth the repeats are topped up uniformly."""
    concentrated = ["anytime.top_min=1", "anytime.top_fraction=0.01", "anytime.first_fit_iters=300",
                    "anytime.vae_iters=50", "anytime.temperature=0.3", "anytime.explore_share=0"]
    _, hotter = _loop(nb201, [*concentrated, "anytime.temperature_growth=2"])
    _, fixed = _loop(nb201, [*concentrated, "anytime.temperature_growth=1", "anytime.draw_rounds=2"])
    assert sum(r.repeats for r in hotter) > 0
    assert max(r.temperature for r in hotter) > 0.3
    assert all(r.temperature == pytest.approx(0.3) for r in fixed)
    # cold draws of a collapsed VAE find few new architectures; the uniform top-up fills the round
    assert sum(r.from_sampler for r in fixed) < sum(r.from_sampler for r in hotter)
    assert all(r.new == 10 for r in fixed)


def test_exploring_share_lands_farther_from_the_architectures_the_vae_was_fitted_on(nb201):
    """The last explore_share of each round is drawn at explore_temperature. A VAE fitted hard on
    the best 5 draws about one edit away from them; the exploring rows land several edits away."""
    oracle, rounds = _loop(nb201, ["anytime.first_fit_iters=300", "anytime.vae_iters=50", "anytime.temperature=0.5",
                                   "anytime.temperature_growth=1.5", "anytime.explore_share=0.3",
                                   "anytime.explore_temperature=5"])
    archs, scores = oracle.history()
    close, exploring = [], []
    for r in rounds:
        assert r.new == r.from_sampler == 10  # 7 close + 3 exploring, nothing topped up
        fitted = archs[torch.sort(scores[: r.queried_before], descending=True, stable=True).indices[:5]]
        rows = archs[r.queried_before : r.queried_before + r.new]
        edits = (rows[:, None, :] != fitted[None]).sum(-1).min(-1).values.float()  # to the nearest fitted
        close.append(edits[:7])
        exploring.append(edits[7:])
    assert float(torch.cat(exploring).mean()) > float(torch.cat(close).mean()) + 1.0


def test_default_loop_beats_random_search_at_100_queries(nb201):
    """A regression guard of the packaged setting (fixed seeds, deterministic): mean best accuracy
    at 100 queries over 4 seeds, NAS-Bench-201 CIFAR-10 (optimum 94.37)."""
    config = load_config(None, ["study.enabled=false", "anytime.methods=[random,vaenas]", "anytime.budget=100",
                                "anytime.report_at=[100]", "study.seeds=4", "progress=false"], cls=TabularConfig)
    results = run_study(config, nb201, range(4), show_progress=False)
    best = {method: [c.best[-1] for r in results for c in r.curves if c.method == method]
            for method in ("random", "vaenas")}
    assert sum(best["vaenas"]) / 4 > sum(best["random"]) / 4 + 0.1


def _result(seed: int, curves: dict[str, list[float]]) -> SeedResult:
    return SeedResult(seed, curves=[Curve("anytime", method, 0.0, seed, best, 1.0) for method, best in curves.items()])


def test_report_gives_differences_paired_by_seed(nb201):
    config = load_config(None, ["study.enabled=false", "anytime.budget=3", "anytime.report_at=[1,3]",
                                "anytime.methods=[regularized_evolution,vaenas]"], cls=TabularConfig)
    results = [
        _result(0, {"regularized_evolution": [90.0, 91.0, 92.0], "vaenas": [91.0, 91.0, 93.0]}),
        _result(1, {"regularized_evolution": [93.0, 93.0, 93.0], "vaenas": [90.0, 92.0, 93.5]}),
    ]
    report = markdown_report(config, nb201, results, elapsed_s=1.0)
    # differences at 1 query: +1, -3 (mean -1, SE std/sqrt 2 = 2); at 3 queries: +1, +0.5
    se_at_3 = math.sqrt(0.125) / math.sqrt(2)
    assert f"| vaenas | -1.000 ± 2.000 (1/2) | +0.750 ± {se_at_3:.3f} (2/2) |" in report
    assert "Best accuracy among K samples" not in report  # the paper protocol did not run


def test_anytime_only_study_writes_its_outputs(nb201, tmp_path):
    config = load_config(None, [*LOOP, "anytime.methods=[regularized_evolution,vaenas]", "study.seeds=2",
                                "anytime.population=10", "anytime.sample_size=3"], cls=TabularConfig)
    results = run_study(config, nb201, [0, 1], show_progress=False)
    assert all(not r.max_of_k and not r.histogram and len(r.loop_rounds) == 5 for r in results)
    report = write_run(tmp_path / "run", config, nb201, results, elapsed_s=1.0)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert files == {"config.yaml", "curves.csv", "max_of_k.csv", "results.md", "best_architectures.json",
                     "anytime.png"}
    assert "### Difference from regularized_evolution, paired by seed" in report
    assert "### VAENAS loop: where the queries went" in report
    assert SeedResult.from_dict(results[0].to_dict()) == results[0]


def test_a_study_that_runs_nothing_is_refused():
    config = load_config(None, ["study.enabled=false", "anytime.enabled=false"], cls=TabularConfig)
    with pytest.raises(ConfigError, match="nothing to run"):
        check_budgets(config, 15625)
