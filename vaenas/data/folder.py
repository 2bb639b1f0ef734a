"""ImageNet-style class-folder trees: `root/<split>/<class>/<image>`, and the decoding of one image.

Classes are the sub-folder names of the split, sorted; label i is the i-th. The file list is kept
as a numpy array of relative byte paths rather than a Python list, so that forked DataLoader
workers share it instead of copying it page by page (Python objects' reference counts dirty the
pages of a list of 1.28M strings; a numpy buffer is never written).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaenas.data.config import DataError

#: file name suffixes taken as images (case-insensitive); other files in a class folder are an error
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageFiles:
    """The images of one split: `folder / files[i].decode()` has label `labels[i]`.

    files: bytes [N] (numpy 'S' array of '<class>/<name>' paths); labels: int64 [N]; classes: names.
    """

    folder: Path
    files: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def path(self, index: int) -> Path:
        return self.folder / os.fsdecode(self.files[index])


def scan_split(root: str | Path, split: str, classes: tuple[str, ...] | None = None) -> ImageFiles:
    """The image files of root/<split>, sorted by class then name.

    `classes` fixes the label of each class name (pass the training split's classes when scanning
    the validation split, which may lack some but must not add any). Hidden files are ignored.
    DataError naming the path: missing folder, no class folders, a file outside a class folder, an
    empty class folder, a file whose suffix is not an image's.
    """
    folder = Path(root) / split
    if not folder.is_dir():
        raise DataError(f"{folder}: missing folder (expected {split}/<class>/<image> under data.root={str(root)!r})")
    entries = sorted((e for e in os.scandir(folder) if not e.name.startswith(".")), key=lambda e: e.name)
    for entry in entries:
        if not entry.is_dir():
            raise DataError(f"{entry.path}: a file directly in {folder}; images belong in {split}/<class>/ folders")
    found = tuple(e.name for e in entries)
    if not found:
        raise DataError(f"{folder}: no class folders (expected {split}/<class>/<image>)")
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{folder / unknown[0]}: class {unknown[0]!r} is not among the training split's classes")
    label_of = {name: i for i, name in enumerate(classes)}
    files, labels = [], []
    for name in found:
        names = _image_names(folder / name)
        files += [os.fsencode(os.path.join(name, n)) for n in names]
        labels += [label_of[name]] * len(names)
    return ImageFiles(folder, np.array(files, dtype=np.bytes_), np.array(labels, dtype=np.int64), classes)


def _image_names(class_folder: Path) -> list[str]:
    # scandir: the file type comes with the listing, no stat per file (1.28M of them in ImageNet)
    entries = sorted((e for e in os.scandir(class_folder) if not e.name.startswith(".")), key=lambda e: e.name)
    if not entries:
        raise DataError(f"{class_folder}: empty class folder (no images)")
    for entry in entries:
        if not entry.name.lower().endswith(IMAGE_SUFFIXES) or not entry.is_file():
            raise DataError(f"{entry.path}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
    return [e.name for e in entries]


def load_image(path: Path) -> torch.Tensor:
    """The image at `path` as uint8 [3, H, W] RGB (greyscale, palette and CMYK converted).

    Decoded with PIL, as torchvision's ImageFolder does (torchvision.io's decoders are deprecated
    from torchvision 0.29); PIL reads the format from the content, so a PNG named .JPEG works.
    DataError naming the path if the file cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            array = np.array(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:  # PIL's decoders raise all three on bad data
        raise DataError(f"{path}: cannot decode image ({error})") from error
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
