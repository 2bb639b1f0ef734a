"""Finished seeds on disk, --resume, and the study under torchrun: a rank killed with SIGKILL
mid-run, then --resume, gives the outputs of an uninterrupted run (issue 11)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vaenas.groundtruth import nasbench201
from vaenas.runtime import RunFolder
from vaenas.search.__main__ import main
from vaenas.config import load_config
from vaenas.search.tabular import SeedResult, TabularConfig, load_seeds, run_study

REPO = Path(__file__).resolve().parents[3]

#: a 3-seed study of a few seconds (cf. test_tabular.TINY); rank 0 of 2 runs seeds 0 and 2
SMALL = [
    "study.seeds=3", "study.n_train=100", "study.ks=[5,20]", "study.noise=[0,0.5]", "study.histogram_samples=100",
    "evolution.budget=60", "evolution.population=20", "evolution.parents=5",
    "anytime.budget=60", "anytime.report_at=[10,60]", "anytime.round_size=20", "anytime.vae_iters=3",
    "anytime.first_fit_iters=5",
    "anytime.methods=[random,vaenas]", "vae.n_iters=5", "vae.batch_size=16", "vae.hidden_dim=16", "progress=false",
]
#: outputs that must not depend on how the run was split, interrupted or resumed
SAME = ("curves.csv", "max_of_k.csv", "best_architectures.json")


def _same_outputs(reference: Path, other: Path) -> None:
    for name in SAME:
        assert (other / name).read_bytes() == (reference / name).read_bytes(), name
    wall = re.compile(r"wall time \d+ s|\d+\.\d s\b")  # the numbers about this invocation: wall times
    assert wall.sub("", (other / "results.md").read_text()) == wall.sub("", (reference / "results.md").read_text())
    assert load_seeds(RunFolder(other)) == load_seeds(RunFolder(reference))


# --- one process ------------------------------------------------------------------------------


def test_seed_result_round_trips_through_json():
    config = load_config(None, SMALL + ["study.seeds=1", "anytime.methods=[random]"], cls=TabularConfig)
    (result,) = run_study(config, nasbench201("cifar10"), [0], show_progress=False)
    again = SeedResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result and isinstance(again.max_of_k[0], tuple)


def test_resume_runs_only_the_missing_seeds(tmp_path, caplog):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    assert main([*SMALL, "study.seeds=2", "--out", str(full)]) == 0
    assert sorted(p.name for p in (full / "seeds").iterdir()) == ["seed-0.json", "seed-1.json"]
    # what a run killed after its first seed leaves: config.yaml and seeds/seed-0.json
    (resumed / "seeds").mkdir(parents=True)
    shutil.copy(full / "config.yaml", resumed / "config.yaml")
    shutil.copy(full / "seeds" / "seed-0.json", resumed / "seeds" / "seed-0.json")
    caplog.set_level(logging.INFO, logger="vaenas.search")
    assert main(["--resume", str(resumed)]) == 0
    assert "seeds [1]; finished before: [0]" in caplog.text
    _same_outputs(full, resumed)
    assert load_config(resumed / "config.yaml", cls=TabularConfig).out == str(resumed)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--out", "{run}", "study.seeds=1"], "already holds a run: continue it with --resume"),
        (["--resume", "{run}", "vae.n_iters=7"], "--resume: vae.n_iters would differ from the run's config.yaml"),
        (["--resume", "{run}", "--out", "{run}"], "give neither --config nor --out"),
        (["--resume", "{run}/nowhere"], "no config.yaml there"),
    ],
)
def test_refusals(tmp_path, capsys, arguments, message):
    run = tmp_path / "run"
    RunFolder(run).write_config({"study": {"seeds": 1}})
    RunFolder(run).save_unit("seeds", "seed-0", SeedResult(0).to_dict())
    capsys.readouterr()
    assert main([a.replace("{run}", str(run)) for a in arguments]) == 2
    assert message in capsys.readouterr().err


# --- two processes under torchrun ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(*arguments: str, cwd: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(_free_port()), "-m", "vaenas.search", *arguments]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    _, error = process.communicate(timeout=timeout)
    return process.returncode, error


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in os.listdir(f"/proc/{parent}/task"):
            try:
                children = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
            except OSError:
                continue
            found += map(int, children)
            todo += map(int, children)
    return found


def _rank_pid(launcher: int, rank: int) -> int:
    for pid in _descendants(launcher):
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environment:
            return pid
    raise AssertionError(f"no process of rank {rank} under torchrun {launcher}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The study with 2 processes, start to end: CI's 2-process run of vaenas.search."""
    work = tmp_path_factory.mktemp("torchrun")
    returncode, error = _finish(_torchrun(*SMALL, "--out", str(work / "run"), cwd=work))
    assert returncode == 0, error
    assert "terminate called" not in error
    return work / "run"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process in /proc")
def test_two_processes_write_every_seed_and_output(uninterrupted):
    assert sorted(load_seeds(RunFolder(uninterrupted))) == [0, 1, 2]
    assert {"config.yaml", "results.md", *SAME} <= {p.name for p in uninterrupted.iterdir()}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process in /proc")
def test_rank_killed_then_resumed_gives_the_uninterrupted_results(uninterrupted, tmp_path):
    run = tmp_path / "run"
    launcher = _torchrun(*SMALL, "--out", str(run), cwd=tmp_path)
    first_seed = run / "seeds" / "seed-0.json"
    deadline = time.monotonic() + 150
    while not first_seed.exists():  # rank 0 has finished seed 0 and is running seed 2
        assert launcher.poll() is None, "the run ended before a seed was on disk: " + launcher.communicate()[1]
        assert time.monotonic() < deadline, "no seed on disk after 150 s"
        time.sleep(0.02)
    os.kill(_rank_pid(launcher.pid, 0), signal.SIGKILL)
    returncode, _ = _finish(launcher)
    assert returncode != 0  # torchrun saw rank 0 die and stopped rank 1

    # what the killed run left: a loadable folder with some seeds, without the outputs
    folder = RunFolder(run)
    finished = load_seeds(folder)
    assert 0 in finished and 2 not in finished, f"the kill came too late to test anything: {sorted(finished)}"
    assert folder.read_config()["study"]["seeds"] == 3
    assert not (run / "results.md").exists()

    returncode, error = _finish(_torchrun("--resume", str(run), cwd=tmp_path))
    assert returncode == 0, error
    assert f"finished before: {sorted(finished)}" in error
    _same_outputs(uninterrupted, run)
