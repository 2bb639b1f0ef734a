"""The one-shot training step: unused candidates untouched, decay groups, a supernet that learns,
scores independent of G and of batch mates."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from vaenas.data import DataConfig, build_search_data
from vaenas.runtime.optim import learning_rate, parameter_groups
from vaenas.search.oneshot.train import Trainer
from vaenas.spaces import get_space
from vaenas.spaces import nasbench101_graph as graph
from vaenas.supernet import get_supernet
from vaenas.supernet.evaluation import evaluate_architectures


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _supernet(seed: int = 0, channels: int = 4):
    space = get_space("nasbench201")
    torch.manual_seed(seed)
    return space, get_supernet(space, channels=channels, cells_per_stage=1)


def _candidate(name: str, op: int) -> bool:
    """Whether parameter `name` belongs to candidate op `op` of a cell edge."""
    return re.search(rf"\.edges\.\d\.{op}\.", name) is not None


def _trainer(supernet, **options):
    settings = dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.1, label_smoothing=0.1, steps=100,
                    schedule="linear", device=torch.device("cpu"), bf16=True)
    return Trainer(supernet, **{**settings, **options})


def test_unused_candidates_are_bit_for_bit_unchanged_by_a_step():
    space, supernet = _supernet()
    trainer = _trainer(supernet)
    images, labels = torch.randn(8, 3, 8, 8), torch.randint(10, (8,))
    conv3x3, conv1x1 = 3, 2
    first = torch.tensor([[conv3x3] * 6])
    second = torch.tensor([[conv1x1] * 6])
    for step in range(2):  # momentum buffers now exist for the 3x3 convolutions
        trainer.step(step, images, labels, first)
    unused = {name: p.detach().clone() for name, p in supernet.named_parameters() if _candidate(name, conv3x3)}
    momentum = {name: trainer.optimizer.state[p]["momentum_buffer"].clone()
                for name, p in supernet.named_parameters() if _candidate(name, conv3x3)}
    used_before = {name: p.detach().clone() for name, p in supernet.named_parameters() if _candidate(name, conv1x1)}
    assert unused and used_before
    trainer.step(2, images, labels, second)
    params = dict(supernet.named_parameters())
    for name, before in unused.items():
        assert params[name].grad is None, name
        assert torch.equal(params[name].detach(), before), f"{name} moved although its op was not sampled"
        assert torch.equal(trainer.optimizer.state[params[name]]["momentum_buffer"], momentum[name]), name
    assert any(not torch.equal(params[n].detach(), b) for n, b in used_before.items())
    # a candidate never used has no optimizer state at all (no zero-gradient momentum, no decay)
    never = [p for name, p in params.items() if _candidate(name, 1) or _candidate(name, 4)]
    assert all(p not in trainer.optimizer.state for p in never)


def _nb101(edges: list[tuple[int, int]], ops: list[int]) -> list[int]:
    """The 26 tokens of the NAS-Bench-101 cell with these edges and 5 interior ops."""
    matrix = [[0] * graph.NUM_VERTICES for _ in range(graph.NUM_VERTICES)]
    for i, j in edges:
        matrix[i][j] = 1
    return graph.embed(matrix, [graph.INPUT_LABEL, *ops, graph.OUTPUT_LABEL])


CONV3X3, CONV1X1 = 0, 1
# a chain 1 -> 2 -> 3 -> output: vertices 1, 2, 3 all at the cell's full width 8
WIDE = _nb101([(0, 1), (1, 2), (2, 3), (3, 6)], [CONV3X3, CONV3X3, CONV1X1, 0, 0])
# vertices 1, 2, 3 each from the input to the output: widths 3, 3, 2 (the first ones take the remainder)
NARROW = _nb101([(0, 1), (0, 2), (0, 3), (1, 6), (2, 6), (3, 6)], [CONV3X3, CONV3X3, CONV1X1, 0, 0])
# vertices 1, 2 from the input to the output: widths 4, 4
MEDIUM = _nb101([(0, 1), (0, 2), (1, 6), (2, 6)], [CONV3X3, CONV3X3, 0, 0, 0])


@pytest.mark.parametrize("archs", [[NARROW], [NARROW, MEDIUM]], ids=["one", "union of two"])
def test_nb101_shared_weights_move_only_inside_the_slices_a_step_used(archs):
    """Two steps of WIDE use the shared weights of the cell's vertices 1-3 whole (momentum buffers
    cover them); then a step of narrower cells, momentum and weight decay on: every entry outside
    all the slices that step used, weight and momentum, stays bit for bit (SGD would decay it and
    carry its momentum on: the trainer's promise for unused candidates holds for unused slices)."""
    space = get_space("nasbench101")
    torch.manual_seed(0)
    supernet = get_supernet(space, stem_channels=8, num_stacks=1, cells_per_stack=1)
    trainer = _trainer(supernet, nesterov=True)
    rows = 4
    images, labels = torch.randn(2 * rows, 3, 8, 8), torch.randint(10, (2 * rows,))
    for step in range(2):
        trainer.step(step, images[:rows], labels[:rows], torch.tensor([WIDE]))
    cell = supernet.layers[0]
    widths = {3: 3, 2: 2} if len(archs) == 1 else {3: 4, 2: 2}  # vertex 1 and 2's width, vertex 3's
    v12, v3 = widths[3], widths[2]
    used = {  # weight -> the union of the slices [:rows, :columns] the step uses
        cell.projections[0].weight: (v12, 8), cell.projections[1].weight: (v12, 8), cell.projections[2].weight: (2, 8),
        cell.operations[0][CONV3X3].weight: (v12, v12), cell.operations[1][CONV3X3].weight: (v12, v12),
        cell.operations[2][CONV1X1].weight: (v3, v3),
    }
    state = trainer.optimizer.state
    before = {w: (w.detach().clone(), state[w]["momentum_buffer"].clone() if w in state else None) for w in used}
    trainer.step(2, images[: rows * len(archs)], labels[: rows * len(archs)], torch.tensor(archs))
    for weight, (out, into) in used.items():
        old, old_momentum = before[weight]
        outside = torch.ones_like(weight, dtype=torch.bool)
        outside[:out, :into] = False
        assert torch.equal(weight.detach()[outside], old[outside]), "a weight moved outside the used slices"
        assert not torch.equal(weight.detach()[:out, :into], old[:out, :into])
        momentum = state[weight]["momentum_buffer"]
        if old_momentum is None:  # first used now: no momentum outside the slices
            assert not momentum[outside].any()
        else:
            assert torch.equal(momentum[outside], old_momentum[outside]), "momentum moved outside the used slices"


def test_nb101_sliced_steps_are_sgd_on_the_child_dead_units_included():
    """Three steps of NARROW on the supernet leave its slices where the same SGD (momentum, Nesterov,
    weight decay) leaves the exported child's weights (float64 networks). A unit made dead (batch-norm bias
    -1000: its ReLU gives exact zeros) has a zero gradient inside its slice and is still decayed."""
    space = get_space("nasbench101")
    torch.manual_seed(0)
    supernet = get_supernet(space, stem_channels=8, num_stacks=1, cells_per_stack=1).double()
    conv = supernet.layers[0].operations[0][CONV3X3]  # vertex 1, width 3
    with torch.no_grad():
        conv.norms["3"].bias[0] = -1000.0
    child = supernet.export_child(torch.tensor(NARROW)).train()
    settings = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1, label_smoothing=0.1, steps=100)
    trainer = _trainer(supernet, **settings)
    optimizer = torch.optim.SGD(parameter_groups(child, 0.1), lr=0.1, momentum=0.9, nesterov=True)
    images, labels = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(10, (4,))
    dead_row = conv.weight.detach()[0, :3].clone()
    for step in range(3):
        trainer.step(step, images, labels, torch.tensor([NARROW]))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(0.1, step, 100, "linear")
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(child(images), labels, label_smoothing=0.1).backward()
        optimizer.step()
    assert not conv.weight.grad[0].any() and not torch.equal(conv.weight.detach()[0, :3], dead_row)
    trained = dict(supernet.export_child(torch.tensor(NARROW)).named_parameters())
    for name, parameter in child.named_parameters():
        # the trainer takes the loss in float32 (differences of 1e-8 after 3 steps); a step that left
        # the dead row undecayed would miss by weight decay x lr x weight, about 1e-3
        torch.testing.assert_close(trained[name], parameter, rtol=1e-6, atol=1e-6)


