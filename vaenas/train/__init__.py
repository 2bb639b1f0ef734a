"""vaenas.train: retraining of found architectures from scratch (DESIGN §2), `python -m vaenas.train`.

    python -m vaenas.train arch=runs/<search run> recipe=digits
    torchrun --nproc-per-node 8 -m vaenas.train arch=found.json recipe=imagenet_nasnet data.root=/imagenet

Modules: config (RetrainConfig, the packaged recipes in recipes/*.yaml), architecture (reading an
architecture JSON or a search run folder), network (the child network with the recipe's options, its
drop path and deployed cost), optim (SGD, TF1's RMSProp), trainer (Retrainer: the DDP training loop,
evaluation, checkpoint state), report (results.json, report.md, curves.png), cli (the command line).
"""

from vaenas.train.architecture import Architecture, ArchitectureError, read_architecture
from vaenas.train.config import RECIPES, RetrainConfig, recipe_names
from vaenas.train.trainer import Retrainer

__all__ = ["RECIPES", "Architecture", "ArchitectureError", "RetrainConfig", "Retrainer", "read_architecture",
           "recipe_names"]
