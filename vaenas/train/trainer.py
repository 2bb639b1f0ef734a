"""The training loop of a retraining: one child network trained from scratch on the whole training split.

Per step (`Retrainer.train`): the learning rate of the step (vaenas.runtime.optim.learning_rate), the
drop-path probability of the epoch (train.drop_path * epoch / epochs, DARTS's linear increase), a
forward under bf16 autocast with channels-last images on a GPU, label-smoothed cross-entropy plus
train.auxiliary_weight times the auxiliary head's, backward, gradient clipping, the optimizer step and
the EMA update. Losses and hits are summed on the device; nothing waits for the GPU except the metrics
lines every run.log_every steps and the epoch ends (DARTS's loop calls .item() every step).

Several ranks: DistributedDataParallel over the global ranks (a child uses every parameter, so DDP's
fixed buckets fit), each rank on its shard of the global batch; batch-norm statistics are rank 0's
(DDP broadcasts them at each forward, and `evaluate` first). Evaluation splits the held-out and test
images across the ranks and sums their counts. Every rank keeps its own random stream (dropout, drop
path: run.seed + rank); a checkpoint holds every rank's, the loader's position and the partial sums,
so a resumed run continues bit for bit.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from vaenas.data import EvalLoader, TrainingData
from vaenas.runtime import DistributedContext, MetricsLog, rng_state, set_rng_state
from vaenas.runtime.collectives import broadcast_buffers
from vaenas.runtime.optim import learning_rate
from vaenas.train.config import RetrainConfig
from vaenas.train.network import set_drop_path
from vaenas.train.optim import make_optimizer

logger = logging.getLogger(__name__)

#: the training sums: [loss x images, top-1 hits, images]
SUMS = 3


class Retrainer:
    """Trains `model` (on `device`) with config.train on `data`; rank 0 logs into `log` (vaenas.runtime.MetricsLog).

    step: training steps done; total_steps = train.epochs x data.train.batches_per_epoch. An epoch ends
    every batches_per_epoch steps with a metrics record (event "epoch": training loss and top-1,
    evaluations every train.eval_every epochs and at the last).
    """

    def __init__(self, config: RetrainConfig, model: nn.Module, data: TrainingData, device: torch.device,
                 ctx: DistributedContext, log: MetricsLog | None = None) -> None:
        self.config, self.train_config, self.data, self.device, self.ctx = config, config.train, data, device, ctx
        self.log = log or MetricsLog(None)
        gpu = device.type == "cuda"
        self.autocast_dtype = torch.bfloat16 if gpu and self.train_config.bf16 else None
        self.channels_last = gpu and self.train_config.channels_last
        self.model = model.to(device, memory_format=torch.channels_last) if self.channels_last else model.to(device)
        self.has_drop_path = isinstance(getattr(self.model, "drop_path_prob", None), Tensor)
        forward: nn.Module = self.model
        if ctx.is_distributed:
            forward = DistributedDataParallel(self.model, device_ids=[device.index] if gpu else None)
        self.forward = torch.compile(forward) if self.train_config.compile else forward
        self.optimizer = make_optimizer(self.model, self.train_config, fused=gpu)
        self.ema = None
        if self.train_config.ema_decay:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.train_config.ema_decay),
                                     use_buffers=True)
        self.steps_per_epoch = data.train.batches_per_epoch
        self.total_steps = self.train_config.epochs * self.steps_per_epoch
        self.step = 0
        self.epoch_sums = torch.zeros(SUMS, dtype=torch.float64, device=device)
        self.window_sums = torch.zeros(SUMS, dtype=torch.float64, device=device)
        self._counts: dict[int, Tensor] = {}
        # the images/s of the metrics: training steps of this process since the last epoch end (not saved)
        self.train_seconds, self.timed_images = 0.0, 0
        # the weights above come from the caller's seed; dropout and drop path from here on draw from a
        # stream of each rank's own (the same masks on every rank would tie the ranks' samples together)
        torch.manual_seed(config.run.seed + ctx.rank)

    # --- training -----------------------------------------------------------------------------
    def epoch(self) -> int:
        """0-based epoch of the next step."""
        return self.step // self.steps_per_epoch

    def train(self, until: int, progress: Any = None) -> None:
        """Train steps self.step .. until - 1 (an epoch end logs, and evaluates when it is due)."""
        self.model.train()
        while self.step < min(until, self.total_steps):
            started = time.perf_counter()
            self._step()
            self.train_seconds += time.perf_counter() - started
            self.timed_images += self.config.train.batch_size
            if progress is not None:
                progress(self.step)
            if self.step % self.config.run.log_every == 0:
                self._log_window()
            if self.step % self.steps_per_epoch == 0:
                self._end_epoch()
                self.model.train()

    def _step(self) -> None:
        images, labels = next(self.data.train)
        lr = learning_rate(self.train_config.lr, self.step, self.total_steps, self.train_config.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.has_drop_path:
            set_drop_path(self.model, self.train_config.drop_path * self.epoch() / self.train_config.epochs)
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            output = self.forward(images)
        logits, auxiliary = output if isinstance(output, tuple) else (output, None)
        smoothing = self.train_config.label_smoothing
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
        total = loss
        if auxiliary is not None:
            total = loss + self.train_config.auxiliary_weight * F.cross_entropy(
                auxiliary.float(), labels, label_smoothing=smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.train_config.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.train_config.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        with torch.no_grad():
            hits = (logits.argmax(1) == labels).sum()
            sums = torch.stack([loss.detach().double() * len(labels), hits.double(), self._count(len(labels))])
            self.epoch_sums += sums
            self.window_sums += sums
        self.step += 1

    def _count(self, images: int) -> Tensor:
        """`images` as a float64 tensor on the device, made once per value: a new one every step would be a
        host-to-device copy, which waits for the GPU."""
        if images not in self._counts:
            self._counts[images] = torch.tensor(float(images), dtype=torch.float64, device=self.device)
        return self._counts[images]

    def _global(self, sums: Tensor) -> list[float]:
        """The sums of every rank (one all-reduce), as floats."""
        if self.ctx.is_distributed:
            sums = sums.clone()
            dist.all_reduce(sums)
        return sums.tolist()

    def _log_window(self) -> None:
        loss, hits, seen = self._global(self.window_sums)
        self.window_sums.zero_()
        self.log({"step": self.step, "event": "train", "epoch": self.epoch(), "lr": self.current_lr(),
                  "loss": loss / seen, "top1": 100 * hits / seen})

    def _end_epoch(self) -> None:
        loss, hits, seen = self._global(self.epoch_sums)
        self.epoch_sums.zero_()
        done = self.step // self.steps_per_epoch
        record: dict[str, Any] = {
            "step": self.step, "event": "epoch", "epoch": done, "lr": self.current_lr(),
            "train_loss": loss / seen, "train_top1": 100 * hits / seen,
            "images_per_second": self.timed_images / max(self.train_seconds, 1e-9),
        }
        if self.has_drop_path:
            record["drop_path"] = float(self.model.drop_path_prob)
        self.train_seconds, self.timed_images = 0.0, 0
        if done % self.train_config.eval_every == 0 or done == self.train_config.epochs:
            record.update(self.evaluate_all())
        self.log(record)
        if self.ctx.is_main:
            shown = {k: round(v, 3) for k, v in record.items() if k.endswith(("loss", "top1"))}
            logger.info("epoch %d/%d: %s", done, self.train_config.epochs, shown)

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # --- evaluation ---------------------------------------------------------------------------
    def evaluation_sets(self) -> dict[str, EvalLoader]:
        """{"test": the test split (digits: the held-out images), "valid": the held-out images when there is a test split}."""
        sets = {}
        if self.data.test is not None:
            sets["test"] = self.data.test
            if self.data.holdout is not None:
                sets["valid"] = self.data.holdout
        elif self.data.holdout is not None:
            sets["test"] = self.data.holdout
        return sets

    def evaluate_all(self) -> dict[str, float]:
        """{"<set>_top1", "<set>_top5", "<set>_loss"} of every evaluation set, then "ema_<set>_..." with EMA."""
        results = {}
        models = {"": self.model} if self.ema is None else {"": self.model, "ema_": self.ema.module}
        for prefix, model in models.items():
            broadcast_buffers(model)  # every rank evaluates with rank 0's batch-norm statistics
            for name, loader in self.evaluation_sets().items():
                for key, value in self.evaluate(model, loader).items():
                    results[f"{prefix}{name}_{key}"] = value
        return results

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: EvalLoader) -> dict[str, float]:
        """{"top1", "top5" (%), "loss" (plain cross-entropy), "images"} of `model` on `loader` (this rank's
        share), summed over the ranks."""
        model.eval()
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        top = min(5, self.data.num_classes)
        for images, labels in loader:
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                logits = model(images).float()
            best = logits.topk(top, dim=1).indices
            hits = best == labels[:, None]
            sums += torch.stack([hits[:, 0].sum().double(), hits.any(1).sum().double(),
                                 F.cross_entropy(logits, labels, reduction="sum").double(), self._count(len(labels))])
        top1, top5, loss, seen = self._global(sums)
        return {"top1": 100 * top1 / seen, "top5": 100 * top5 / seen, "loss": loss / seen, "images": int(seen)}

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a bit-for-bit resume needs, as tensors and plain data (torch.load(weights_only=True)),
        a snapshot: copied, since training updates the live weights and buffers in place. Collective: every
        rank calls it (each contributes its random streams); the batch-norm statistics are rank 0's."""
        broadcast_buffers(self.model)
        if self.ema is not None:
            broadcast_buffers(self.ema.module)
        streams = self.ctx.all_gather_object(rng_state())
        return copy.deepcopy({
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "loader": self.data.train.state_dict(),
            "step": self.step,
            "epoch_sums": self.epoch_sums.cpu(),
            "window_sums": self.window_sums.cpu(),
            "rng": streams,
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from state_dict()'s snapshot (saved by as many ranks: else the random streams of the
        ranks beyond the saved ones start afresh, and the run continues, though not bit for bit)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.data.train.load_state_dict(state["loader"])
        self.step = int(state["step"])
        self.epoch_sums.copy_(state["epoch_sums"])
        self.window_sums.copy_(state["window_sums"])
        streams = state["rng"]
        if len(streams) != self.ctx.world_size:
            logger.warning("the checkpoint was saved by %d process(es), this run has %d: training continues with "
                           "the same global batches, but not bit for bit", len(streams), self.ctx.world_size)
        if self.ctx.rank < len(streams):
            set_rng_state(streams[self.ctx.rank])
