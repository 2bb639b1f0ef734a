"""The NAS-Bench-101 network in PyTorch, ported from google-research/nasbench `lib/model_builder.py`.

Stem conv3x3-bn-relu (128 channels), 3 stacks of 3 cells, a 2x2 max-pool with channel doubling
before stacks 2 and 3, global average pool, dense layer to 10 classes. Inside a cell the output
channels are split over the vertices that feed the output (`compute_vertex_channels`), tensors
from the input are 1x1-projected, interior tensors are truncated to the receiving vertex's
channels, inputs of a vertex are added and those of the output concatenated. Trainable
parameters match the dataset's `trainable_parameters` (tests/spaces/test_nasbench101.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# TF's batch_normalization in nasbench/lib/base_ops.py: momentum 0.997, epsilon 1e-5. PyTorch's
# momentum is the weight of the new batch statistic, 1 - 0.997.
BN_MOMENTUM = 1.0 - 0.997
BN_EPSILON = 1e-5

Device = torch.device | str | None


class ConvBnRelu(nn.Sequential):
    """Conv2d (no bias, 'same' padding) + BatchNorm2d + ReLU: nasbench's conv_bn_relu."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, device: Device = None) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False, device=device),
            nn.BatchNorm2d(out_channels, eps=BN_EPSILON, momentum=BN_MOMENTUM, device=device),
            nn.ReLU(inplace=False),
        )


def compute_vertex_channels(input_channels: int, output_channels: int, matrix: list[list[int]]) -> list[int]:
    """Channels of every vertex of a pruned cell (nasbench model_builder.compute_vertex_channels).

    The output channels are split evenly over the interior vertices that feed the output (the
    first ones get the remainder, one channel each); every other interior vertex takes the max
    of the vertices it feeds.
    """
    n = len(matrix)
    channels = [0] * n
    channels[0], channels[n - 1] = input_channels, output_channels
    if n == 2:  # input directly to output
        return channels
    in_degree_of_output = sum(matrix[v][n - 1] for v in range(1, n))
    interior, correction = divmod(output_channels, in_degree_of_output)
    for v in range(1, n - 1):
        if matrix[v][n - 1]:
            channels[v] = interior + (1 if correction > 0 else 0)
            correction -= 1 if correction > 0 else 0
    for v in range(n - 3, 0, -1):
        if not matrix[v][n - 1]:
            for destination in range(v + 1, n - 1):
                if matrix[v][destination]:
                    channels[v] = max(channels[v], channels[destination])
    if any(c <= 0 for c in channels[1:-1]):
        raise ValueError(f"cell {matrix} leaves an interior vertex without channels: is it pruned?")
    return channels


class Cell(nn.Module):
    """One NAS-Bench-101 module (nasbench model_builder.build_module) of a pruned cell.

    matrix: n x n 0/1 upper-triangular adjacency, no dangling vertex; labels: n labels, -1 input,
    0 conv3x3-bn-relu, 1 conv1x1-bn-relu, 2 maxpool3x3, -2 output. Maps [B, in_channels, H, W]
    to [B, out_channels, H, W]. device: where the parameters are created.
    """

    def __init__(
        self, matrix: list[list[int]], labels: list[int], in_channels: int, out_channels: int, device: Device = None
    ) -> None:
        super().__init__()
        self.matrix = [list(map(int, row)) for row in matrix]
        n = len(self.matrix)
        self.vertex_channels = compute_vertex_channels(in_channels, out_channels, self.matrix)
        projections, operations = {}, {}
        for t in range(1, n - 1):
            if self.matrix[0][t]:
                projections[str(t)] = ConvBnRelu(in_channels, self.vertex_channels[t], 1, device)
            channels = self.vertex_channels[t]
            label = int(labels[t])
            if label == 0:
                operations[str(t)] = ConvBnRelu(channels, channels, 3, device)
            elif label == 1:
                operations[str(t)] = ConvBnRelu(channels, channels, 1, device)
            elif label == 2:
                operations[str(t)] = nn.MaxPool2d(3, stride=1, padding=1)  # -inf padding, as TF 'same'
            else:
                raise ValueError(f"vertex {t} has label {label}; ops are 0, 1, 2")
        if self.matrix[0][n - 1]:
            projections[str(n - 1)] = ConvBnRelu(in_channels, out_channels, 1, device)
        self.projections = nn.ModuleDict(projections)
        self.operations = nn.ModuleDict(operations)

    def forward(self, inputs: Tensor) -> Tensor:
        n = len(self.matrix)
        tensors = [inputs]
        concatenated = []
        for t in range(1, n - 1):
            channels = self.vertex_channels[t]
            # Interior tensors have equal or one more channel than t: keep the first ones (truncate).
            added = [tensors[source][:, :channels] for source in range(1, t) if self.matrix[source][t]]
            if self.matrix[0][t]:
                added.append(self.projections[str(t)](inputs))
            tensors.append(self.operations[str(t)](sum(added[1:], added[0])))
            if self.matrix[t][n - 1]:
                concatenated.append(tensors[t])
        if not concatenated:  # only the input feeds the output
            return self.projections[str(n - 1)](inputs)
        outputs = torch.cat(concatenated, dim=1) if len(concatenated) > 1 else concatenated[0]
        if self.matrix[0][n - 1]:
            outputs = outputs + self.projections[str(n - 1)](inputs)
        return outputs


class NASBench101Network(nn.Module):
    """The whole network of one pruned cell: [B, 3, H, W] images -> [B, num_classes] logits.

    device: where the parameters are created; "meta" builds the module without memory or
    initialisation cost (about 5 ms on 2 cores), e.g. to count its parameters.
    """

    def __init__(
        self,
        matrix: list[list[int]],
        labels: list[int],
        stem_channels: int = 128,
        num_stacks: int = 3,
        cells_per_stack: int = 3,
        num_classes: int = 10,
        device: Device = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBnRelu(3, stem_channels, 3, device)]
        in_channels = channels = stem_channels
        for stack in range(num_stacks):
            if stack > 0:
                layers.append(nn.MaxPool2d(2, stride=2))
                channels *= 2
            for _ in range(cells_per_stack):
                layers.append(Cell(matrix, labels, in_channels, channels, device))
                in_channels = channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes, device=device)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images).mean(dim=(2, 3)))
