"""The ShuffleNet-like search space: 20 ShuffleNetV2 layers, 4 choices each (paper appendix A.4).

The backbone is SPOS's (megvii-model/SinglePathOneShot, ShuffleNetV2_OneShot): conv 3x3 stride 2 to
16 channels, four stages of [4, 4, 8, 4] ShuffleNetV2 blocks with [64, 160, 320, 640] output channels
whose first block has stride 2, conv 1x1 to 1024 channels, global average pooling, dropout, a linear
classifier. Token t is layer t's block:

    0 shuffle_3x3, 1 shuffle_5x5, 2 shuffle_7x7: ShuffleNetV2 block with a k x k depthwise conv
    3 xception_3x3: the Xception-like block (three depthwise 3x3 + pointwise pairs)

As in the paper, Swish (nn.SiLU) replaces ReLU in 5x5, 7x7 and Xception blocks, and those of 7x7 and
Xception end their main branch with squeeze-and-excitation (placed as in megvii's ShuffleNetV2+).
Every string is valid: 4^20 architectures.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import Tensor, nn

from vaenas.spaces.base import SearchSpace
from vaenas.spaces.layers import SqueezeExcite

#: token -> block name
CHOICES = ("shuffle_3x3", "shuffle_5x5", "shuffle_7x7", "xception_3x3")
#: (kernel size, Swish instead of ReLU, squeeze-and-excitation, Xception-like) of each choice
_CHOICE_SPECS = ((3, False, False, False), (5, True, False, False), (7, True, True, False), (3, True, True, True))
STAGE_REPEATS = (4, 4, 8, 4)
STAGE_CHANNELS = (64, 160, 320, 640)
FIRST_CHANNELS = 16
LAST_CHANNELS = 1024
#: (stage, block inside the stage) of each of the 20 layers
LAYER_PLACES = tuple((stage, block) for stage, repeat in enumerate(STAGE_REPEATS) for block in range(repeat))


def scaled_channels(channels: int, width: float) -> int:
    """channels * width rounded to a multiple of 8, at least 8 (ShuffleNetV2 splits channels in halves)."""
    return max(8, int(round(channels * width / 8)) * 8)


def layer_shapes(width: float) -> list[tuple[int, int, int]]:
    """(input channels, output channels, stride) of each of the 20 layers at `width`."""
    shapes, in_channels = [], scaled_channels(FIRST_CHANNELS, width)
    for stage, block in LAYER_PLACES:
        out_channels = scaled_channels(STAGE_CHANNELS[stage], width)
        shapes.append((in_channels, out_channels, 2 if block == 0 else 1))
        in_channels = out_channels
    return shapes


def _pointwise(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]


def _depthwise(channels: int, kernel_size: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(channels, channels, kernel_size, stride, kernel_size // 2, groups=channels, bias=False),
        nn.BatchNorm2d(channels),
    ]


class ShuffleBlock(nn.Module):
    """SPOS's ShuffleNetV2 block (`Shufflenet` / `Shuffle_Xception`): [B, C_in, H, W] -> [B, C_out, H/s, W/s].

    Stride 1 (C_in == C_out): the even channels pass through, the odd ones go through the main branch;
    taking even/odd channels is the channel shuffle of the previous block's concatenation fused with
    the split (SPOS `channel_shuffle`). Stride 2: a projection branch (depthwise k x k, pointwise) and the
    main branch both read all C_in channels. Output = concat(passed/projected, main).
    """

    def __init__(self, in_channels: int, out_channels: int, choice: int, stride: int) -> None:
        super().__init__()
        kernel_size, swish, squeeze_excite, xception = _CHOICE_SPECS[choice]
        activation = nn.SiLU if swish else nn.ReLU
        branch_in = in_channels if stride == 2 else in_channels // 2
        main_out = out_channels - branch_in
        if main_out <= 0 or (stride == 1 and in_channels != out_channels):
            raise ValueError(f"shufflenet block: {in_channels} -> {out_channels} channels at stride {stride}")
        mid = out_channels // 2
        if xception:
            main: list[nn.Module] = [
                *_depthwise(branch_in, 3, stride), *_pointwise(branch_in, mid), activation(),
                *_depthwise(mid, 3, 1), *_pointwise(mid, mid), activation(),
                *_depthwise(mid, 3, 1), *_pointwise(mid, main_out), activation(),
            ]  # fmt: skip
        else:
            main = [
                *_pointwise(branch_in, mid), activation(),
                *_depthwise(mid, kernel_size, stride),
                *_pointwise(mid, main_out), activation(),
            ]  # fmt: skip
        if squeeze_excite:
            main.append(SqueezeExcite(main_out))
        self.main = nn.Sequential(*main)
        self.projection = (
            nn.Sequential(*_depthwise(in_channels, kernel_size, 2), *_pointwise(in_channels, in_channels), activation())
            if stride == 2
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.projection is None:
            return torch.cat([x[:, 0::2], self.main(x[:, 1::2])], dim=1)
        return torch.cat([self.projection(x), self.main(x)], dim=1)


class ShuffleNetChild(nn.Module):
    """The standalone network of one architecture: images [B, 3, H, W] -> logits [B, classes].

    H, W multiples of 32: the first conv and the 4 stages each halve them (224 px -> 7x7 before the
    pooling). small_input: the first conv keeps the resolution (CIFAR-sized data: 32 px -> 2x2, H, W
    multiples of 16); nothing else changes, so the weights of both variants have the same shapes.
    """

    def __init__(
        self, tokens: list[int], num_classes: int, width: float, dropout: float, small_input: bool = False
    ) -> None:
        super().__init__()
        first = scaled_channels(FIRST_CHANNELS, width)
        stride = 1 if small_input else 2
        self.first_conv = nn.Sequential(
            nn.Conv2d(3, first, 3, stride, 1, bias=False), nn.BatchNorm2d(first), nn.ReLU(inplace=True)
        )
        shapes = layer_shapes(width)
        self.features = nn.Sequential(*(ShuffleBlock(i, o, token, s) for token, (i, o, s) in zip(tokens, shapes)))
        self.conv_last = nn.Sequential(*_pointwise(shapes[-1][1], LAST_CHANNELS), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(LAST_CHANNELS, num_classes, bias=False)

    def forward(self, images: Tensor) -> Tensor:
        x = self.conv_last(self.features(self.first_conv(images)))
        return self.classifier(self.dropout(self.global_pooling(x).flatten(1)))


class ShuffleNetSpace(SearchSpace):
    """20 layers x 4 ShuffleNetV2 blocks. Constructor options are the child defaults of build_child and cost.

    num_classes: classifier outputs (ImageNet: 1000). width: multiplier of the first conv's and the stages'
    channels (rounded to multiples of 8; conv_last stays 1024 as in ShuffleNetV2 up to 1.5x). dropout:
    before the classifier (SPOS: 0.1). small_input: the variant for 32 px images (first conv at stride 1,
    see ShuffleNetChild); example_input is then 32 px, so cost() counts the network at that size.
    """

    name = "shufflenet"
    #: 4 blocks at each of 20 layers
    num_architectures = 4**20
    vocab_sizes = (len(CHOICES),) * len(LAYER_PLACES)

    def __init__(
        self, num_classes: int = 1000, width: float = 1.0, dropout: float = 0.1, small_input: bool = False
    ) -> None:
        self.child_options = {
            "num_classes": num_classes, "width": width, "dropout": dropout, "small_input": small_input,
        }  # fmt: skip

    def is_valid(self, archs: Tensor) -> Tensor:
        archs = self.check_tokens(archs)
        return torch.ones(archs.shape[0], dtype=torch.bool)

    def position_name(self, position: int) -> str:
        stage, block = LAYER_PLACES[position]
        return f"layer {position} (stage {stage}, block {block})"

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randint(0, len(CHOICES), (n, self.length), generator=generator)

    def mutate(self, archs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Each row with one layer (uniform) changed to another block (uniform among the other 3)."""
        archs = self.check_tokens(archs).clone()
        rows = torch.arange(archs.shape[0])
        positions = torch.randint(0, self.length, (archs.shape[0],), generator=generator)
        shifts = torch.randint(1, len(CHOICES), (archs.shape[0],), generator=generator)
        archs[rows, positions] = (archs[rows, positions] + shifts) % len(CHOICES)
        return archs

    def crossover(self, parents_a: Tensor, parents_b: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Uniform crossover: each layer's block from either parent with probability 1/2."""
        parents_a, parents_b = self.check_tokens(parents_a), self.check_tokens(parents_b)
        if parents_a.shape != parents_b.shape:
            shapes = f"{tuple(parents_a.shape)} vs {tuple(parents_b.shape)}"
            raise ValueError(f"{self.name}: parents differ in shape: {shapes}")
        from_a = torch.rand(parents_a.shape, generator=generator) < 0.5
        return torch.where(from_a, parents_a, parents_b)

    def to_json(self, arch: Tensor) -> dict:
        """{"layers": [block name of layer 0, ..., layer 19]}."""
        return {"layers": [CHOICES[token] for token in self.validate(arch).tolist()]}

    def from_json(self, data: dict | str) -> Tensor:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as error:
                raise ValueError(f"{self.name}: not JSON: {error}") from None
        if not isinstance(data, dict) or set(data) != {"layers"}:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{self.name}: expected an object with the key 'layers', got {got}")
        layers = data["layers"]
        if not isinstance(layers, list) or len(layers) != self.length:
            raise ValueError(f"{self.name}: 'layers' must list {self.length} block names, got {layers!r}")
        for position, choice in enumerate(layers):
            if choice not in CHOICES:
                raise ValueError(
                    f"{self.name}: unknown block {choice!r} at {self.position_name(position)}; "
                    f"choose one of {', '.join(CHOICES)}"
                )
        return torch.tensor([CHOICES.index(choice) for choice in layers])

    def build_child(self, arch: Tensor, **options: Any) -> nn.Module:
        """ShuffleNetChild of arch [20]; options override the space's num_classes, width, dropout, small_input."""
        settings = self.child_settings(options)
        tokens = self.validate(arch).tolist()
        return ShuffleNetChild(
            tokens,
            settings["num_classes"],
            float(settings["width"]),
            float(settings["dropout"]),
            bool(settings["small_input"]),
        )

    def example_input(self, batch_size: int = 1) -> Tensor:
        """Random images [batch_size, 3, 224, 224] (ImageNet), or 32 x 32 for the small-input variant."""
        size = 32 if self.child_options["small_input"] else 224
        return torch.randn(batch_size, 3, size, size)
