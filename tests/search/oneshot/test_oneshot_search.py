"""OneShotSearch's final search: distinct seeds from a concentrated VAE, and where the ground truth
of its report comes from (packaged table, none, or a CSV file of one's own)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from vaenas.config import load_config
from vaenas.data import DataError, build_search_data
from vaenas.groundtruth import table_for
from vaenas.groundtruth.ranking import rank_against
from vaenas.search.oneshot import OneShotConfig, OneShotSearch
from vaenas.search.oneshot.cli import main
from vaenas.search.oneshot.report import markdown

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

#: a tiny NAS-Bench-201 search on 8 px digits, VAE-seeded evolution only
TINY = [
    "method=oneshot", "progress=false", "supernet.nasbench201.channels=4", "supernet.nasbench201.cells_per_stage=1", "data.image_size=8",
    "data.batch_size=16", "data.holdout=32", "data.calibration_images=16", "data.eval_batch_size=32",
    "train.steps=2", "vaenas.refit_every=2", "vaenas.n_samples=4", "vaenas.compare_samples=2",
    "vae.n_iters=5", "vae.batch_size=8", "eval.group_size=4", "search.seeds=12", "search.seeding=vae",
    "search.generations=1", "search.population=3", "search.parents=2",
]


def _search(overrides=()) -> OneShotSearch:
    config = load_config(None, TINY + list(overrides), cls=OneShotConfig)
    return OneShotSearch(config, build_search_data(config.data), torch.device("cpu"))


def _finish(search: OneShotSearch) -> dict:
    search.train()
    search.start_search()
    while search.search_step():
        pass
    return search.result()


def test_seeds_from_a_concentrated_vae_are_distinct_and_fill_the_population():
    """A VAE fitted on 4 architectures repeats them: 12 draws hold 5 distinct ones. The seeds are
    drawn again, hotter, until 12 distinct ones are found (not topped up uniformly)."""
    search = _search()
    search.vae.fit(search.space.sample(4, torch.Generator().manual_seed(5)), 300)
    plain = search.vae.sample(12, torch.Generator().manual_seed(0))
    assert len(set(search.space.canonical_key(plain))) <= 6
    search.start_search()
    evolution = search.evolutions["vae"]
    seeds = evolution.archs
    assert len(seeds) == 12 and len(set(search.space.canonical_key(seeds))) == 12
    assert evolution.uniform_topups == 0


def _own_table(path, space):
    """Every NAS-Bench-201 cell with a made-up accuracy (the sum of its tokens), as a user writes it."""
    lines = ["tokens,accuracy"]
    for tokens in itertools.product(*(range(k) for k in space.vocab_sizes)):
        lines.append(f"{' '.join(map(str, tokens))},{sum(tokens) * 4.0}")
    path.write_text("\n".join(lines) + "\n")


def test_ground_truth_from_a_file_of_ones_own(tmp_path):
    table = tmp_path / "my_table.csv"
    search = _search()
    _own_table(table, search.space)
    search = _search([f"search.ground_truth={table}", "vaenas.n_samples=6"])  # τ needs >= 5 known rows
    summary = _finish(search)
    assert summary["ground_truth"] == f"{table} (15625 architectures)"
    assert summary["true_accuracy"] == 4.0 * sum(summary["tokens"]) and summary["table_best"] == 96.0
    assert -1 <= search.refits[-1]["kendall_tau"] <= 1
    report = markdown(summary, search.refits, 1.0, tmp_path)
    assert f"ground truth (true accuracy, τ): {table} (15625 architectures)" in report
    entry = summary["evolutions"][summary["found_by"]]
    # accuracy 4 * (sum of tokens): the share of the 15625 cells whose token sum is at most the found one's
    sums = torch.cartesian_prod(*[torch.arange(5)] * 6).sum(1)
    assert entry["best_true_percentile"] == 100.0 * float((sums <= sum(summary["tokens"])).sum()) / 15625
    assert f"{entry['best_true']:.2f} ({entry['best_true_percentile']:.0f})" in report


def test_the_final_supernet_ranks_a_fixed_draw_of_the_ground_truth(tmp_path):
    table = tmp_path / "my_table.csv"
    search = _search()
    _own_table(table, search.space)
    search = _search([f"search.ground_truth={table}", "search.ranked_cells=40"])
    summary = _finish(search)
    ranking = summary["table_ranking"]
    assert ranking["architectures"] == 40
    rows = torch.randperm(15625, generator=torch.Generator().manual_seed(0))[:40]
    expected = rank_against(search.score, search.benchmark.universe[rows], search.benchmark.accuracies[rows])
    assert {k: ranking[k] for k in expected} == expected
    assert -1 <= ranking["kendall_tau"] <= 1 and 0 <= ranking["precision_at_k"] <= 1
    report = markdown(summary, search.refits, 1.0, tmp_path)
    assert "final supernet against the ground truth (40 architectures): Kendall τ" in report
    summary = _finish(_search([f"search.ground_truth={table}", "search.ranked_cells=0"]))
    assert "table_ranking" not in summary


def test_ground_truth_packaged_or_none_is_said_in_the_report(tmp_path):
    search = _search()
    search.benchmark = table_for("nasbench201", "cifar10")  # as data=cifar10 selects it (auto)
    summary = _finish(search)
    report = markdown(summary, search.refits, 1.0, tmp_path)
    assert "ground truth (true accuracy, τ): the packaged NAS-Bench-201 table (cifar10" in report
    assert "search.ground_truth=none turns it off" in report
    search = _search(["search.ground_truth=none"])
    assert search.benchmark is None
    summary = _finish(search)
    assert "true_accuracy" not in summary and "ground_truth" not in summary
    assert "ground truth: none" in markdown(summary, search.refits, 1.0, tmp_path)


@pytest.mark.parametrize("text, problem", [
    ("arch,acc\n0 1 2 3 4 1,50\n", "missing column(s) tokens, accuracy"),
    ("tokens,accuracy\n0 1 2 3 4 1,fifty\n", "line 2: accuracy 'fifty' is not a number"),
    ("tokens,accuracy\n0 1 2 3 4,50\n", "line 2: tokens '0 1 2 3 4' are not an architecture of nasbench201"),
    ("tokens,accuracy\n0 1 2 3 4 9,50\n", "invalid token 9 at position 5"),
    ("tokens,accuracy\n", "no architectures"),
])
def test_a_bad_ground_truth_file_is_one_clear_error(tmp_path, text, problem):
    table = tmp_path / "table.csv"
    table.write_text(text)
    with pytest.raises(DataError) as error:
        _search([f"search.ground_truth={table}"])
    assert str(error.value).startswith(f"search.ground_truth: {table}") and problem in str(error.value)


def test_a_missing_ground_truth_file_exits_1_with_one_line(tmp_path, capsys):
    assert main(TINY + [f"search.ground_truth={tmp_path / 'nowhere.csv'}", f"out={tmp_path / 'run'}"]) == 1
    error = capsys.readouterr().err
    assert f"search.ground_truth: ground-truth file {tmp_path / 'nowhere.csv'}: no such file" in error
    assert len(error.strip().splitlines()) == 1, error


def test_the_architecture_json_of_a_run_says_where_its_ground_truth_came_from(tmp_path):
    table = tmp_path / "mine.csv.gz"
    import gzip

    search = _search()
    _own_table(tmp_path / "plain.csv", search.space)
    table.write_bytes(gzip.compress((tmp_path / "plain.csv").read_bytes()))
    assert main(TINY + [f"search.ground_truth={table}", f"out={tmp_path / 'run'}"]) == 0
    found = json.loads((tmp_path / "run" / "architecture.json").read_text())
    assert found["ground_truth"] == f"{table} (15625 architectures)" and "true_accuracy" in found


def test_tau_is_left_out_over_too_few_known_architectures():
    from vaenas.search.oneshot.search import MIN_TAU_ROWS, known_tau

    scores, true = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), torch.tensor([1.0, 2.0, 3.0, 5.0, 4.0])
    assert MIN_TAU_ROWS == 5 and known_tau(scores, true) == pytest.approx(0.8)
    assert torch.isnan(torch.tensor(known_tau(scores[:4], true[:4])))  # τ of 4 rows would read 1.0
