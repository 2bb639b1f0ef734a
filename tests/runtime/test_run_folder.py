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
