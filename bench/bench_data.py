"""Data loading benchmark: images/s of the DALI training stream against torchvision's DataLoader.

ImageNet training transform (random resized crop to 224 px, flip, normalise) through
`build_search_data` with the same number of threads (DALI) and worker processes (DataLoader),
BENCH_DATA_THREADS (default 2), batch 64, on a generated ImageNet-style folder of photographs at
ImageNet-like sizes (short side 330-420 px, long side 1-1.5x: about 500 x 375; tests/data/photos.py).
The two are paired in one run, alternated over BENCH_DATA_ROUNDS rounds (default 2), and the best
round of each is kept (the machine is shared: the best is the least disturbed). On a GPU, DALI decodes
"mixed" (nvJPEG) and its images/s is per GPU, timed to torch.cuda.synchronize(). Skips where DALI is
not installed. The ratio is printed in the table at the end of `pytest bench/` (bench/conftest.py).

    pytest bench/bench_data.py -q -s
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))
from photos import write_photo_tree  # noqa: E402 (the tests' photo writer)

from vaenas.data import DataConfig, build_search_data  # noqa: E402

THREADS = int(os.environ.get("BENCH_DATA_THREADS", "2"))
ROUNDS = int(os.environ.get("BENCH_DATA_ROUNDS", "2"))
BATCH, WARMUP, TIMED = 64, 2, 6  # batches per round: 6 x 64 = 384 images timed
CLASSES, PER_CLASS = 8, 40  # 320 photographs: an epoch of 5 batches, so timing crosses epochs


def _images_per_second(loader, device: str) -> float:
    for _ in range(WARMUP):  # workers / pipeline start, first decodes
        next(loader)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(TIMED):
        images, _ = next(loader)
    if device == "cuda":
        torch.cuda.synchronize()
    return TIMED * BATCH / (time.perf_counter() - start)


def test_imagenet_training_stream(tmp_path: Path, supernet_results: dict) -> None:
    pytest.importorskip("nvidia.dali", reason="DALI is not installed (pip install nvidia-dali-cuda130)")
    classes = tuple(f"n{i:08d}" for i in range(CLASSES))
    root = write_photo_tree(
        tmp_path / "imagenet", classes=classes, per_class={"train": PER_CLASS}, sizes=(330, 420), odd_formats=False
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    best = {"torchvision": 0.0, "dali": 0.0}
    for _ in range(ROUNDS):
        for backend in best:
            config = DataConfig(
                name="imagenet", root=str(root), batch_size=BATCH, holdout=1, calibration_images=1,
                workers=THREADS, backend=backend, load_test=False,
            )
            data = build_search_data(config)
            best[backend] = max(best[backend], _images_per_second(data.train, device))
            del data  # stop the workers / pipeline before the other backend runs
    key = (f"data: imagenet train 224px b{BATCH}, {THREADS} threads/workers", device, "img/s")
    supernet_results.setdefault(key, {}).update(best)
    print(f"\n{key}: torchvision {best['torchvision']:.0f}, dali {best['dali']:.0f}, "
          f"ratio {best['dali'] / best['torchvision']:.2f}")
