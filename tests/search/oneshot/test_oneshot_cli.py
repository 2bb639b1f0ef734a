"""One-shot runs end to end (tiny configs): resume bit for bit, checkpoint errors, CLI errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vaenas.runtime import RunFolder, load_checkpoint
from vaenas.search.oneshot.cli import main

REPO = Path(__file__).resolve().parents[3]

#: all of Algorithm 2 in a few seconds: 8 steps, refits at 4 and 8, a 1-generation evolution
TINY = [
    "method=oneshot", "progress=false", "supernet.nasbench201.channels=4", "supernet.nasbench201.cells_per_stage=1",
    "data.image_size=8",
    "data.batch_size=16", "data.holdout=40", "data.calibration_images=16", "data.eval_batch_size=40",
    "train.steps=8", "vaenas.refit_every=4", "vaenas.n_samples=4", "vaenas.compare_samples=2",
    "vaenas.epsilon_inc=0.1", "vae.n_iters=5", "vae.batch_size=8", "eval.group_size=4", "search.seeds=3",
    "search.generations=1", "search.population=3", "search.parents=2", "run.checkpoint_every=3",
]


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def _final_state(run_dir: Path) -> dict:
    return load_checkpoint(RunFolder(run_dir).latest_checkpoint())["state"]


def test_resume_continues_bit_for_bit(tmp_path):
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    assert main(TINY + [f"out={straight}"]) == 0
    assert main(TINY + [f"out={halves}", "run.stop_at=4"]) == 0
    assert _final_state(halves)["step"] == 4 and not (halves / "architecture.json").exists()
    assert main(["--resume", str(halves), "progress=false"]) == 0
    a, b = _final_state(straight), _final_state(halves)
    assert a["arch_digest"] == b["arch_digest"]  # the same architecture sequence
    for key, tensor in a["supernet"].items():
        assert torch.equal(tensor, b["supernet"][key]), key
    for key, tensor in a["vae"]["model"].items():
        assert torch.equal(tensor, b["vae"]["model"][key]), key
    # refits compared as JSON: on digits (a packaged ground truth of 100 cells) τ of a refit's few
    # known samples is nan, and nan != nan
    assert a["mixture"] == b["mixture"] and json.dumps(a["refits"]) == json.dumps(b["refits"])
    assert json.loads((straight / "architecture.json").read_text()) == json.loads((halves / "architecture.json").read_text())
    records = [json.loads(line) for line in (halves / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "refit"] == [4, 8]  # no record repeated by the resume
    for name in ("child.pt", "refits.png", "epsilon.png", "evolution.png", "report.md", "config.yaml"):
        assert (halves / name).is_file(), name


def test_resume_rejects_a_corrupt_checkpoint_and_another_config(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(TINY + [f"out={run}", "run.stop_at=3"]) == 0
    assert main(["--resume", str(run), "train.lr=0.5"]) == 1
    assert "train.lr: checkpoint 0.1, this run 0.5" in capsys.readouterr().err
    latest = RunFolder(run).latest_checkpoint()
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated
    assert main(["--resume", str(run)]) == 1
    error = capsys.readouterr().err
    assert str(latest) in error and "corrupt" in error


def _cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaenas.search", *arguments], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "WORLD_SIZE": "1"})


def test_bad_configs_exit_2_with_one_line(capsys):
    for arguments, message in (
        (["train.stpes=3"], "did you mean 'train.steps'"),
        (["vaenas.top_fraction=2"], "vaenas.top_fraction: 2.0 is above the maximum 1"),
        (["space=nasbench202"], "did you mean 'nasbench201'"),
        (["train.group_size=3"], "does not split into 3 equal groups"),
    ):
        assert main(["method=oneshot", *arguments]) == 2
        error = capsys.readouterr().err
        assert message in error and len(error.strip().splitlines()) == 1, error


def test_missing_data_folder_exits_1_without_a_traceback(tmp_path):
    """Through `python -m vaenas.search`, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "vaenas.search", "method=oneshot", "data=cifar10", f"data.root={tmp_path / 'nowhere'}",
         f"--out={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "WORLD_SIZE": "1"},
    )
    assert result.returncode == 1, result.stderr
    assert str(tmp_path / "nowhere") in result.stderr and "Traceback" not in result.stderr


