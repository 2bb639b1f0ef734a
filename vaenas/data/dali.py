"""The NVIDIA DALI backend: the torchvision loaders' interface and batches, decoded and augmented by DALI.

The only module that imports DALI (lazily, when a DALI loader first runs or `import_dali` is called), so
vaenas works without it. `DaliTrainLoader` / `DaliEvalLoader` are TrainLoader / EvalLoader with the
DataLoader swapped for `_DaliBatches`: sharding, epoch order, resume state and the evaluation cache are
the torchvision path's own code, so both backends give the same images in the same order.

Graphs (per image; parameters fed from Python by vaenas.data.dali_feed, see there why):
    folder, training:   ROI decode of the crop box (image_slice) -> resize S x S -> [colour jitter] -> mirror,
                        normalise
    folder, evaluation: decode -> resize (h', w') -> slice S x S at the centre -> normalise
    arrays (CIFAR):     pixels -> slice 32 x 32 at (left - 4, top - 4) padding with zeros -> [resize S] -> mirror,
                        normalise -> [Cutout: erase a square to 0]; evaluation: pixels -> [resize S] -> normalise
Output: float32 [B, 3, S, S]; on a GPU (torch.cuda available) the decode is "mixed" (nvJPEG) and the
images are CUDA tensors in channels-last memory (a [B, S, S, 3] buffer viewed as NCHW), labels on the
same GPU; without one the pipeline runs CPU-only (device_id=None) and gives contiguous CPU tensors.
Threads: DataConfig.workers (at least 1) per pipeline.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from vaenas.data.config import DataError
from vaenas.data.dali_feed import Feed, Feeder, feeder_for
from vaenas.data.datasets import Key
from vaenas.data.loaders import Batch, EvalLoader, TrainLoader

INSTALL = "pip install nvidia-dali-cuda130"
log = logging.getLogger("vaenas.data")


def import_dali() -> Any:
    """The `nvidia.dali` module; DataError saying how to install it if it is missing or broken."""
    try:
        import nvidia.dali as dali
        import nvidia.dali.fn  # noqa: F401 (the operators, used through dali.fn)
        import nvidia.dali.types  # noqa: F401
    except ImportError as error:
        raise DataError(
            f"data.backend: NVIDIA DALI is not installed ({error}); install it with `{INSTALL}` "
            f"or choose backend torchvision"
        ) from error
    return dali


def resolve_backend(backend: str, dataset: str) -> str:
    """The backend that serves `dataset`: "dali" or "torchvision" ("auto": DALI when importable, with a log line)."""
    if backend == "torchvision":
        return backend
    if dataset == "digits":  # 8x8 greyscale in memory: nothing for DALI to speed up
        log.info("data.backend=%s: the digits dataset is served by torchvision", backend)
        return "torchvision"
    if backend == "dali":
        import_dali()
        return backend
    try:
        import_dali()
    except DataError as error:
        log.info("data.backend=auto: using torchvision (%s)", error)
        return "torchvision"
    log.info("data.backend=auto: using DALI")
    return "dali"


def _device_id() -> int | None:
    return torch.cuda.current_device() if torch.cuda.is_available() else None


def _graph(feeder: Feeder, batch_size: int, threads: int, device_id: int | None) -> Any:
    """A built DALI pipeline whose external inputs are `feeder.inputs` and whose output is the images."""
    dali = import_dali()
    gpu = device_id is not None
    transform = feeder.transform
    pipe = dali.Pipeline(
        batch_size=batch_size, num_threads=threads, device_id=device_id, prefetch_queue_depth=1,
        exec_async=True, exec_pipelined=True,
    )
    with pipe:
        given = {
            name: dali.fn.external_source(name=name, layout="HWC" if name == "pixels" else None)
            for name in feeder.inputs
        }
        if "encoded" in given:
            images = (_crop_decode if feeder.train else _centre_crop)(dali, given, transform.size, gpu)
        else:
            images = _pad_crop(dali, given, feeder.hwc.shape[1:3], transform.size, gpu)
        if "brightness" in given:  # colour jitter: on the uint8 crop, before normalisation (as ImageNetTrain)
            images = _color_jitter(dali, images, given)
        mean, std = (np.array(v, np.float32) * 255 for v in (transform.mean, transform.std))
        images = dali.fn.crop_mirror_normalize(
            images, mirror=given.get("mirror", 0), mean=mean.tolist(), std=std.tolist(), dtype=dali.types.FLOAT,
            output_layout="HWC" if gpu else "CHW",
        )
        if "erase_anchor" in given:  # Cutout, after normalisation: the square is 0 in normalised units
            images = dali.fn.erase(
                images, anchor=given["erase_anchor"], shape=given["erase_shape"], axis_names="HW", fill_value=0.0,
            )
        pipe.set_outputs(images)
    pipe.build()
    return pipe


def _crop_decode(dali: Any, given: dict, size: int, gpu: bool) -> Any:
    """Folder training: decode only the crop box (ROI decode), resize it to size x size: HWC uint8."""
    images = dali.fn.decoders.image_slice(
        given["encoded"], given["anchor"], given["shape"], device="mixed" if gpu else "cpu",
        output_type=dali.types.RGB, axis_names="WH", normalized_anchor=False, normalized_shape=False,
        adjust_orientation=False,  # PIL (the torchvision path) ignores EXIF orientation too
    )
    return dali.fn.resize(images, size=[size, size], antialias=True)


def _color_jitter(dali: Any, images: Any, given: dict) -> Any:
    """The fed brightness, contrast, saturation factors on the uint8 crop (ImageNetTrain's jitter).

    Not equal to torchvision's adjust_*: DALI's contrast pivots on mid-grey (128) where torchvision's
    pivots on the image's mean grey level, so a contrast factor c moves pixels by |c - 1| * |mean - 128|
    more or less (measured: within 0.5 level of (x - 128) * c + 128); brightness and saturation alone agree
    within 1 level (rounding). Over whole batches of the test photos see tests/data/test_dali.py.
    """
    return dali.fn.color_twist(
        images, brightness=given["brightness"], contrast=given["contrast"], saturation=given["saturation"]
    )


def _centre_crop(dali: Any, given: dict, size: int, gpu: bool) -> Any:
    """Folder evaluation: decode, resize to the fed (h', w'), slice size x size at the fed anchor: HWC uint8."""
    images = dali.fn.decoders.image(
        given["encoded"], device="mixed" if gpu else "cpu", output_type=dali.types.RGB, adjust_orientation=False
    )
    images = dali.fn.resize(images, size=given["size"], antialias=True)
    return dali.fn.slice(
        images, given["anchor"], np.array([size, size], np.float32), axis_names="WH",
        normalized_anchor=False, normalized_shape=False,
    )


def _pad_crop(dali: Any, given: dict, stored: tuple[int, int], size: int, gpu: bool) -> Any:
    """Arrays (CIFAR): [crop the stored (h, w) at the fed anchor, zeros outside], [resize to size]: HWC uint8."""
    images = given["pixels"].gpu() if gpu else given["pixels"]
    if "anchor" in given:
        height, width = stored
        images = dali.fn.slice(
            images, given["anchor"], np.array([width, height], np.float32), axis_names="WH",
            normalized_anchor=False, normalized_shape=False, out_of_bounds_policy="pad", fill_values=0,
        )
    if tuple(stored) != (size, size):
        images = dali.fn.resize(images, size=[size, size], antialias=True)
    return images


# Batches fed and scheduled ahead of the one being consumed. The pipeline's own prefetch queue stays at
# 1: with deeper queues DALI 2.4 peeks for input batches beyond those scheduled and fails when feeding by
# hand ("Attempted to peek the data batch that doesn't exist"); two scheduled runs keep its threads busy.
_DEPTH = 2


class _DaliBatches:
    """Runs a DALI graph over lists of keys: `iter()` yields (images, labels, skipped paths) per list of `batches`.

    `batches` is re-iterated at each `iter()` (the training sampler gives the current epoch from its
    current start). Up to _DEPTH batches are fed and scheduled ahead; an abandoned iteration (a resume
    rewinding the stream) drains them so the next one starts clean. A batch that DALI fails to decode is
    checked file by file with PIL: DataError naming the file, or with skip_corrupt the file is counted
    in `feeder.skipped` and the batches are fed again without it.
    """

    def __init__(self, feeder: Feeder, batches: Any, batch_size: int, threads: int) -> None:
        self.feeder, self.batches, self.batch_size, self.threads = feeder, batches, batch_size, threads
        self.device_id = _device_id()
        self._pipe: Any = None

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        return self._run(iter(self.batches))

    def _schedule(self, keys: list[Key]) -> Feed:
        if self._pipe is None:
            self._pipe = _graph(self.feeder, self.batch_size, self.threads, self.device_id)
        feed = self.feeder.feed(keys)
        for name, values in feed.inputs.items():
            self._pipe.feed_input(name, values)
        self._pipe.schedule_run()
        return feed

    def _run(self, batches: Iterator[list[Key]]) -> Iterator[Batch]:
        pending: deque[Feed] = deque()
        try:
            while True:
                while len(pending) < _DEPTH:
                    keys = next(batches, None)
                    if keys is None:
                        break
                    pending.append(self._schedule(keys))
                if not pending:
                    return
                try:
                    (images,) = self._pipe.outputs()
                except RuntimeError as error:  # DALI reports a failed decode as RuntimeError
                    self._pipe = None  # a pipeline that failed cannot run again
                    self._recover(pending, error)
                    continue
                feed = pending.popleft()
                yield self._tensors(images), self._labels(feed), tuple(self.feeder.skipped)
        finally:
            self._drain(len(pending))

    def _recover(self, pending: deque[Feed], error: RuntimeError) -> None:
        """After a failed run: name the corrupt file(s) of the oldest pending batch, or skip them and refeed."""
        culprits = self.feeder.check(pending[0].keys)
        if not culprits:
            names = ", ".join(self.feeder.name(i) for i, _ in pending[0].keys)
            raise DataError(f"DALI failed on a batch of {names}: {str(error).strip().splitlines()[-1]}") from error
        for index in culprits:
            self.feeder.mark_bad(index, "DALI's decoder and PIL both refuse it")  # raises unless skipping
        # the scheduled batches died with the pipeline: feed them again, the skipped files left out
        keys = [feed.keys for feed in pending]
        pending.clear()
        for batch in keys:
            pending.append(self._schedule(batch))

    def release(self) -> None:
        """Drop the pipeline (rebuilt if iterated again)."""
        self._pipe = None

    def _drain(self, scheduled: int) -> None:
        # runs already scheduled would otherwise be returned by the next iteration's first outputs()
        for _ in range(scheduled):
            try:
                self._pipe.outputs()
            except Exception:  # noqa: BLE001 (a broken pipeline is dropped and rebuilt on demand)
                self._pipe = None
                return

    def _tensors(self, images: Any) -> torch.Tensor:
        """DALI's TensorList -> float32 [B, 3, S, S]: CPU contiguous, or CUDA channels-last."""
        if self.device_id is None:
            return torch.from_numpy(np.array(images.as_tensor()))
        from nvidia.dali.plugin.pytorch import feed_ndarray

        dense = images.as_tensor()
        out = torch.empty(dense.shape(), dtype=torch.float32, device=f"cuda:{self.device_id}")
        feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream(self.device_id))
        return out.permute(0, 3, 1, 2)  # NHWC buffer seen as NCHW: channels-last

    def _labels(self, feed: Feed) -> torch.Tensor:
        labels = torch.from_numpy(feed.labels)
        return labels if self.device_id is None else labels.to(f"cuda:{self.device_id}", non_blocking=True)


class DaliTrainLoader(TrainLoader):
    """TrainLoader (same batches, order, sharding, state, `skipped`) decoded and augmented by DALI."""

    def _make_loader(self, dataset: Any, workers: int, pin_memory: bool) -> _DaliBatches:
        return _DaliBatches(feeder_for(dataset, train=True), self._sampler, self._sampler.batch_size, max(1, workers))


class DaliEvalLoader(EvalLoader):
    """EvalLoader (same images, order, cache, `skipped`) decoded by DALI."""

    def _make_loader(self, dataset: Any, batches: list, workers: int, pin_memory: bool) -> _DaliBatches:
        return _DaliBatches(feeder_for(dataset, train=False), batches, max(len(b) for b in batches), max(1, workers))

    def _pass(self) -> Iterator[Batch]:
        yield from super()._pass()
        if self._cache is not None:  # served from memory from now on: free the pipeline's threads and buffers
            self._loader.release()
