"""One rank of test_train_distributed.py's job (under torchrun, or alone for the 1-process run):

    python retrain_worker.py ARCH_JSON CIFAR_ROOT OUT_DIR

Trains a small NAS-Bench-201 child for one epoch (2 steps) with the nasbench201 recipe's loop at a global
batch of 100 and saves OUT_DIR/rank-<r>-of-<W>.pt: the initial and final weights (batch-norm statistics: rank 0's,
as the checkpoints hold them) and the sharded evaluation of the final weights."""

from __future__ import annotations

import sys

import torch

from vaenas.config import load_config
from vaenas.runtime import distributed_run, save_checkpoint
from vaenas.train import RECIPES, RetrainConfig, read_architecture
from vaenas.train.cli import build_trainer

OVERRIDES = ["network.nasbench201={channels: 4, cells_per_stage: 1}", "train.epochs=1", "train.batch_size=100",
             "train.lr=0.05", "data.workers=0", "data.eval_batch_size=16", "train.device=cpu", "progress=false"]


def main(arch: str, root: str, out: str) -> None:
    torch.set_num_threads(1)
    config = load_config(RECIPES / "nasbench201.yaml", [f"arch={arch}", f"data.root={root}", *OVERRIDES],
                         cls=RetrainConfig)
    with distributed_run("gloo") as ctx:
        trainer = build_trainer(config, read_architecture(arch), ctx)
        initial = {key: value.clone() for key, value in trainer.model.state_dict().items()}
        trainer.train(until=trainer.total_steps)
        evaluated = trainer.evaluate_all()
        final = trainer.state_dict()["model"]  # collective: every rank takes rank 0's batch-norm statistics
        save_checkpoint(f"{out}/rank-{ctx.rank}-of-{ctx.world_size}.pt",
                        {"initial": initial, "final": final, "evaluated": evaluated})


if __name__ == "__main__":
    main(*sys.argv[1:4])
