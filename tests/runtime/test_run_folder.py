"""RunFolder: config, metrics log, checkpoints and finished units."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from vaenas.runtime import RunFolder, default_run_path, load_checkpoint


@dataclass
class _Section:
    lr: float = 0.1
    sizes: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class _Config:
    name: str = "nb201"
    train: _Section = field(default_factory=_Section)


def test_config_round_trip(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert folder.path.is_dir()
    folder.write_config(_Config())
    assert folder.read_config() == {"name": "nb201", "train": {"lr": 0.1, "sizes": [1, 2]}}
    folder.write_config({"b": 1, "a": 2})
    assert list(folder.read_config()) == ["b", "a"]  # order kept as given
    with pytest.raises(FileNotFoundError, match="no config"):
        RunFolder(tmp_path / "other").read_config()


def test_metrics_log(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.read_metrics() == []
    for step in range(4):
        folder.log_metrics(step, loss=1.0 / (step + 1), phase="train")
    records = folder.read_metrics()
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert records[1]["loss"] == 0.5 and records[1]["phase"] == "train" and "time" in records[1]

    with open(folder.metrics_path, "a") as handle:  # what a kill in the middle of a write leaves
        handle.write('{"step": 4, "lo')
    assert len(folder.read_metrics()) == 4

    folder.truncate_metrics(2)  # resuming from a checkpoint saved after 2 records
    folder.log_metrics(2, loss=0.3)
    assert [(r["step"], r["loss"]) for r in folder.read_metrics()] == [(0, 1.0), (1, 0.5), (2, 0.3)]


def test_checkpoints(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.latest_checkpoint() is None and folder.checkpoints() == []
    for step in (5, 100, 20):
        folder.save_checkpoint({"step": step, "w": torch.full((2,), float(step))}, step, keep=None)
    (folder.checkpoint_dir / ".step-00000200.pt.123.abcd.tmp").write_bytes(b"half")  # an interrupted save
    assert [p.name for p in folder.checkpoints()] == ["step-00000005.pt", "step-00000020.pt", "step-00000100.pt"]
    assert load_checkpoint(folder.latest_checkpoint())["step"] == 100

    folder.save_checkpoint({"step": 150}, 150, keep=2)
    assert [p.name for p in folder.checkpoints()] == ["step-00000100.pt", "step-00000150.pt"]
    with pytest.raises(ValueError, match="keep=0"):
        folder.save_checkpoint({}, 160, keep=0)


def test_units(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.load_units("seeds") == {}
    folder.save_unit("seeds", "seed-0", {"seed": 0, "best": [93.1, 94.0], "nan": float("nan")})
    folder.save_unit("seeds", "seed-1", {"seed": 1})
    (tmp_path / "seeds" / ".seed-2.json.99.beef.tmp").write_text('{"seed"')  # an interrupted write
    units = folder.load_units("seeds")
    assert sorted(units) == ["seed-0", "seed-1"] and units["seed-0"]["best"] == [93.1, 94.0]
    assert units["seed-0"]["nan"] != units["seed-0"]["nan"]  # NaN survives
    with pytest.raises(ValueError, match="no path separators"):
        folder.unit_path("seeds", "../escape")
    (tmp_path / "seeds" / "seed-3.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"seed-3\.json: not a readable unit"):
        folder.load_units("seeds")


def test_default_run_path():
    path = default_run_path("nasbench201-cifar10", root="somewhere")
    assert path.parent.name == "somewhere" and path.name.startswith("nasbench201-cifar10-20")


def test_claim_refuses_what_would_lose_or_mix_a_run(tmp_path):
    from vaenas.runtime import RunFolderError, claim_run_folder

    assert claim_run_folder(tmp_path / "new", resume=False).path.is_dir()
    assert claim_run_folder(tmp_path / "new", resume=False)  # still empty: a new run may use it
    finished = RunFolder(tmp_path / "finished")
    finished.write_config({"method": "oneshot"})
    with pytest.raises(RunFolderError, match="already holds a run: continue it with --resume"):
        claim_run_folder(finished.path, resume=False)
    assert claim_run_folder(finished.path, resume=True).path == finished.path
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.png").write_bytes(b"")
    with pytest.raises(RunFolderError, match="is not empty"):
        claim_run_folder(tmp_path / "data", resume=False)
    with pytest.raises(RunFolderError, match="no config.yaml there"):
        claim_run_folder(tmp_path / "data", resume=True)


def test_lock_is_held_across_processes_and_released_at_exit(tmp_path):
    import subprocess
    import sys

    from vaenas.runtime import RunFolderError

    folder = RunFolder(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from vaenas.runtime import RunFolder\n"
         f"with RunFolder({str(folder.path)!r}).lock():\n    print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"is in use by pid {holder.pid} on"):
            with folder.lock():
                pass
    finally:
        holder.kill()  # dies holding it: the kernel releases an flock with its last descriptor
        holder.wait()
    with folder.lock():
        pass


def test_temporaries_of_killed_writes_are_removed(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.save_checkpoint({"x": 1}, 3)
    folder.save_unit("seeds", "seed-0", {"seed": 0})
    left = [folder.path / ".config.yaml.1.aa.tmp", folder.checkpoint_dir / ".step-00000004.pt.1.bb.tmp",
            folder.path / "seeds" / ".seed-1.json.1.cc.tmp"]
    for path in left:
        path.write_bytes(b"")
    assert sorted(folder.remove_temporaries()) == sorted(left)
    assert not any(path.exists() for path in left)
    assert folder.checkpoints() and folder.load_units("seeds")
