"""vaenas.data: image data of a search or a retraining, sharded by global rank, seeded, resumable.

    from vaenas.data import DataConfig, build_search_data
    data = build_search_data(DataConfig(name="cifar10", root="~/data"), rank, world_size)
    images, labels = next(data.train)      # float32 [B, 3, S, S] normalised, int64 [B]
    for images, labels in data.holdout: ...  # same images, same order, every pass and rank
    state = data.train.state_dict()          # position (epoch, batch) for a checkpoint
    data = build_training_data(config, rank, world_size)  # a retraining: held-out and test split by rank

Datasets: "digits" (packaged, no download), "cifar10" / "cifar100" (the python pickle batches),
"imagenet" (any class-folder tree root/train/<class>/..., root/val/<class>/...).
Modules: config (DataConfig, DataError), cifar / digits / folder (reading), transforms, datasets
(key -> sample), splits (hold-out, calibration), seeding, loaders (TrainLoader, EvalLoader), build,
dali + dali_feed (the DALI backend).
Backends (DataConfig.backend): "torchvision" (DataLoader), "dali" (NVIDIA DALI, optional:
pip install nvidia-dali-cuda130; the only module importing it is vaenas.data.dali, lazily), "auto".
Both give the same images in the same order (DALI: same crops and flips, pixels within JPEG-decoder
and resampling rounding); on a GPU DALI decodes with nvJPEG and serves CUDA channels-last tensors.
"""

from vaenas.data.build import SearchData, TrainingData, build_search_data, build_training_data, count_classes
from vaenas.data.config import DATASETS, DataConfig, DataError
from vaenas.data.loaders import EvalLoader, TrainLoader

__all__ = [
    "DATASETS", "DataConfig", "DataError", "EvalLoader", "SearchData", "TrainLoader", "TrainingData", "build_search_data",
    "build_training_data", "count_classes",
]
