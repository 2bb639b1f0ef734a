"""Learning curves of the NAS-Bench-201 supernet under different path-sampling and training settings
(issue 18, part 1: why the full-depth supernet barely learns under uniform paths).

Each variant trains a fresh supernet with the one-shot Trainer (vaenas.search.oneshot.train: SGD with
momentum, no decay on BN / biases, label smoothing, per-step schedule) on the packaged digits and
writes the training loss of every step; at a few checkpoints it scores a fixed set of uniformly
drawn architectures on the held-out images (BN recalibrated per architecture, as the search does).

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice -n 10 python scripts/supernet_curves.py --out runs/curves \
        'uniform:cells=5' 'fixed:cells=5,sample=fixed' 'nonone:cells=5,sample=no_none'

A variant is NAME:key=value,... with keys (defaults in VARIANT_DEFAULTS):
    cells     cells per stage (N)            channels   C
    sample    uniform | no_none (ops 1-4 only) | fixed (`arch` every step)
    arch      the fixed path, 6 digits        per_cell   1: each cell draws its own path (per layer)
    lr        learning rate at batch 64      warmup     steps of linear warm-up (0: none)
    affine    0: affine-free BN in the cells' candidates (SPOS, NB201's search cells)
    clip      gradient-norm clip (0: none; NB201's random-sampling baseline clips at 5)
    schedule  linear | cosine | constant     steps      training steps
Outputs in --out: curves.csv (variant, step, loss, lr, gradient norm before clipping, the step's path
(of the first cell)), scores.csv (variant, step, arch, accuracy),
summary.csv (one row per variant) and the printed summary table.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from vaenas.data import DataConfig, build_search_data
from vaenas.search.oneshot.train import Trainer
from vaenas.spaces import get_space
from vaenas.spaces.nasbench201 import OPS
from vaenas.supernet import get_supernet
from vaenas.supernet.base import check_groups
from vaenas.supernet.evaluation import evaluate_architectures
from vaenas.supernet.nasbench201 import NASBench201Supernet, SearchCell

VARIANT_DEFAULTS = {
    "cells": 5, "channels": 16, "sample": "uniform", "arch": "333133", "per_cell": 0, "lr": 0.1,
    "warmup": 0, "affine": 1, "clip": 0.0, "schedule": "linear", "steps": 600,
}
NUMBER_KEYS = {"cells": int, "channels": int, "per_cell": int, "lr": float, "warmup": int, "affine": int,
               "clip": float, "steps": int}


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, body = text.partition(":")
    options = dict(VARIANT_DEFAULTS)
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in options:
            raise SystemExit(f"variant {name!r}: unknown key {key!r} (keys: {', '.join(options)})")
        options[key] = NUMBER_KEYS[key](value) if key in NUMBER_KEYS else value
    return name, options


class PerCellPaths(nn.Module):
    """The supernet with one path per search cell: forward(images, archs [1, cells, 6])."""

    def __init__(self, supernet: NASBench201Supernet) -> None:
        super().__init__()
        self.supernet = supernet

    def forward(self, images: Tensor, archs: Tensor) -> Tensor:
        net = self.supernet
        _, segments = check_groups(images, archs[:, 0], net.space)
        x = net.stem(images, segments)
        cell = 0
        for block in net.cells:
            if isinstance(block, SearchCell):
                x = block(x, segments, archs[:, cell])
                cell += 1
            else:
                x = block(x, segments)
        return net.classifier(net.global_pooling(net.lastact(x, segments)).flatten(1))


def draw(options: dict, generator: torch.Generator, num_cells: int) -> Tensor:
    """The step's path: [1, 6] (or [1, cells, 6] per cell)."""
    shape = (1, num_cells, 6) if options["per_cell"] else (1, 6)
    if options["sample"] == "fixed":
        return torch.tensor([int(c) for c in options["arch"]]).expand(shape).clone()
    low = 1 if options["sample"] == "no_none" else 0
    return torch.randint(low, len(OPS), shape, generator=generator)


