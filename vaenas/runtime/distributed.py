"""Rank helpers and the one shutdown every multi-process job uses (DESIGN §6).

Under `torchrun` each process reads RANK, WORLD_SIZE and LOCAL_RANK from its environment; without
torchrun they are absent and the job runs as one process with no process group, through the same
API (barrier and shutdown do nothing, all_gather_object returns [obj]).

    with distributed_run() as context:          # init_distributed() ... shutdown()
        mine = context.shard(work_items)        # split by global rank
        results = context.all_gather_object(do(mine))
        if context.is_main:
            write_outputs(results)              # rank 0 writes BEFORE anyone leaves the group
    # leaving the block: barrier (waits for rank 0's write), destroy_process_group

Why this order: torchrun tears the whole job down as soon as one rank exits abnormally. If the
other ranks could leave while rank 0 is still writing, one rank dying at exit (issue 11) would
take rank 0's unwritten outputs with it. With the barrier after the write, every rank is still
in the group until the outputs are on disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

# The cause of issue 11 ("terminate called without an active exception", SIGABRT at exit):
# torch.distributed.nn.functional binds `group=group.WORLD` as DEFAULT ARGUMENTS of its ten
# collectives when it is imported, and it is imported lazily: the first torch.optim optimizer
# imports torch._dynamo, which imports torch.distributed.fsdp -> _shard -> torch.distributed.nn.
# Imported after init_process_group, those defaults kept the live default group, so
# destroy_process_group could not free it: its gloo worker threads ran on past the end of main.
# One that dropped a finished all_gather's tensors after Py_FinalizeEx had begun waited for the
# GIL; CPython ends such a thread with pthread_exit, whose forced unwind through a noexcept C++
# destructor (~AsyncAllgatherWork -> decref_pyobject -> gil_scoped_acquire) calls std::terminate.
# Imported here, before any group exists (vaenas.runtime is imported before init_distributed
# runs), the defaults are None (group.WORLD before init; None means the default group at call
# time), destroy_process_group frees the group and joins its threads, and no gloo thread is left
# at exit. DistributedContext.shutdown warns if one is.
if dist.is_available():
    import torch.distributed.nn  # noqa: F401

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def _gloo_threads_alive() -> list[str]:
    """Names of ProcessGroupGloo worker threads still running in this process (Linux; [] elsewhere)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return []
    names = []
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as handle:
                name = handle.read().strip()
        except OSError:  # the thread ended while we looked
            continue
        if name.startswith("pt_gloo"):
            names.append(name)
    return names


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job: its rank, the world, its device and backend.

    rank: global rank (0 .. world_size - 1); split work by it, never by local_rank (which repeats
    on every node). backend: "nccl" or "gloo", or None for a single process without a group.
    device: cuda:<local_rank> under NCCL; otherwise cuda (one process, CUDA present) or cpu.
    owns_group: False when the process group was created by someone else (shutdown leaves it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on global rank 0: the one rank that writes the run's outputs and logs."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when there is a process group (world_size > 1)."""
        return self.world_size > 1

    def _active(self) -> bool:
        return self.is_distributed and dist.is_available() and dist.is_initialized()

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of `items`: items[rank::world_size] (every item on exactly one rank)."""
        return list(items[self.rank :: self.world_size])

    def barrier(self) -> None:
        """Wait until every rank has arrived here (nothing to wait for in a single process)."""
        if not self._active():
            return
        if self.backend == "nccl":  # without device_ids NCCL guesses the device and warns
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def all_gather_object(self, obj: T) -> list[T]:
        """[object of rank 0, object of rank 1, ...]: every rank gets every rank's picklable `obj`."""
        if not self._active():
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast_object(self, obj: T | None, src: int = 0) -> T:
        """Rank `src`'s `obj` on every rank (the others pass anything, e.g. None)."""
        if not self._active():
            return obj  # type: ignore[return-value]
        box = [obj]
        dist.broadcast_object_list(box, src=src, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def shutdown(self) -> None:
        """Leave the job: barrier, then destroy the process group. Idempotent.

        Call it on every rank AFTER rank 0 has written its outputs: the barrier keeps every rank
        in the group (and alive, as far as torchrun is concerned) until then. Then return from
        main and exit normally.
        """
        if not self._active():
            return
        self.barrier()
        if not self.owns_group:
            return
        dist.destroy_process_group()
        leftover = _gloo_threads_alive()
        if leftover:
            logger.warning(
                "%d gloo worker thread(s) outlived destroy_process_group: something still holds the "
                "process group (was torch.distributed.nn imported after init_process_group?). They may "
                "abort the process at exit (issue 11).", len(leftover)
            )

    def abort(self) -> None:
        """Leave the process group without waiting for the other ranks (on an error: a barrier
        would wait for ranks that may never arrive). Idempotent."""
        if self._active() and self.owns_group:
            dist.destroy_process_group()


def _default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(backend: str | None = None, timeout: timedelta | None = None) -> DistributedContext:
    """Join the job described by RANK / WORLD_SIZE / LOCAL_RANK (torchrun sets them).

    WORLD_SIZE unset or 1: no process group, a single-process context. Otherwise
    init_process_group(backend) with backend "nccl" when CUDA is available, else "gloo", unless
    `backend` says otherwise; under NCCL the process's CUDA device is cuda:<LOCAL_RANK>. If a
    process group already exists, the context describes it and shutdown() will not destroy it.
    """
    rank, world_size, local_rank = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world_size} do not describe a rank of a job")
    if world_size == 1:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistributedContext(device=device)
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world_size} but this torch build has no torch.distributed")

    backend = backend or _default_backend()
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend(), device,
                                  owns_group=False)
    options = {"timeout": timeout} if timeout is not None else {}
    dist.init_process_group(backend, init_method="env://", **options)
    return DistributedContext(rank, world_size, local_rank, backend, device, owns_group=True)


@contextlib.contextmanager
def distributed_run(backend: str | None = None, timeout: timedelta | None = None) -> Iterator[DistributedContext]:
    """init_distributed() for the block; on leaving it normally, shutdown() (barrier, destroy).

    Write rank 0's outputs INSIDE the block. If the block raises on a rank, that rank leaves
    the group without a barrier (its peers would wait for it forever) and the error propagates;
    torchrun then stops the other ranks.
    """
    context = init_distributed(backend, timeout)
    try:
        yield context
    except BaseException:
        context.abort()
        raise
    context.shutdown()
