"""The tabular study on NAS-Bench-201: the paper protocol, outputs, and the CLI."""

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

from vaenas.config import load_config
from vaenas.sampler import VAESampler
from vaenas.search import evolution
from vaenas.search.__main__ import main
from vaenas.search.tabular import SeedResult, TabularConfig, TabularStudy, run_study, write_run
from vaenas.search.tabular import study as tabular_study

REPO = Path(__file__).resolve().parents[3]

#: a study that exercises every part in seconds
TINY = [
    "study.seeds=1", "study.n_train=100", "study.ks=[5,20]", "study.noise=[0,0.5]", "study.histogram_samples=100",
    "evolution.budget=60", "evolution.population=20", "evolution.parents=5",
    "anytime.budget=60", "anytime.report_at=[10,60]", "anytime.round_size=20", "anytime.vae_iters=3",
    "anytime.first_fit_iters=5",
    "anytime.population=20", "anytime.sample_size=5", "anytime.warmup=20",
    "vae.n_iters=5", "vae.batch_size=16", "vae.hidden_dim=16", "progress=false",
]


def test_study_writes_every_output(nb201, tmp_path):
    config = load_config(None, TINY, cls=TabularConfig)
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
        return evolution.spos_evolution(oracle, seeds, *arguments)

    monkeypatch.setattr(tabular_study, "spos_evolution", recording_spos_evolution)
    # vae.n_iters=300: a VAE that concentrates, so its seeds need extra draws that vary by level
    config = load_config(None, [*TINY, "study.noise=[0.1,0.5,0.5]", "anytime.enabled=false", "vae.n_iters=300"],
                         cls=TabularConfig)
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
    resolved = load_config(tmp_path / "run" / "config.yaml", cls=TabularConfig)
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
    assert "method=oneshot" in out and "method=gradient" in out  # the other methods and how to see their keys


def test_overrides_may_follow_the_flags(tmp_path, capsys):
    """One parser for every method: key=value before or after --out (the tabular CLI refused the latter)."""
    run = tmp_path / "run"
    assert main(["--out", str(run), *TINY, "anytime.methods=[random]", "study.enabled=false"]) == 0
    assert (run / "results.md").is_file()
