"""One rank of the 2-process one-shot test (test_oneshot_distributed.py), run under torchrun:

    python -m torch.distributed.run --nproc-per-node 2 tests/search/oneshot/oneshot_worker.py OUT_DIR

Trains a tiny supernet with refits (evaluations split across ranks, the same VAE fitted on every
rank) and saves what this rank holds to OUT_DIR/rank-<r>.pt: supernet and VAE weights, the
architecture sequence, the refit records, the time of the training steps, and the scores of 5
architectures computed split across the ranks and on this rank alone.
"""

from __future__ import annotations

import sys
import time

import torch

from vaenas.data import build_search_data
from vaenas.runtime import distributed_run, save_checkpoint
from vaenas.config import load_config
from vaenas.search.oneshot import OneShotConfig, OneShotSearch

CONFIG = [
    "supernet.nasbench201.channels=4", "supernet.nasbench201.cells_per_stage=1", "data.image_size=8",
    "data.batch_size=16", "data.holdout=40",
    "data.calibration_images=16", "data.eval_batch_size=40", "train.steps=8", "train.group_size=2",
    "vaenas.refit_every=4", "vaenas.n_samples=6", "vaenas.compare_samples=2", "vaenas.epsilon_inc=0.2",
    "vae.n_iters=5", "vae.batch_size=8", "eval.group_size=2",
]


def main(out: str) -> None:
    torch.set_num_threads(1)
    config = load_config(None, CONFIG, cls=OneShotConfig)
    with distributed_run("gloo") as context:
        data = build_search_data(config.data, context.rank, context.world_size)
        search = OneShotSearch(config, data, torch.device("cpu"), context.world_size)
        sequence: list = []
        search.on_step = lambda step, archs: sequence.append(archs.clone())
        started = time.perf_counter()
        search.train()
        seconds = time.perf_counter() - started
        probe = search.space.sample(5, torch.Generator().manual_seed(7))
        split = search.score(probe)  # rows split across the ranks, gathered
        alone = search._score_here(probe)  # every row on this rank
        save_checkpoint(f"{out}/rank-{context.rank}.pt", {
            "supernet": search.supernet.state_dict(), "vae": search.vae.model.state_dict(),
            "archs": torch.stack(sequence), "refits": search.refits, "seconds": seconds,
            "split": split, "alone": alone,
        })


if __name__ == "__main__":
    main(sys.argv[1])
