"""An ImageNet-style folder of real photographs, written by the tests (and bench/bench_data.py) into a tmp folder.

Sources: matplotlib's sample photograph grace_hopper.jpg (matplotlib is a dependency of vaenas, so it
is always there) and, when scikit-learn is installed, its two sample photos china.jpg and flower.jpg
(read from the package folder, without importing scikit-learn). scikit-image is not used: it is not
installed here. Each written image is a random crop of a source, maybe mirrored, resized to a random
size, re-encoded as a JPEG of random quality; a few are greyscale JPEGs or PNGs named .png, so the
decoders' colour conversions are compared too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image


def source_photos() -> list[Path]:
    """Paths of the sample photographs available in this environment (at least matplotlib's one)."""
    photos = [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it (and scipy)
    if spec is not None and spec.submodule_search_locations:
        folder = Path(spec.submodule_search_locations[0]) / "datasets" / "images"
        photos += sorted(folder.glob("*.jpg"))
    return photos


def write_photo_tree(
    root: Path, classes: tuple[str, ...] = ("cls_a", "cls_b", "cls_c"), per_class: dict[str, int] | None = None,
    sizes: tuple[int, int] = (48, 160), seed: int = 0, odd_formats: bool = True,
) -> Path:
    """root/<split>/<class>/*.JPEG (per_class: images per class in each split, default train 8, val 3).

    Image sides are drawn from `sizes` (short side range; the long side 1 to 1.5 times it, either way
    round). With odd_formats, each class's third training image is a greyscale JPEG and its fifth a PNG.
    """
    per_class = per_class or {"train": 8, "val": 3}
    rng = np.random.default_rng(seed)
    sources = [Image.open(p).convert("RGB") for p in source_photos()]
    for split, count in per_class.items():
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = _variant(sources[(c + i) % len(sources)], rng, sizes)
                if odd_formats and split == "train" and i == 2:
                    image = image.convert("L")
                if odd_formats and split == "train" and i == 4:
                    image.save(folder / f"img_{i:03d}.png")
                else:
                    image.save(folder / f"img_{i:03d}.JPEG", quality=int(rng.integers(70, 96)))
    return root


def _variant(photo: Image.Image, rng: np.random.Generator, sizes: tuple[int, int]) -> Image.Image:
    """A random crop (40-100 % of each side) of `photo`, maybe mirrored, resized to a random size."""
    width, height = photo.size
    w, h = int(width * rng.uniform(0.4, 1.0)), int(height * rng.uniform(0.4, 1.0))
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    image = photo.crop((left, top, left + w, top + h))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    short = int(rng.integers(*sizes))
    long = int(short * rng.uniform(1.0, 1.5))
    size = (long, short) if rng.random() < 0.7 else (short, long)  # mostly landscape, as ImageNet
    return image.resize(size, Image.Resampling.BICUBIC)


def corrupt_jpeg(path: Path) -> None:
    """Cut the JPEG at `path` to half its length: a valid header, then a premature end of the data."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
