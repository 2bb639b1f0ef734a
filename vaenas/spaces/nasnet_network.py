"""The NASNet-like space's operations, cell and child networks (quark0/darts cnn/model.py,
re-implemented): NASNetCIFAR (NetworkCIFAR, 32 px) and NASNetImageNet (NetworkImageNet, 224 px), each
with DARTS's auxiliary head after the last reduction cell and drop path (`drop_path`) as options; both
are active in training mode only. The encoding (which token is which edge) is vaenas.spaces.nasnet's;
the constants of the cell's shape live here because the networks are built from them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from vaenas.spaces.layers import DilConv, FactorizedReduce, ReLUConvBN, SepConv

OPS = (
    "none",
    "avg_pool_3x3",
    "max_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "dil_conv_3x3",
)
CELLS = ("normal", "reduce")
NODES = 4
EDGES_PER_CELL = sum(2 + node for node in range(NODES))  # 2 + 3 + 4 + 5 = 14
#: position of node k's first edge inside a cell
NODE_OFFSETS = tuple(sum(2 + j for j in range(node)) for node in range(NODES))  # (0, 2, 5, 9)


def make_op(token: int, channels: int, stride: int) -> nn.Module:
    """The DARTS op of a non-`none` token at `channels` channels: [B, C, H, W] -> [B, C, H/stride, W/stride]."""
    factories: dict[str, Callable[[], nn.Module]] = {
        "avg_pool_3x3": lambda: nn.AvgPool2d(3, stride, padding=1, count_include_pad=False),
        "max_pool_3x3": lambda: nn.MaxPool2d(3, stride, padding=1),
        "skip_connect": lambda: nn.Identity() if stride == 1 else FactorizedReduce(channels, channels),
        "sep_conv_3x3": lambda: SepConv(channels, channels, 3, stride, 1),
        "sep_conv_5x5": lambda: SepConv(channels, channels, 5, stride, 2),
        "sep_conv_7x7": lambda: SepConv(channels, channels, 7, stride, 3),
        "dil_conv_3x3": lambda: DilConv(channels, channels, 3, stride, 2, dilation=2),
    }
    return factories[OPS[token]]()


def drop_path(x: Tensor, probability: Tensor) -> Tensor:
    """x [B, ...] with each sample's values zeroed with `probability` (a 0-dim tensor) and the kept ones
    divided by 1 - probability (DARTS utils.drop_path; the expectation is x).

    The probability is a tensor, not a float, so that a schedule that changes it every epoch does not
    make torch.compile specialise the graph on each value; the mask draws from the global RNG of x's device.
    """
    keep = 1.0 - probability
    mask = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) < keep
    return x * mask.to(x.dtype) / keep.to(x.dtype)


class Cell(nn.Module):
    """One cell: (s0 [B, C_pp, H0, W0], s1 [B, C_p, H, W]) -> [B, 4 C, H', W'] (H' = H/2 in a reduction cell).

    As DARTS's `Cell`, except that edges whose op is `none` are absent, a node sums all its inputs, and
    a cell input that no edge reads gets no preprocessing (its weights would never get a gradient).
    With `drop_probability` (a 0-dim tensor) in training mode, each edge's output except an identity's
    goes through drop_path, as in DARTS.
    """

    def __init__(
        self,
        tokens: list[int],
        prev_prev_channels: int,
        prev_channels: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        #: inputs[k]: the predecessors of node k with an op, in predecessor order
        self.inputs: list[list[int]] = []
        self.edges = nn.ModuleDict()
        for node in range(NODES):
            self.inputs.append([])
            for predecessor in range(2 + node):
                token = tokens[NODE_OFFSETS[node] + predecessor]
                if token == 0:
                    continue
                stride = 2 if reduction and predecessor < 2 else 1
                self.edges[f"node{node}_from{predecessor}"] = make_op(token, channels, stride)
                self.inputs[node].append(predecessor)
        used = {predecessor for node_inputs in self.inputs for predecessor in node_inputs}
        self.preprocess0: nn.Module | None = None
        self.preprocess1: nn.Module | None = None
        if 0 in used:
            # c_{k-2} is at twice the resolution of c_{k-1} right after a reduction cell
            self.preprocess0 = (
                FactorizedReduce(prev_prev_channels, channels)
                if reduction_prev
                else ReLUConvBN(prev_prev_channels, channels, 1, 1, 0)
            )
        if 1 in used:
            self.preprocess1 = ReLUConvBN(prev_channels, channels, 1, 1, 0)

    def forward(self, s0: Tensor, s1: Tensor, drop_probability: Tensor | None = None) -> Tensor:
        states: list[Tensor | None] = [
            self.preprocess0(s0) if self.preprocess0 is not None else None,
            self.preprocess1(s1) if self.preprocess1 is not None else None,
        ]
        dropping = drop_probability is not None and self.training
        for node, predecessors in enumerate(self.inputs):
            terms = []
            for p in predecessors:
                edge = self.edges[f"node{node}_from{p}"]
                term = edge(states[p])
                terms.append(drop_path(term, drop_probability) if dropping and not isinstance(edge, nn.Identity)
                             else term)
            states.append(sum(terms[1:], terms[0]))
        return torch.cat(states[2:], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS's auxiliary classifier for an 8x8 feature map: [B, C, 8, 8] -> logits [B, num_classes]."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),  # its input also feeds the next cell or the classifier
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 -> 2x2
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),  # 2x2 -> 1x1
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS's auxiliary classifier of NetworkImageNet, for a 7x7 feature map (after the last reduction
    cell at 224 px): [B, C, 7, 7] -> logits [B, num_classes]. As in DARTS's published experiments, no
    batch norm after the 2x2 conv (its code comments that one out for consistency with the paper)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False),  # 7x7 -> 2x2
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),  # 2x2 -> 1x1
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def reduction_cells(layers: int, reductions: Sequence[int] | None = None) -> tuple[int, ...]:
    """Indices of the reduction cells: `reductions` checked (distinct, in 0..layers-1, sorted), or
    DARTS's layers//3 and 2*layers//3 when None."""
    if reductions is None:
        if layers < 2:
            raise ValueError(f"nasnet: layers must be >= 2 (two reduction cells), got {layers}")
        return (layers // 3, 2 * layers // 3)
    cells = tuple(sorted(int(index) for index in reductions))
    if not cells or len(set(cells)) != len(cells) or cells[0] < 0 or cells[-1] >= layers:
        raise ValueError(f"nasnet: reductions must be distinct cell indices in 0..{layers - 1}, got {list(reductions)}")
    return cells


class NASNetNetwork(nn.Module):
    """What DARTS's NetworkCIFAR and NetworkImageNet share: `layers` cells after a stem, reduction cells
    (channels doubled) at layers//3 and 2*layers//3 (or at `reductions`), global average pooling, a
    linear classifier; the auxiliary head on the output of the last reduction cell; drop path.

    forward(images) -> logits [B, num_classes], or in training mode with the auxiliary head (logits,
    auxiliary logits). drop_path: the network has a 0-dim buffer `drop_path_prob` (not saved in the
    state_dict; 0 when built) that the training loop sets, e.g. increased linearly over the epochs
    as DARTS does; eval mode never drops. Subclasses define `stem_outputs(images) -> (s0, s1)`.
    """

    def _build(
        self, tokens: list[int], channels: int, layers: int, num_classes: int, auxiliary_head: type[nn.Module] | None,
        reductions: Sequence[int] | None, drop_path: bool, stem_channels: tuple[int, int], reduction_prev: bool,
    ) -> None:
        reductions = reduction_cells(layers, reductions)
        self.auxiliary_after = reductions[-1]
        (prev_prev, prev), current = stem_channels, channels
        self.cells = nn.ModuleList()
        auxiliary_channels = prev
        for index in range(layers):
            reduction = index in reductions
            if reduction:
                current *= 2
            cell_tokens = tokens[EDGES_PER_CELL:] if reduction else tokens[:EDGES_PER_CELL]
            self.cells.append(Cell(cell_tokens, prev_prev, prev, current, reduction, reduction_prev))
            reduction_prev = reduction
            prev_prev, prev = prev, NODES * current
            if index == self.auxiliary_after:
                auxiliary_channels = prev
        self.auxiliary_head = auxiliary_head(auxiliary_channels, num_classes) if auxiliary_head else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, num_classes)
        if drop_path:
            self.register_buffer("drop_path_prob", torch.zeros(()), persistent=False)
        else:
            self.drop_path_prob: Tensor | None = None

    def stem_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        s0, s1 = self.stem_outputs(images)
        auxiliary_logits = None
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if index == self.auxiliary_after and self.auxiliary_head is not None and self.training:
                auxiliary_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits if auxiliary_logits is None else (logits, auxiliary_logits)


class NASNetCIFAR(NASNetNetwork):
    """DARTS's NetworkCIFAR for one architecture: images [B, 3, 32, 32] -> logits [B, num_classes].

    Stem conv 3x3 to 3C channels, then the cells (NASNetNetwork). With `auxiliary`, training-mode
    forward returns (logits, auxiliary logits) from AuxiliaryHeadCIFAR (8x8 input: 32 px with two
    reductions); eval mode returns logits only. With `drop_path`, training-mode forward drops edge
    outputs with probability `drop_path_prob`.
    """

    def __init__(
        self,
        tokens: list[int],
        channels: int,
        layers: int,
        num_classes: int,
        auxiliary: bool,
        reductions: Sequence[int] | None = None,
        drop_path: bool = False,
    ) -> None:
        super().__init__()
        stem_channels = 3 * channels
        self.stem = nn.Sequential(nn.Conv2d(3, stem_channels, 3, padding=1, bias=False), nn.BatchNorm2d(stem_channels))
        self._build(tokens, channels, layers, num_classes, AuxiliaryHeadCIFAR if auxiliary else None, reductions,
                    drop_path, (stem_channels, stem_channels), reduction_prev=False)

    def stem_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        s = self.stem(images)
        return s, s


class NASNetImageNet(NASNetNetwork):
    """DARTS's NetworkImageNet for one architecture: images [B, 3, 224, 224] -> logits [B, num_classes].

    Two stems: stem0 (conv 3x3 stride 2 to C/2, BN, ReLU, conv 3x3 stride 2 to C, BN; 224 -> 56 px)
    gives c_{k-2} of the first cell, stem1 (ReLU, conv 3x3 stride 2, BN; -> 28 px) its c_{k-1}; so the
    first cell reads inputs of two resolutions (reduction_prev). The auxiliary head is
    AuxiliaryHeadImageNet (7x7 input at 224 px). Options as NASNetCIFAR.
    """

    def __init__(
        self,
        tokens: list[int],
        channels: int,
        layers: int,
        num_classes: int,
        auxiliary: bool,
        reductions: Sequence[int] | None = None,
        drop_path: bool = False,
    ) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"nasnet: the ImageNet stem halves C; C must be even, got {channels}")
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, channels // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),  # stem0's output is also the first cell's c_{k-2}
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self._build(tokens, channels, layers, num_classes, AuxiliaryHeadImageNet if auxiliary else None, reductions,
                    drop_path, (channels, channels), reduction_prev=True)

    def stem_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        s0 = self.stem0(images)
        return s0, self.stem1(s0)


#: the child networks by their `stem` option
NETWORKS = {"cifar": NASNetCIFAR, "imagenet": NASNetImageNet}
