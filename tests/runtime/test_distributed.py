"""The rank helpers and the shared shutdown: one process, and a real 2-process gloo job."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vaenas.runtime import DistributedContext, distributed_run, init_distributed

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("dist_worker.py")


@pytest.fixture
def single_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_single_process_needs_no_process_group(single_process):
    with distributed_run() as context:
        assert (context.rank, context.world_size, context.local_rank) == (0, 1, 0)
        assert context.is_main and not context.is_distributed and context.backend is None
        assert context.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
        assert context.shard([1, 2, 3]) == [1, 2, 3]
        assert context.all_gather_object({"a": 1}) == [{"a": 1}]
        assert context.broadcast_object("x") == "x"
        context.barrier()
    assert not torch.distributed.is_initialized()
    context.shutdown()  # idempotent


def test_shard_splits_by_global_rank():
    shards = [DistributedContext(rank=r, world_size=3).shard(list(range(8))) for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4, 7], [2, 5]]


@pytest.mark.parametrize(("rank", "world_size"), [("2", "2"), ("0", "0"), ("x", "2")])
def test_bad_environment(monkeypatch, rank, world_size):
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", world_size)
    with pytest.raises(ValueError, match="RANK|WORLD_SIZE"):
        init_distributed()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_ranks_leave_only_after_rank_0_wrote(tmp_path):
    """A real gloo job of 2 processes: collectives work, the rank with nothing to write waits in
    shutdown until rank 0's outputs are on disk, and no gloo thread outlives the process group."""
    port = str(_free_port())
    ranks = []
    for rank in range(2):
        environment = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1",
                       "PYTHONPATH": str(REPO)}
        ranks.append(subprocess.Popen([sys.executable, str(WORKER), str(tmp_path)], env=environment,
                                      stderr=subprocess.PIPE, text=True))
    errors = [process.communicate(timeout=120)[1] for process in ranks]
    for process, error in zip(ranks, errors):
        assert process.returncode == 0, error
        assert "terminate called" not in error
    summaries = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in range(2)]
    assert [s["mine"] for s in summaries] == [[0, 2, 4, 6], [1, 3, 5]]
    assert all(s["gathered"] == [[0, 4, 16, 36], [1, 9, 25]] for s in summaries)
    assert all(s["token"] == "from rank 0" for s in summaries)
    assert all(s["outputs_on_disk_when_left"] for s in summaries)
    # the cause of issue 11: torch.distributed.nn, imported after init, held the group in its
    # default arguments, so destroy_process_group left the gloo threads running into exit
    assert not any(s["defaults_hold_group"] for s in summaries)
    assert [s["gloo_threads_after_shutdown"] for s in summaries] == [[], []]