def test_no_weight_decay_on_batch_norm_and_biases():
    _, supernet = _supernet()
    decay, no_decay = parameter_groups(supernet, 4e-5)
    assert decay["weight_decay"] == 4e-5 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() > 1 for p in decay["params"]) and all(p.dim() <= 1 for p in no_decay["params"])
    names = {id(p): n for n, p in supernet.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} >= {"classifier.bias", "stem.1.weight", "stem.1.bias"}
    assert learning_rate(0.5, 0, 10, "linear") == 0.5 and learning_rate(0.5, 5, 10, "linear") == 0.25


def _digits(**options):
    config = DataConfig(name="digits", image_size=16, batch_size=32, holdout=200, calibration_images=64,
                        eval_batch_size=200, load_test=False, **options)
    return build_search_data(config)


def test_a_supernet_learns_digits():
    """200 SPOS steps of a tiny supernet: sampled architectures score far above chance (10 %)."""
    data = _digits()
    space, supernet = _supernet(channels=8)
    trainer = _trainer(supernet, lr=0.2, weight_decay=4e-5, steps=200)
    generator = torch.Generator().manual_seed(0)
    for step in range(200):
        images, labels = next(data.train)
        trainer.step(step, images, labels, space.sample(1, generator))
    conv = torch.tensor([[3, 3, 3, 3, 3, 3], [2, 3, 1, 3, 2, 3]])
    scores = evaluate_architectures(supernet, conv, data.calibration, data.holdout, group_size=2).accuracy
    assert float(scores.min()) > 50.0, scores


def test_scores_do_not_depend_on_group_size_or_batch_mates():
    data = _digits()
    space, supernet = _supernet(seed=1)
    archs = space.sample(5, torch.Generator().manual_seed(3))
    alone = evaluate_architectures(supernet, archs, data.calibration, data.holdout, group_size=1)
    together = evaluate_architectures(supernet, archs, data.calibration, data.holdout, group_size=5)
    other_mates = torch.cat([space.sample(2, torch.Generator().manual_seed(9)), archs[:1]])
    mixed = evaluate_architectures(supernet, other_mates, data.calibration, data.holdout, group_size=3)
    torch.testing.assert_close(alone.loss, together.loss, rtol=1e-4, atol=1e-5)
    assert (alone.accuracy - together.accuracy).abs().max() <= 0.5  # at most one image flips at a tie
    torch.testing.assert_close(mixed.loss[2], alone.loss[0], rtol=1e-4, atol=1e-5)
