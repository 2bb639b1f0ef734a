"""Resume bit for bit with dropout on the CPU: the ShuffleNet supernet's dropout draws from the global
torch stream, so nothing else (the data loaders above all) may draw from it at a point a straight run
does not."""

from __future__ import annotations

import pytest
import torch

from vaenas.runtime import RunFolder, load_checkpoint
from vaenas.search.oneshot.cli import main

#: a tiny ShuffleNet search with dropout: 6 steps, two refits, a short evolution
SHUFFLENET = [
    "method=oneshot", "progress=false", "space=shufflenet",
    "supernet.shufflenet={width: 0.25, dropout: 0.5, small_input: true}", "data.image_size=8",
    "data.batch_size=16", "data.holdout=16", "data.calibration_images=16", "data.eval_batch_size=16",
    "train.steps=6", "vaenas.refit_every=3", "vaenas.n_samples=2", "vaenas.compare_samples=0",
    "vae.n_iters=2", "vae.batch_size=2", "eval.group_size=2", "search.seeds=2", "search.generations=0",
    "search.population=2", "search.parents=1", "run.checkpoint_every=2",
]


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def _final_state(run_dir) -> dict:
    return load_checkpoint(RunFolder(run_dir).latest_checkpoint())["state"]


def test_a_shufflenet_run_with_dropout_resumes_bit_for_bit(tmp_path):
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    assert main(SHUFFLENET + [f"out={straight}"]) == 0
    assert main(SHUFFLENET + [f"out={halves}", "run.stop_at=2"]) == 0  # stops inside the first epoch
    assert main(["--resume", str(halves), "progress=false"]) == 0
    a, b = _final_state(straight), _final_state(halves)
    assert a["step"] == b["step"] == 6 and a["arch_digest"] == b["arch_digest"]
    for key, tensor in a["supernet"].items():
        assert torch.equal(tensor, b["supernet"][key]), f"{key} differs after the resume"
