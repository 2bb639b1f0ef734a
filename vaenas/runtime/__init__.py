"""What every long job shares (DESIGN §2): run folder, metrics log, atomic files and checkpoints,
resume, rank helpers and the one shutdown of a multi-process job.

- distributed: DistributedContext, init_distributed(), distributed_run() (barrier after rank 0's
  write, then destroy_process_group)
- files: write_atomic(), atomic_file(), save_checkpoint(), load_checkpoint(), CheckpointError
- run_folder: RunFolder (config.yaml, metrics.jsonl, checkpoints/, finished units, lock), claim_run_folder(),
  default_run_path()
- rng: rng_state(), set_rng_state() (every global RNG, checkpoint-safe)
- checkpoints: checkpoint_payload(), load_run_checkpoint() (a checkpoint checked against its run's config)
- job: start_run() (run folder, metrics log, resume), setup_logging(), resolve_device(), MetricsLog
- collectives: split_evaluate(), check_identical(), checksum(), broadcast_buffers()
- optim: parameter_groups() (no weight decay on norms and biases), learning_rate() (per-step schedules)
- plots: pyplot(), save_figure()
- cli: JobCLI, run_cli() (the command line of every long job: parser, run folder, resume, exit status)
"""

from vaenas.runtime.checkpoints import checkpoint_payload, load_run_checkpoint
from vaenas.runtime.distributed import DistributedContext, distributed_run, init_distributed
from vaenas.runtime.files import CheckpointError, atomic_file, load_checkpoint, save_checkpoint, write_atomic
from vaenas.runtime.job import MetricsLog, RunStart, resolve_device, setup_logging, start_run
from vaenas.runtime.rng import rng_state, set_rng_state
from vaenas.runtime.run_folder import RunFolder, RunFolderError, claim_run_folder, default_run_path

__all__ = [
    "CheckpointError",
    "DistributedContext",
    "MetricsLog",
    "RunFolder",
    "RunFolderError",
    "RunStart",
    "atomic_file",
    "checkpoint_payload",
    "claim_run_folder",
    "default_run_path",
    "distributed_run",
    "init_distributed",
    "load_checkpoint",
    "load_run_checkpoint",
    "resolve_device",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "setup_logging",
    "start_run",
    "write_atomic",
]
