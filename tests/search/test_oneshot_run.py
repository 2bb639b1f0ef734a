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
from vaenas.search.oneshot_cli import main

REPO = Path(__file__).resolve().parents[2]

#: all of Algorithm 2 in a few seconds: 8 steps, refits at 4 and 8, a 1-generation evolution
TINY = [
    "method=oneshot", "progress=false", "supernet.options.channels=4", "data.image_size=8",
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
    assert a["mixture"] == b["mixture"] and a["refits"] == b["refits"]
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
