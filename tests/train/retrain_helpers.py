"""What the retraining tests share (fixtures are in conftest.py): one architecture JSON of each space, and
the arguments of one short CPU retraining of each space on the CIFAR-10 set of tests/data/datafiles.py."""

from __future__ import annotations

from pathlib import Path

#: one architecture of each space; the NAS-Bench-101 cell is the first row of the packaged 20k sample
#: (hash 00005c14..., 108-epoch validation accuracy 93.04888 %), as tests/fixtures/nb101_1k_with_specs.csv.gz spells it
ARCHITECTURES = {
    "nasbench201": {"space": "nasbench201", "tokens": [3, 3, 1, 3, 1, 3]},
    "nasnet": {"space": "nasnet", "tokens": [4, 3, 5, 0, 3, 0, 7, 1, 0, 0, 4, 4, 0, 2,
                                             2, 2, 0, 3, 1, 0, 0, 3, 2, 0, 0, 3, 0, 4]},
    "shufflenet": {"space": "shufflenet", "tokens": [0, 1, 2, 3] * 5},
    "nasbench101": {"space": "nasbench101", "architecture": {
        "matrix": [[0, 1, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 1, 0],
                   [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
        "ops": ["input", "conv3x3-bn-relu", "maxpool3x3", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv1x1-bn-relu",
                "output"]}},
}
#: small networks and one short CPU epoch of each space on the 200 + 30 images of write_cifar
SMALL = {
    "nasbench201": ["recipe=nasbench201", "network.nasbench201={channels: 4, cells_per_stage: 1}"],
    "nasnet": ["recipe=cifar10", "network.nasnet={C: 4, layers: 3}"],
    "shufflenet": ["recipe=imagenet_shufflenet", "datasets=[cifar10]", "data.name=cifar10", "data.color_jitter=0",
                   "network.shufflenet={width: 0.25, small_input: true}"],
    "nasbench101": ["recipe=nasbench101", "data.holdout=40",
                    "network.nasbench101={stem_channels: 8, num_stacks: 3, cells_per_stack: 1}"],
}
COMMON = ["train.epochs=1", "train.batch_size=40", "data.workers=0", "data.eval_batch_size=16", "train.threads=1",
          "train.compile=false", "progress=false", "run.log_every=2"]


def small_run(space: str, cifar_root: Path, arch: Path, out: Path, *more: str) -> list[str]:
    """The arguments of one short CPU retraining of `space` on the generated CIFAR-10 set."""
    return [f"arch={arch}", *SMALL[space], f"data.root={cifar_root}", *COMMON, *more, "--out", str(out)]
