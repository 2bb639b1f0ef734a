"""One rank of test_distributed.py's 2-process job (run with RANK, WORLD_SIZE, MASTER_* set).

    python dist_worker.py OUT_DIR

Uses the runtime as a job would: shard, all_gather_object, broadcast_object; creates a torch.optim
optimizer after the group exists (that is what imported torch.distributed.nn late: issue 11);
rank 0 writes its output slowly inside the block. Each rank writes rank-<r>.json with what it saw,
after the block: when it left, whether rank 0's output was on disk then, gloo threads left.
"""

import json
import sys
import time
from pathlib import Path

import torch

from vaenas.runtime import distributed_run, write_atomic
from vaenas.runtime.distributed import _gloo_threads_alive

out = Path(sys.argv[1])
with distributed_run(backend="gloo") as context:
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])  # imports torch._dynamo -> torch.distributed.nn
    mine = context.shard(list(range(7)))
    gathered = context.all_gather_object([x * x for x in mine])
    token = context.broadcast_object(f"from rank {context.rank}")
    import torch.distributed.nn.functional as functional

    defaults_hold_group = any(
        value is not None and "ProcessGroup" in type(value).__name__
        for function in (functional.broadcast, functional.all_reduce, functional.all_gather)
        for value in function.__defaults__
    )
    if context.is_main:
        time.sleep(1.5)  # a slow write: the other rank must not leave before it is on disk
        write_atomic(out / "outputs.txt", "rank 0's outputs\n")
summary = {
    "rank": context.rank, "world_size": context.world_size, "mine": mine, "gathered": gathered, "token": token,
    "left_at": time.time(), "outputs_on_disk_when_left": (out / "outputs.txt").is_file(),
    "gloo_threads_after_shutdown": _gloo_threads_alive(), "defaults_hold_group": defaults_hold_group,
}
write_atomic(out / f"rank-{context.rank}.json", json.dumps(summary))
