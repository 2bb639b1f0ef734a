"""Atomic writes, checkpoints that fail loudly, and RNG states that survive a checkpoint."""

from __future__ import annotations

import os
import random

import numpy
import pytest
import torch

from vaenas.runtime import CheckpointError, atomic_file, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from vaenas.runtime.files import write_atomic


def _leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_write_atomic_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    write_atomic(path, "first ✓")
    assert path.read_text(encoding="utf-8") == "first ✓"
    write_atomic(path, b"\x00second")
    assert path.read_bytes() == b"\x00second"
    assert _leftovers(path.parent) == []
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0o600


def test_atomic_file_keeps_the_old_content_when_the_write_fails(tmp_path):
    path = tmp_path / "result.json"
    write_atomic(path, "old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(path) as handle:
            handle.write(b"half of the new con")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_checkpoint_round_trip(tmp_path):
    state = {
        "model": {"weight": torch.randn(3, 4), "bias": torch.arange(4, dtype=torch.int64)},
        "step": 17, "epsilon": 0.25, "name": "nb201", "history": [(1, 2.5), (2, 3.5)], "optional": None,
    }
    path = tmp_path / "checkpoints" / "step-17.pt"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert torch.equal(loaded["model"]["bias"], state["model"]["bias"])
    assert {k: loaded[k] for k in ("step", "epsilon", "name", "history", "optional")} == {
        k: state[k] for k in ("step", "epsilon", "name", "history", "optional")}
    assert _leftovers(path.parent) == []


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"weight": torch.randn(64, 64), "step": 3})
    return path


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint .*nowhere\.pt: no such file"):
        load_checkpoint(tmp_path / "nowhere.pt")


def test_empty_checkpoint(saved):
    saved.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"ckpt\.pt: empty file"):
        load_checkpoint(saved)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_checkpoint(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=r"ckpt\.pt \(\d+ bytes\): truncated or corrupt") as error:
        load_checkpoint(saved)
    assert str(saved) in str(error.value)


def test_corrupt_checkpoint(saved):
    generator = torch.Generator().manual_seed(0)
    saved.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=generator, dtype=torch.uint8).tolist()))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(saved)


class _Custom:
    pass


def test_checkpoint_with_refused_types(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"object": _Custom()}, path)  # what weights_only=True exists to refuse
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)


def test_rng_state_survives_a_checkpoint(tmp_path):
    torch.manual_seed(5)
    random.seed(5)
    numpy.random.seed(5)
    save_checkpoint(tmp_path / "rng.pt", rng_state())
    first = (torch.rand(3), random.random(), numpy.random.rand())
    torch.manual_seed(99)
    random.seed(99)
    numpy.random.seed(99)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt"))
    again = (torch.rand(3), random.random(), numpy.random.rand())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


def test_corrupt_archive_inside(saved):
    """A complete zip whose pickle is garbled (e.g. a bad disk block) is corrupt, not refused."""
    data = bytearray(saved.read_bytes())
    start = data.index(b"\x80\x02", data.index(b"data.pkl"))  # the pickle's PROTO opcode, stored uncompressed
    data[start : start + 16] = bytes(16)
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"ckpt\.pt \(\d+ bytes\): truncated or corrupt \(.*Unsupported"):
        load_checkpoint(saved)
