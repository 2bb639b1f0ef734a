"""Retraining throughput: DARTS V2 trained by vaenas.train's loop against a DARTS-style reference loop.

The network is DARTS V2 (quark0/darts genotypes.py) as the cifar10 recipe trains it: NASNetCIFAR with the
auxiliary head (weight 0.4) and drop path, label smoothing 0.1, gradient clipping at 5, SGD with momentum
and weight decay, the DARTS batch of 96 at 32 px, measured in the middle of the recipe's 600 epochs (epoch
300: learning rate 0.0125 of the cosine, drop path 0.1). Both loops start from the same seeded weights and
read the same batches, preloaded in memory (the digits set served at 32 px), so that the step is measured,
not the loader:
- reference, as DARTS's cnn/train.py: fp32, NCHW, eager, an .item() of the loss and of the top-1 every
  step (its AvgrageMeter), torch SGD over all parameters;
- vaenas: vaenas.train.Retrainer (bf16 autocast, channels-last and torch.compile on a GPU, the fused SGD,
  sums kept on the device and read every 10 steps).
Reported: training images/s of each (after warm-up steps, which include the compilation), the ratio, and
how far apart the two loss curves are over the measured steps (mean |difference| of 10-step means against
the reference's own step-to-step spread). Anchor: DARTS trains this network at about 333 images/s on a
V100. GPU: C = 36, 20 cells, batch 96, 10 + 60 steps. CPU (one thread; ratio only, fp32 both, no compile):
C = 8, 5 cells, batch 16, 2 + 8 steps, best of 2 interleaved rounds, process CPU time beside wall time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from vaenas.config import load_config
from vaenas.data import DataConfig, build_training_data
from vaenas.runtime import DistributedContext
from vaenas.spaces.nasnet import Genotype, NASNetSpace
from vaenas.train import RECIPES, RetrainConfig, Retrainer

DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)  # fmt: skip


@dataclass(frozen=True)
class Size:
    channels: int
    layers: int
    batch: int
    warmup: int
    steps: int
    rounds: int


SIZES = {"cpu": Size(8, 5, 16, 2, 8, 2), "cuda": Size(36, 20, 96, 10, 60, 1)}
CASES = [pytest.param(device, id=device, marks=[pytest.mark.cuda] if device == "cuda" else []) for device in ("cpu", "cuda")]
LOG_EVERY = 10
#: the measured steps lie in epoch MIDDLE of EPOCHS (an epoch of STEPS_PER_EPOCH steps)
EPOCHS, MIDDLE, STEPS_PER_EPOCH = 600, 300, 1000
LR, DROP_PATH = 0.0125, 0.1  # the cosine's learning rate from 0.025, and 0.2 x 300 / 600, at epoch 300


class MemoryBatches:
    """The training stream of a TrainLoader's first batches, held in memory and served in a cycle."""

    def __init__(self, batches: list) -> None:
        self.batches, self.position = batches, 0
        self.batches_per_epoch = len(batches)

    def __next__(self):
        batch = self.batches[self.position % len(self.batches)]
        self.position += 1
        return batch


def _batches(size: Size, count: int) -> tuple[list, object]:
    data = build_training_data(DataConfig(name="digits", image_size=32, holdout=0.2, batch_size=size.batch))
    pin = torch.cuda.is_available()
    batches = [next(data.train) for _ in range(min(count, data.train.batches_per_epoch))]
    return [(x.pin_memory() if pin else x, y.pin_memory() if pin else y) for x, y in batches], data