def run_variant(name: str, options: dict, args: argparse.Namespace, probe: Tensor) -> tuple[list, list, dict]:
    space = get_space("nasbench201")
    data = build_search_data(DataConfig(name="digits", image_size=args.image_size, batch_size=args.batch,
                                        holdout=300, calibration_images=128, eval_batch_size=300, load_test=False))
    torch.manual_seed(args.seed)
    supernet = get_supernet(space, channels=options["channels"], cells_per_stage=options["cells"],
                            cell_affine=bool(options["affine"]))
    model = PerCellPaths(supernet) if options["per_cell"] else supernet
    steps = options["steps"]
    lr = options["lr"] * args.batch / 64
    trainer = Trainer(model, lr=lr, momentum=0.9, nesterov=False, weight_decay=args.weight_decay,
                      label_smoothing=0.1, steps=steps, schedule=options["schedule"],
                      device=torch.device("cpu"), bf16=False)
    grad_norms: list[float] = []
    plain_step = trainer.optimizer.step

    def measured_step():  # records the gradient norm of the step (before any clipping), then clips
        grads = [p.grad for p in trainer.parameters if p.grad is not None]
        grad_norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        if options["clip"] > 0:
            nn.utils.clip_grad_norm_(trainer.parameters, options["clip"])
        plain_step()

    trainer.optimizer.step = measured_step
    generator = torch.Generator().manual_seed(args.seed + 1)
    curve, scores = [], []
    started = time.process_time()
    checkpoints = {steps // 4, steps // 2, steps}
    for index in range(steps):
        if options["warmup"]:
            trainer.base_lr = lr * min(1.0, (index + 1) / options["warmup"])
        images, labels = next(data.train)
        archs = draw(options, generator, 3 * options["cells"])
        loss = float(trainer.step(index, images, labels, archs))
        lr_now = trainer.optimizer.param_groups[0]["lr"]
        curve.append((name, index + 1, round(loss, 5), lr_now, round(grad_norms[-1], 5), "".join(map(str, archs.flatten()[:6].tolist()))))
        if index + 1 in checkpoints:
            accuracy = evaluate_architectures(supernet, probe, data.calibration, data.holdout, group_size=8).accuracy
            scores.extend((name, index + 1, "".join(map(str, a.tolist())), float(s)) for a, s in zip(probe, accuracy))
    cpu = time.process_time() - started
    last = torch.tensor([row[2] for row in curve[-50:]])
    final = torch.tensor([row[3] for row in scores if row[1] == steps])
    summary = {"variant": name, **options, "loss_first10": round(sum(r[2] for r in curve[:10]) / 10, 3),
               "loss_last50": round(float(last.mean()), 3), "probe_mean": round(float(final[1:].mean()), 2),
               "probe_max": round(float(final[1:].max()), 2), "fixed_arch_acc": round(float(final[0]), 2),
               "grad_norm_median": round(float(torch.tensor(grad_norms).median()), 3),
               "grad_norm_max": round(max(grad_norms), 1), "cpu_s": round(cpu, 1)}
    return curve, scores, summary


def write_csv(path: Path, header: list[str], rows: list) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="NAME:key=value,... (see above)")
    parser.add_argument("--out", required=True, help="output folder (runs/...)")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--weight-decay", type=float, default=4e-5)
    parser.add_argument("--probe", type=int, default=24, help="uniform architectures scored at checkpoints")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    space = get_space("nasbench201")
    variants = [parse_variant(text) for text in args.variants]
    # probe row 0: the fixed path of the first variant; then uniform architectures
    fixed = torch.tensor([[int(c) for c in variants[0][1]["arch"]]])
    probe = torch.cat([fixed, space.sample(args.probe, torch.Generator().manual_seed(123))])
    curves, scores, summaries = [], [], []
    for name, options in variants:
        curve, score, summary = run_variant(name, options, args, probe)
        curves += curve
        scores += score
        summaries.append(summary)
        print(summary, flush=True)
        write_csv(out / "curves.csv", ["variant", "step", "loss", "lr", "grad_norm", "arch"], curves)
        write_csv(out / "scores.csv", ["variant", "step", "arch", "accuracy"], scores)
        write_csv(out / "summary.csv", list(summaries[0]), [list(s.values()) for s in summaries])


if __name__ == "__main__":
    main()
