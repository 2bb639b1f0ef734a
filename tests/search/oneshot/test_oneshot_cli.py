"""One-shot runs end to end (tiny configs): resume bit for bit, checkpoint errors, CLI errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vaenas.runtime import CheckpointError, RunFolder, load_checkpoint, save_checkpoint
from vaenas.search.__main__ import main as vaenas_search
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


def test_resume_refuses_another_config_and_another_method(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(TINY + [f"out={run}", "run.stop_at=3"]) == 0
    capsys.readouterr()
    for arguments, message in (
        (["train.lr=0.5"], "--resume: train.lr would differ from the run's config.yaml"),
        (["--out", str(tmp_path / "other")], "give neither --config nor --out"),
        (["--config", "oneshot_nb201_digits"], "give neither --config nor --out"),
        (["method=gradient"], f"the folder holds a oneshot run, not a gradient one; continue it with "
                              f"`python -m vaenas.search --resume {run}`"),
    ):
        assert vaenas_search(["--resume", str(run), *arguments]) == 2, arguments
        error = capsys.readouterr().err
        assert message in error and len(error.strip().splitlines()) == 1, error
    # the checkpoint's own check stays, for a config.yaml edited by hand
    saved = run / "config.yaml"
    saved.write_text(saved.read_text().replace("lr: 0.1", "lr: 0.5"))
    assert main(["--resume", str(run)]) == 1
    assert "train.lr: checkpoint 0.1, this run 0.5" in capsys.readouterr().err


def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path, capsys, caplog):
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert main(TINY + [f"out={straight}"]) == 0
    assert main(TINY + [f"out={run}", "run.stop_at=6"]) == 0  # checkpoints at steps 3 and 6
    older, latest = RunFolder(run).checkpoints()
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated, as by a kill during a save
    leftover = RunFolder(run).checkpoint_dir / ".step-00000009.pt.1234.abcd.tmp"
    leftover.write_bytes(b"")  # what a killed atomic write leaves
    caplog.set_level("WARNING")
    assert main(["--resume", str(run), "progress=false"]) == 0
    assert f"skipped checkpoint {latest}" in caplog.text and older.name in caplog.text
    assert not leftover.exists()
    a, b = _final_state(straight), _final_state(run)
    for key, tensor in a["supernet"].items():
        assert torch.equal(tensor, b["supernet"][key]), key
    # no checkpoint that loads: one line naming each
    only = tmp_path / "only"
    assert main(TINY + [f"out={only}", "run.stop_at=3"]) == 0
    (checkpoint,) = RunFolder(only).checkpoints()
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    capsys.readouterr()
    assert main(["--resume", str(only)]) == 1
    error = capsys.readouterr().err
    assert str(checkpoint) in error and "corrupt" in error and len(error.strip().splitlines()) == 1


def test_a_finished_run_is_never_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(TINY + [f"out={run}"]) == 0
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file() and path.name != ".lock"}
    capsys.readouterr()
    assert main(TINY + ["--out", str(run)]) == 2
    assert f"{run} already holds a run: continue it with --resume {run}" in capsys.readouterr().err
    assert before == {path: path.read_bytes() for path in run.rglob("*") if path.is_file() and path.name != ".lock"}
    (tmp_path / "file").write_text("x")
    for out, message in ((tmp_path / "file", "is a file, not a folder"), (tmp_path / "file" / "sub", "cannot write")):
        assert main(TINY + [f"out={out}"]) == 2
        assert message in capsys.readouterr().err


def test_a_run_folder_in_use_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(TINY + [f"out={run}", "run.stop_at=3"]) == 0
    with RunFolder(run).lock():  # another process resuming it, as far as flock is concerned
        capsys.readouterr()
        assert main(["--resume", str(run)]) == 2
        error = capsys.readouterr().err
        assert f"{run} is in use by pid {os.getpid()}" in error and len(error.strip().splitlines()) == 1
    assert main(["--resume", str(run), "progress=false"]) == 0  # once it is free


def test_wall_time_counts_every_process_of_a_resumed_run(tmp_path):
    run = tmp_path / "run"
    assert main(TINY + [f"out={run}", "run.stop_at=3"]) == 0
    first = load_checkpoint(RunFolder(run).latest_checkpoint())["seconds"]
    assert first > 0
    assert main(["--resume", str(run), "progress=false"]) == 0
    assert load_checkpoint(RunFolder(run).latest_checkpoint())["seconds"] > first


def test_ctrl_c_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "vaenas.search", *TINY, "train.steps=100000", "run.checkpoint_every=2", f"out={run}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "WORLD_SIZE": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not RunFolder(run).checkpoints() if run.is_dir() else True:
            assert time.monotonic() < deadline and process.poll() is None, "no checkpoint appeared"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert f"interrupted: {run} keeps its last checkpoint; continue with `python -m vaenas.search --resume {run}`" \
        in stderr and "Traceback" not in stderr


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
    config = load_config(None, [*TINY, "vaenas.n_samples=6"], cls=OneShotConfig)  # τ needs >= 5 known rows
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


def test_exported_child_gives_the_supernets_logits(supernet_logits):
    """OneShotSearch.export_child: weights inherited, BN recalibrated for the architecture."""
    from vaenas.data import build_search_data
    from vaenas.config import load_config
    from vaenas.search.oneshot import OneShotConfig, OneShotSearch

    config = load_config(None, TINY, cls=OneShotConfig)
    search = OneShotSearch(config, build_search_data(config.data), torch.device("cpu"))
    search.train(until=4)
    arch = torch.tensor([3, 1, 2, 1, 4, 3])
    child = search.export_child(arch).eval()
    images = next(iter(search.data.holdout))[0]
    with torch.no_grad():
        got = child(images)
    torch.testing.assert_close(got, supernet_logits(search, arch, images), rtol=1e-4, atol=1e-5)


def test_the_found_network_loads_from_the_run_folder_and_the_report_costs_it(tmp_path, supernet_logits):
    """architecture.json holds the network's options (num_classes and image size included):
    load_found_network(run) rebuilds child.pt's network, whose logits are the supernet's for the
    found architecture; the report and architecture.json cost that network (channels 4, 8 px),
    not the space's default child (16 channels, 5 cells per stage, 32 px: ~1 M parameters)."""
    from vaenas.config import load_config
    from vaenas.data import build_search_data
    from vaenas.search.oneshot import OneShotConfig, OneShotSearch
    from vaenas.supernet import load_found_network

    run = tmp_path / "run"
    assert main(TINY + [f"out={run}"]) == 0
    found = json.loads((run / "architecture.json").read_text())
    assert found["network"] == {"space": "nasbench201", "tokens": found["tokens"], "image_size": 8,
                                "options": {"channels": 4, "cells_per_stage": 1, "num_classes": 10}}
    network = load_found_network(run)
    assert not network.training
    params = sum(p.numel() for p in network.parameters())
    assert found["cost"]["params"] == params < 20_000
    assert f"params {params}," in (run / "report.md").read_text()
    config = load_config(run / "config.yaml", [], cls=OneShotConfig)
    search = OneShotSearch(config, build_search_data(config.data), torch.device("cpu"))
    search.load_state_dict(_final_state(run))
    arch = torch.tensor(found["tokens"])
    images = next(iter(search.data.holdout))[0]
    with torch.no_grad():
        got = network(images)
    torch.testing.assert_close(got, supernet_logits(search, arch, images), rtol=1e-4, atol=1e-5)


def test_load_found_network_names_what_is_missing(tmp_path):
    from vaenas.supernet import FoundNetworkError, load_found_network

    with pytest.raises(FoundNetworkError, match="architecture.json: no such file"):
        load_found_network(tmp_path)
    (tmp_path / "architecture.json").write_text(json.dumps({"tokens": [0, 1, 2, 3, 4, 1]}))
    with pytest.raises(FoundNetworkError, match="no 'network' entry"):
        load_found_network(tmp_path)
    network = {"space": "nasbench201", "tokens": [0, 1, 2, 3, 4, 1], "image_size": 8,
               "options": {"channels": 4, "cells_per_stage": 1, "num_classes": 10}}
    (tmp_path / "architecture.json").write_text(json.dumps({"network": network}))
    with pytest.raises(CheckpointError, match="child.pt: no such file"):
        load_found_network(tmp_path)
    save_checkpoint(tmp_path / "child.pt", {"classifier.weight": torch.zeros(3, 3)})
    with pytest.raises(FoundNetworkError, match="does not fit the network"):
        load_found_network(tmp_path)


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