def test_ground_truth_is_reported_where_a_table_exists():
    """NB201 + CIFAR-10 reads the packaged table: true accuracies of the VAE's samples and of the
    found architecture, Kendall τ of supernet scores vs truth (here the supernet trains on digits,
    with the CIFAR-10 table swapped in, so only the reporting is checked)."""
    from vaenas.data import build_search_data
    from vaenas.config import load_config
    from vaenas.groundtruth import table_for
    from vaenas.search.oneshot import OneShotConfig, OneShotSearch

    assert table_for("nasnet", "cifar10") is None
    config = load_config(None, TINY, cls=OneShotConfig)
    search = OneShotSearch(config, build_search_data(config.data), torch.device("cpu"))
    search.benchmark = table_for("nasbench201", "cifar10")
    search.train()
    refit = search.refits[-1]
    assert -1.0 <= refit["kendall_tau"] <= 1.0 and 0 < refit["vae_true_mean"] < 100
    search.start_search()
    while search.search_step():
        pass
    summary = search.result()
    assert 0 < summary["true_accuracy"] <= summary["table_best"]
    assert all("kendall_tau" in entry for entry in summary["evolutions"].values())


def test_exported_child_gives_the_supernets_logits():
    """OneShotSearch.export_child: weights inherited, BN recalibrated for the architecture."""
    from vaenas.data import build_search_data
    from vaenas.config import load_config
    from vaenas.search.oneshot import OneShotConfig, OneShotSearch
    from vaenas.supernet import clear_group_statistics, recalibrate

    config = load_config(None, TINY, cls=OneShotConfig)
    search = OneShotSearch(config, build_search_data(config.data), torch.device("cpu"))
    search.train(until=4)
    arch = torch.tensor([[3, 1, 2, 1, 4, 3]])
    child = search.export_child(arch[0]).eval()
    with recalibrate(search.supernet, 1):
        for images, _ in search.data.calibration:
            search.supernet(images, arch)
    search.supernet.eval()
    images = next(iter(search.data.holdout))[0]
    with torch.no_grad():
        expected = search.supernet(images, arch)
        got = child(images)
    got = got[-1] if isinstance(got, tuple) else got
    clear_group_statistics(search.supernet)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_resume_in_the_middle_of_the_evolution(tmp_path, monkeypatch):
    """A run resumed from a checkpoint taken between two generations ends as the straight run."""
    import shutil

    keep_all = RunFolder.save_checkpoint
    monkeypatch.setattr(RunFolder, "save_checkpoint", lambda self, state, step, keep=2: keep_all(self, state, step, None))
    straight = tmp_path / "straight"
    assert main(TINY + [f"out={straight}", "search.generations=2"]) == 0
    checkpoints = RunFolder(straight).checkpoints()
    middle = [p for p in checkpoints
              if (lambda s: s["phase"] == "search" and len(s["state"]["evolutions"]) == 2
                  and s["state"]["evolutions"]["uniform"]["generation"] == 2)(load_checkpoint(p))]
    assert middle, "no checkpoint between two generations"
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    for path in RunFolder(resumed).checkpoints():
        if path.name > middle[0].name:
            path.unlink()
    (resumed / "architecture.json").unlink()
    assert main(["--resume", str(resumed), "progress=false"]) == 0
    a, b = _final_state(straight), _final_state(resumed)
    for seeding in ("vae", "uniform"):
        assert torch.equal(a["evolutions"][seeding]["archs"], b["evolutions"][seeding]["archs"])
        assert torch.equal(a["evolutions"][seeding]["scores"], b["evolutions"][seeding]["scores"])
    assert json.loads((straight / "architecture.json").read_text()) == json.loads((resumed / "architecture.json").read_text())
