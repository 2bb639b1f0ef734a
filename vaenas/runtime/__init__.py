"""What every long job shares (DESIGN §2): run folder, metrics log, atomic files and checkpoints,
resume, rank helpers and the one shutdown of a multi-process job.

- distributed: DistributedContext, init_distributed(), distributed_run() (barrier after rank 0's
  write, then destroy_process_group)
- files: write_atomic(), atomic_file(), save_checkpoint(), load_checkpoint(), CheckpointError
- run_folder: RunFolder (config.yaml, metrics.jsonl, checkpoints/, finished units), default_run_path()
- rng: rng_state(), set_rng_state() (every global RNG, checkpoint-safe)
"""

from vaenas.runtime.distributed import DistributedContext, distributed_run, init_distributed
from vaenas.runtime.files import CheckpointError, atomic_file, load_checkpoint, save_checkpoint, write_atomic
from vaenas.runtime.rng import rng_state, set_rng_state
from vaenas.runtime.run_folder import RunFolder, default_run_path

__all__ = [
    "CheckpointError",
    "DistributedContext",
    "RunFolder",
    "atomic_file",
    "default_run_path",
    "distributed_run",
    "init_distributed",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "write_atomic",
]