def _network(size: Size) -> torch.nn.Module:
    space = NASNetSpace(C=size.channels, layers=size.layers)
    torch.manual_seed(0)
    return space.build_child(space.from_genotype(DARTS_V2), auxiliary=True, drop_path=True)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reference_loop(size: Size, batches: list, device: torch.device) -> tuple[float, float, list[float]]:
    """DARTS's train(): (wall s, CPU s of the measured steps, per-step losses)."""
    model = _network(size).to(device).train()
    model.drop_path_prob.fill_(DROP_PATH)  # DARTS: model.drop_path_prob = args.drop_path_prob * epoch / args.epochs
    optimizer = torch.optim.SGD(model.parameters(), LR, momentum=0.9, weight_decay=3e-4)
    losses = []
    for step in range(size.warmup + size.steps):
        if step == size.warmup:
            _synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
        images, labels = batches[step % len(batches)]
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        logits, logits_aux = model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=0.1)
        loss = loss + 0.4 * F.cross_entropy(logits_aux, labels, label_smoothing=0.1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        top1 = (logits.argmax(1) == labels).float().mean() * 100
        losses.append(loss.item())  # DARTS: objs.update(loss.data[0], n), top1.update(prec1.data[0], n)
        top1.item()
    _synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu, losses[size.warmup:]


def vaenas_loop(size: Size, batches: list, data: object, device: torch.device) -> tuple[float, float, list[float]]:
    """Retrainer.train over the same steps: (wall s, CPU s of the measured steps, 10-step mean losses)."""
    gpu = device.type == "cuda"
    config = load_config(RECIPES / "cifar10.yaml", [
        "arch=DARTS_V2", "datasets=[digits]", "data.name=digits", "data.cutout=0", "data.image_size=32", "data.holdout=0.2",
        f"train.batch_size={size.batch}", f"train.compile={str(gpu).lower()}", f"run.log_every={LOG_EVERY}",
        f"train.device={device.type}", "progress=false",
    ], cls=RetrainConfig)
    data.train = MemoryBatches(batches)
    records: list[dict] = []
    trainer = Retrainer(config, _network(size), data, device, DistributedContext(), records.append)
    # into the middle of the recipe's run (no epoch ends, hence no evaluation, within the measured steps)
    trainer.steps_per_epoch, trainer.total_steps = STEPS_PER_EPOCH, EPOCHS * STEPS_PER_EPOCH
    start = trainer.step = MIDDLE * STEPS_PER_EPOCH
    trainer.train(until=start + size.warmup)
    _synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train(until=start + size.warmup + size.steps)
    _synchronize(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, [r["loss"] for r in records if r["step"] > start + size.warmup]


@pytest.mark.parametrize("device_type", CASES)
def test_retraining_throughput(benchmark, supernet_results: dict, device_type: str) -> None:
    if device_type == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    device, size = torch.device(device_type), SIZES[device_type]
    threads = torch.get_num_threads()
    if device_type == "cpu":
        torch.set_num_threads(1)
    batches, data = _batches(size, size.warmup + size.steps)
    best: dict[str, tuple] = {}

    def measure() -> None:
        for variant in ("reference", "vaenas"):  # interleaved, best of the rounds
            result = reference_loop(size, batches, device) if variant == "reference" else \
                vaenas_loop(size, batches, data, device)
            if variant not in best or result[0] < best[variant][0]:
                best[variant] = result

    try:
        benchmark.pedantic(measure, rounds=size.rounds, warmup_rounds=0)
    finally:
        torch.set_num_threads(threads)
    images = size.steps * size.batch
    throughput = {variant: images / result[0] for variant, result in best.items()}
    what = f"DARTS V2 retraining C={size.channels}, {size.layers} cells, batch {size.batch}"
    supernet_results.setdefault((what, device_type, "img/s"), {}).update(throughput)
    reference_losses = best["reference"][2]
    windows = [sum(reference_losses[i:i + LOG_EVERY]) / LOG_EVERY
               for i in range(0, len(reference_losses) - LOG_EVERY + 1, LOG_EVERY)]
    ours = best["vaenas"][2][: len(windows)]
    spread = sum(abs(a - b) for a, b in zip(reference_losses, reference_losses[1:])) / max(len(reference_losses) - 1, 1)
    benchmark.extra_info.update(
        images_per_second=throughput, ratio=throughput["vaenas"] / throughput["reference"],
        cpu_seconds={variant: result[1] for variant, result in best.items()},
        wall_seconds={variant: result[0] for variant, result in best.items()},
        loss_windows_reference=windows, loss_windows_vaenas=ours,
        loss_window_mean_abs_difference=sum(abs(a - b) for a, b in zip(windows, ours)) / max(len(ours), 1),
        reference_step_to_step_spread=spread,
    )
