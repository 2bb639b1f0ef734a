"""The tabular study on NAS-Bench-201: oracle accounting, searches, outputs, and the CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tqdm import tqdm

from vaenas.groundtruth import nasbench201
from vaenas.search.__main__ import main
from vaenas.search.config import load_config
from vaenas.search.evolution import (
    Generation,
    TabularOracle,
    breed,
    random_search,
    regularized_evolution,
    spos_evolution,
    uniform_from_universe,
)
from vaenas.sampler import VAESampler
from vaenas.search import tabular
from vaenas.search.tabular import SeedResult, TabularStudy, run_study, write_run

REPO = Path(__file__).resolve().parents[2]

#: a study that exercises every part in seconds
TINY = [
    "study.seeds=1", "study.n_train=100", "study.ks=[5,20]", "study.noise=[0,0.5]", "study.histogram_samples=100",
    "evolution.budget=60", "evolution.population=20", "evolution.parents=5",
    "anytime.budget=60", "anytime.report_at=[10,60]", "anytime.round_size=20", "anytime.vae_iters=3",
    "anytime.first_fit_iters=5",
    "anytime.population=20", "anytime.sample_size=5", "anytime.warmup=20",
    "vae.n_iters=5", "vae.batch_size=16", "vae.hidden_dim=16", "progress=false",
]


@pytest.fixture(scope="module")
def nb201():
    return nasbench201("cifar10")


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


def _check_run(oracle: TabularOracle, budget: int) -> None:
    """Budget spent exactly, each query a distinct architecture of the universe, curve monotone."""
    archs, _ = oracle.history()
    assert oracle.used == budget and len(archs) == budget
    assert len(set(oracle.space.canonical_key(archs))) == budget
    assert bool(oracle.benchmark.contains(archs).all())
    curve = oracle.curve()
    assert curve.shape == (budget,)
    assert bool((curve[1:] >= curve[:-1]).all())
    assert float(curve[-1]) == pytest.approx(float(oracle.benchmark.accuracy(archs).max()))


def test_oracle_charges_each_distinct_architecture_once(nb201, generator):
    oracle = TabularOracle(nb201, budget=5, noise_std=0.0, generator=generator)
    archs = nb201.universe[[3, 3, 7]]
    scores = oracle.query(archs)
    assert oracle.used == 2 and scores[0] == scores[1]
    assert torch.equal(scores, nb201.accuracy(archs))
    oracle.query(nb201.universe[[7, 3]])  # repeats are free
    assert oracle.used == 2
    assert len(oracle.novel(nb201.universe[[3, 9, 9, 11]])) == 2
    with pytest.raises(ValueError, match="exceed the remaining budget"):
        oracle.query(nb201.universe[10:14])


def test_oracle_noise_is_seen_but_not_reported(nb201, generator):
    oracle = TabularOracle(nb201, budget=27, noise_std=0.5, generator=generator)
    archs = nb201.universe[:27]
    observed = oracle.query(archs)
    true = nb201.accuracy(archs)
    assert not torch.allclose(observed, true)
    assert torch.equal(oracle.query(archs), observed)  # fixed per architecture
    assert float(oracle.curve()[-1]) == pytest.approx(float(true.max()))


@pytest.mark.parametrize("budget", [1, 31, 120])
def test_random_search(nb201, generator, budget):
    oracle = TabularOracle(nb201, budget, 0.0, generator)
    random_search(oracle)
    _check_run(oracle, budget)


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_regularized_evolution(nb201, generator, noise):
    oracle = TabularOracle(nb201, 120, noise, generator)
    regularized_evolution(oracle, population=20, sample_size=5, generator=generator)
    _check_run(oracle, 120)


def test_spos_evolution_beats_its_seeds(nb201, generator):
    oracle = TabularOracle(nb201, 150, 0.0, generator)
    seeds = uniform_from_universe(nb201, 20, generator)
    spos_evolution(oracle, seeds, population=20, parents=5, mutation_fraction=0.5, generator=generator)
    _check_run(oracle, 150)
    curve = oracle.curve()
    assert float(curve[-1]) >= float(curve[19])


def _from_a_pair(child: torch.Tensor, parents: torch.Tensor) -> bool:
    """Whether every token of child [T] comes from one of two distinct rows of parents [P, T]."""
    matches = parents == child  # [P, T]
    return any(bool((matches[i] | matches[j]).all()) for i in range(len(parents)) for j in range(len(parents)) if i != j)


def test_breed_meets_each_operator_quota_with_new_accepted_children(nb201, generator, monkeypatch):
    space = nb201.space
    parents = uniform_from_universe(nb201, 10, generator).unique(dim=0)
    seen = set(space.canonical_key(torch.cat([parents, uniform_from_universe(nb201, 200, generator)])))
    crossed = []
    crossover = space.crossover

    def recording_crossover(parents_a, parents_b, generator=None):
        crossed.append((parents_a, parents_b))
        return crossover(parents_a, parents_b, generator=generator)

    monkeypatch.setattr(space, "crossover", recording_crossover)
    # copies=1: most first draws are rejected, so each operator must draw again for its own quota
    mutants, crossovers = breed(space, parents, 30, 20, generator, seen=seen, accept=lambda a: a[:, 0] != 0,
                                copies=1, rounds=50)
    assert mutants.shape == (30, 6) and crossovers.shape == (20, 6)
    children = torch.cat([mutants, crossovers])
    assert bool((children[:, 0] != 0).all())
    keys = space.canonical_key(children)
    assert len(set(keys)) == 50 and not set(keys) & seen
    # provenance: a mutant differs from some parent in one edge, a crossover mixes two distinct parents
    assert bool(((mutants[:, None] != parents[None]).sum(dim=2) == 1).any(dim=1).all())
    assert all(_from_a_pair(child, parents) for child in crossovers)
    assert len(crossed) > 1  # drawn again
    for parents_a, parents_b in crossed:
        assert not bool((parents_a == parents_b).all(dim=1).any()), "a parent crossed with itself"


def test_breed_never_fills_one_operator_quota_with_the_other(nb201, generator):
    """One parent cannot be crossed (not with itself): no crossovers, and no extra mutants."""
    parent = uniform_from_universe(nb201, 1, generator)
    mutants, crossovers = breed(nb201.space, parent, 5, 5, generator)
    assert mutants.shape == (5, 6) and crossovers.shape == (0, 6)
    mutants, crossovers = breed(nb201.space, parent, 0, 0, generator)
    assert mutants.shape == crossovers.shape == (0, 6)


@pytest.mark.parametrize(("fraction", "split"), [(0.5, (25, 25)), (0.2, (10, 40))])
def test_spos_evolution_queries_mutants_and_crossovers_by_mutation_fraction(nb201, generator, fraction, split):
    oracle = TabularOracle(nb201, 300, 0.0, generator)
    seeds = nb201.universe[torch.randperm(len(nb201), generator=generator)[:50]]
    generations = spos_evolution(oracle, seeds, population=50, parents=10, mutation_fraction=fraction,
                                 generator=generator)
    _check_run(oracle, 300)
    assert len(generations) == 5
    # mutants always fill their quota; crossovers fill theirs until the top-10 has converged so far
    # that its pairs have no new child left (measured: 1 new cell among all crossovers of a late
    # top-10), then the shortfall is uniform, never more mutants
    assert generations[:2] == [Generation(*split, uniform=0)] * 2
    assert all(g.mutants == split[0] and g.crossovers <= split[1] and sum(g) == 50 for g in generations)
    # check the provenance of what was queried: each generation's mutants, then its crossovers
    archs, _ = oracle.history()
    for number, generation in enumerate(generations):
        start = 50 * (number + 1)
        parents = archs[:start][oracle.benchmark.accuracy(archs[:start]).argsort(descending=True)[:10]]
        mutants = archs[start : start + generation.mutants]
        crossovers = archs[start + generation.mutants : start + generation.mutants + generation.crossovers]
        assert bool(((mutants[:, None] != parents[None]).sum(dim=2) == 1).any(dim=1).all())
        assert all(_from_a_pair(child, parents) for child in crossovers)


def test_spos_evolution_in_a_small_universe(nb201, generator):
    """When children keep leaving a 300-cell universe, generations are topped up uniformly."""
    from vaenas.groundtruth import TabularBenchmark

    rows = torch.randperm(len(nb201), generator=generator)[:300]
    small = TabularBenchmark("small", nb201.space, nb201.universe[rows], nb201.accuracies[rows],
                             key=lambda archs: nb201.space.index_of(archs).tolist())
    oracle = TabularOracle(small, 100, 0.0, generator)
    generations = spos_evolution(oracle, uniform_from_universe(small, 10, generator), 10, 3, 0.5, generator)
    _check_run(oracle, 100)
    assert sum(g.uniform for g in generations) > 0
    assert all(g.mutants <= 5 and g.crossovers <= 5 and sum(g) <= 10 for g in generations)


def test_study_writes_every_output(nb201, tmp_path):
    config = load_config(None, TINY)
    results = run_study(config, nb201, [0], show_progress=False)
    (result,) = results
    methods = {(c.part, c.method, c.noise) for c in result.curves}
    assert methods == {
        ("seeded_evolution", "evolution_vae_seeds", 0.0), ("seeded_evolution", "evolution_uniform_seeds", 0.0),
        ("seeded_evolution", "evolution_vae_seeds", 0.5), ("seeded_evolution", "evolution_uniform_seeds", 0.5),
        ("anytime", "random", 0.0), ("anytime", "regularized_evolution", 0.0),
        ("anytime", "vaenas", 0.0), ("anytime", "vae_evolution", 0.0),
    }
    for curve in result.curves:
        assert len(curve.best) == 60
        assert all(b >= a for a, b in zip(curve.best, curve.best[1:]))
    assert sorted(result.histogram) == ["VAE, noise 0 %", "VAE, noise 0.5 %", "uniform"]
    assert len(result.max_of_k) == 2 * 3  # K = 5, 20 for uniform and two VAEs

    report = write_run(tmp_path / "run", config, nb201, results, elapsed_s=1.0)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert files == {"config.yaml", "curves.csv", "max_of_k.csv", "results.md", "best_architectures.json",
                     "anytime.png", "seeded_evolution.png", "histogram.png"}
    with open(tmp_path / "run" / "curves.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 * 60 and set(rows[0]) == {"part", "method", "noise", "seed", "queries", "best"}
    assert "| Random (uniform) |" in report and "| vaenas |" in report
    found = json.loads((tmp_path / "run" / "best_architectures.json").read_text())
    for entry in found["found"]:
        arch = nb201.space.from_json(entry["architecture"])
        assert float(nb201.accuracy(arch[None])[0]) == pytest.approx(entry["accuracy"])


def test_paper_protocol_uses_common_random_numbers_across_noise_levels(nb201, monkeypatch):
    """Every noise level of a seed fits its VAE on the same draw of n_train architectures with the
    same standard-normal noise scaled by σ, and samples and evolves with the same streams: two
    levels with the same σ give the same rows, so the rows of Table 4 differ only by the noise."""
    fits = []
    fit_topk = VAESampler.fit_topk

    def recording_fit_topk(self, archs, scores, **options):
        fits.append((archs.clone(), torch.as_tensor(scores).clone()))
        return fit_topk(self, archs, scores, **options)

    monkeypatch.setattr(VAESampler, "fit_topk", recording_fit_topk)
    evolved = []  # the seeds of each evolution run

    def recording_spos_evolution(oracle, seeds, *arguments):
        evolved.append(seeds.clone())
        return spos_evolution(oracle, seeds, *arguments)

    monkeypatch.setattr(tabular, "spos_evolution", recording_spos_evolution)
    # vae.n_iters=300: a VAE that concentrates, so its seeds need extra draws that vary by level
    config = load_config(None, [*TINY, "study.noise=[0.1,0.5,0.5]", "anytime.enabled=false", "vae.n_iters=300"])
    result = SeedResult(0)
    TabularStudy(config, nb201)._paper_protocol(0, result, tqdm(disable=True))

    (train, low), (same_train, high), _ = fits
    assert torch.equal(train, same_train)
    true = nb201.accuracy(train)
    torch.testing.assert_close(high - true, 5 * (low - true))
    vae_rows = [best for sampler, _, _, best in result.max_of_k if sampler == "vae"]  # K = 5, 20 per level
    assert vae_rows[2:4] == vae_rows[4:6]
    curves = [c.best for c in result.curves]  # VAE- and uniform-seeded evolution per level
    assert curves[2:4] == curves[4:6]
    # each evolution has its own stream: the uniform seeds do not depend on the VAE-seeded run
    uniform_seeds = evolved[1::2]
    assert torch.equal(uniform_seeds[0], uniform_seeds[1])


def _cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "vaenas.search", *arguments], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_cli_end_to_end(tmp_path):
    completed = _cli(*TINY, "anytime.methods=[random,vaenas]", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "## Any-time" in completed.stdout and "| random |" in completed.stdout
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "curves.csv", "results.md", "best_architectures.json", "anytime.png",
            "histogram.png"} <= files
    assert not any(name.endswith(".tmp") for name in files)
    resolved = load_config(tmp_path / "run" / "config.yaml")
    assert resolved.anytime.methods == ["random", "vaenas"] and resolved.out == str(tmp_path / "run")


def test_cli_bad_option_exits_2_with_one_line(tmp_path):
    completed = _cli("study.sedds=3", cwd=tmp_path)
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        "python -m vaenas.search: error: unknown config key 'study.sedds'; did you mean 'study.seeds'? (see --help)"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("argument", "message"),
    [("study.seeds=x", "study.seeds: expected int"), ("benchmark.name=nasbench999", "benchmark.name: unknown value"),
     ("anytime.budget=20000", "anytime.budget: 20000 exceeds the 15625 architectures")],
)
def test_main_bad_value_returns_2(capsys, argument, message):
    assert main([argument]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


def test_main_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "study.seeds=10" in out and "vae.hidden_dim=" in out
