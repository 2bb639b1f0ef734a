"""The NAS-Bench-101 supernet: G-group forward, export to the benchmark's network, sliced weights.

Tiny networks (stem 8, 1-2 stacks of 1 cell, 16 px, float64) keep the file at a few seconds.
"""

import pytest
import torch

from vaenas.spaces import nasbench101_graph as graph
from vaenas.spaces.nasbench101 import NASBench101Space
from vaenas.spaces.nasbench101_network import compute_vertex_channels
from vaenas.supernet import get_supernet, recalibrate
from vaenas.supernet.base import SlicedWeight, take_used_slices, union_blocks
from vaenas.supernet.nasbench101 import NASBench101Supernet, prune_cell, vertex_widths

OPTIONS = {"stem_channels": 8, "num_stacks": 2, "cells_per_stack": 1, "num_classes": 5}
ROWS = 4  # images per group


def tokens(edges: list[tuple[int, int]], ops: list[int]) -> list[int]:
    matrix = [[0] * graph.NUM_VERTICES for _ in range(graph.NUM_VERTICES)]
    for i, j in edges:
        matrix[i][j] = 1
    return graph.embed(matrix, [graph.INPUT_LABEL, *ops, graph.OUTPUT_LABEL])


# Cells random sampling rarely gives: input straight to output; one max-pool vertex; vertices 3
# and 5 dangling (pruned away) beside a chain with the input->output projection.
SPECIAL = [
    tokens([(0, 6)], [0, 1, 2, 0, 1]),
    tokens([(0, 1), (1, 6)], [2, 0, 0, 0, 0]),
    tokens([(0, 1), (1, 2), (2, 4), (4, 6), (0, 6), (0, 3), (2, 5)], [1, 0, 2, 0, 1]),
]


@pytest.fixture
def generator():
    torch.manual_seed(101)  # the supernet's initialisation
    return torch.Generator().manual_seed(20261128)


@pytest.fixture(scope="module")
def space():
    return NASBench101Space()


def supernet(space: NASBench101Space, **options) -> NASBench101Supernet:
    return get_supernet(space, **{**OPTIONS, **options}).double()


def architectures(space, generator, count: int) -> torch.Tensor:
    """`count` valid architectures: the special cells first, then random ones."""
    special = torch.tensor(SPECIAL)[:count]
    return torch.cat([special, space.sample(count - len(special), generator)])


def images(generator, count: int) -> torch.Tensor:
    return torch.randn(count, 3, 16, 16, generator=generator, dtype=torch.float64)


def gradients(net: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {name: None if p.grad is None else p.grad.clone() for name, p in net.named_parameters()}


@pytest.mark.parametrize("num_groups", [1, 3])
def test_group_forward_equals_separate_forwards(space, generator, num_groups):
    net = supernet(space)
    # a pruned cell in every run; with 3 groups also a random cell and input straight to output
    archs = torch.cat([torch.tensor([SPECIAL[2]]), space.sample(1, generator), torch.tensor([SPECIAL[0]])])[:num_groups]
    x = images(generator, num_groups * ROWS)
    upstream = torch.randn(num_groups * ROWS, OPTIONS["num_classes"], generator=generator, dtype=torch.float64)

    logits = net(x, archs)
    (logits * upstream).sum().backward()
    grouped = gradients(net)
    net.zero_grad(set_to_none=True)

    for g in range(num_groups):
        rows = slice(g * ROWS, (g + 1) * ROWS)
        alone = net(x[rows], archs[g : g + 1])
        torch.testing.assert_close(logits[rows], alone, rtol=0, atol=1e-12)
        (alone * upstream[rows]).sum().backward()  # gradients add up over the separate runs
    for name, grad in gradients(net).items():
        assert (grad is None) == (grouped[name] is None), name
        if grad is not None:
            torch.testing.assert_close(grouped[name], grad, rtol=1e-10, atol=1e-12, msg=name)


def test_export_child_gives_the_same_logits_after_recalibration(space, generator):
    net = supernet(space)
    archs = architectures(space, generator, 5)
    calibration = [images(generator, ROWS), images(generator, ROWS)]
    # Train-mode steps first, so that running statistics and recalibrated ones differ.
    net(images(generator, 5 * ROWS), archs).sum().backward()
    with recalibrate(net, len(archs)):
        for batch in calibration:
            net(batch.repeat(len(archs), 1, 1, 1), archs)
    x = images(generator, ROWS)
    net.eval()  # recalibrate restored train mode
    logits = net(x.repeat(len(archs), 1, 1, 1), archs).unflatten(0, (len(archs), ROWS))
    for g, arch in enumerate(archs):
        child = net.export_child(arch, group=g).eval()
        assert next(child.parameters()).dtype == torch.float64
        with torch.no_grad():
            torch.testing.assert_close(child(x), logits[g], rtol=0, atol=1e-12)
        reference = space.build_child(arch, device="meta", **net.child_options())
        assert sum(p.numel() for p in child.parameters()) == sum(p.numel() for p in reference.parameters())


def test_used_slices_get_exactly_the_childs_gradients_and_unused_parts_none(space, generator):
    """A train-mode G = 1 step on the supernet and on its exported child: the supernet parameters
    that get a gradient are as many as the child's, and their non-zero gradient entries are the
    child's (so nothing outside the slices, or in an unchosen op or width, gets gradient)."""
    net = supernet(space)
    for arch in architectures(space, generator, 4):
        net.zero_grad(set_to_none=True)
        child = net.export_child(arch).train()
        x = images(generator, ROWS)
        upstream = torch.randn(ROWS, OPTIONS["num_classes"], generator=generator, dtype=torch.float64)
        logits = net(x, arch[None])
        torch.testing.assert_close(logits, child(x), rtol=0, atol=1e-12)
        (logits * upstream).sum().backward()
        (child(x) * upstream).sum().backward()

        used = [p.grad for p in net.parameters() if p.grad is not None]
        child_grads = [p.grad for p in child.parameters()]
        assert len(used) == len(child_grads)
        assert sum(g.count_nonzero() for g in used) <= sum(p.numel() for p in child.parameters())

        def nonzero_sorted(grads):
            """The entries above rounding noise: a projection's batch-norm bias, which the next
            train-mode batch norm cancels, has a gradient that is zero up to ~1e-15, exactly
            zero in some entries and not in others depending on the summation order (the fused
            C++ batch norm and ATen's differ there); leaked gradient would be far larger."""
            flat = torch.cat([g.flatten() for g in grads])
            return flat[flat.abs() > 1e-12].sort().values

        torch.testing.assert_close(nonzero_sorted(used), nonzero_sorted(child_grads), rtol=1e-9, atol=1e-12)


def test_unchosen_vertices_ops_and_widths_get_no_gradient(space, generator):
    net = supernet(space, num_stacks=1)
    arch = torch.tensor(SPECIAL[2])  # kept vertices 0, 1, 2, 4, 6: vertex 3 and 5 pruned
    net(images(generator, ROWS), arch[None]).sum().backward()
    cell = net.layers[0]
    assert prune_cell(arch.tolist()).vertices == [0, 1, 2, 4, 6]
    for vertex in (3, 5):  # pruned: no projection or op of theirs ran
        assert all(p.grad is None for p in cell.projections[vertex - 1].parameters())
        assert all(p.grad is None for p in cell.operations[vertex - 1].parameters())
    conv1x1 = cell.operations[0][1]  # vertex 1 runs conv1x1; its conv3x3 does not
    assert all(p.grad is None for p in cell.operations[0][0].parameters())
    # Vertices 1 and 2 have width 8 (vertex 4 alone feeds the output, vertices 1, 2 take its
    # width): the batch norms of every other width get nothing.
    assert conv1x1.norms["8"].weight.grad is not None
    assert all(norm.weight.grad is None for width, norm in conv1x1.norms.items() if width != "8")


def test_sliced_weights_get_gradient_only_in_their_slice(space, generator):
    net = supernet(space, num_stacks=1)
    # Vertices 1, 2, 3 feed the output: widths 3, 3, 2 of 8 (the first ones take the remainder).
    arch = torch.tensor(tokens([(0, 1), (0, 2), (0, 3), (1, 6), (2, 6), (3, 6)], [0, 0, 1, 0, 0]))
    net(images(generator, ROWS), arch[None]).sum().backward()
    cell = net.layers[0]
    for vertex, width, label in ((1, 3, 0), (2, 3, 0), (3, 2, 1)):
        projection, operation = cell.projections[vertex - 1], cell.operations[vertex - 1][label]
        for weight, in_width in ((projection.weight, 8), (operation.weight, width)):
            assert weight.grad[:width, :in_width].abs().sum() > 0
            outside = weight.grad.clone()
            outside[:width, :in_width] = 0
            assert not outside.any()


def test_forwards_that_can_give_a_gradient_record_their_slices(space, generator):
    net = supernet(space, num_stacks=1)
    sliced = [m for m in net.modules() if isinstance(m, SlicedWeight)]
    arch = torch.tensor(tokens([(0, 1), (0, 2), (0, 3), (1, 6), (2, 6), (3, 6)], [0, 0, 1, 0, 0]))
    with torch.no_grad():  # evaluation, recalibration: nothing to update
        net(images(generator, ROWS), arch[None])
    assert take_used_slices(sliced) == {}
    net(images(generator, ROWS), arch[None])
    cell = net.layers[0]
    assert take_used_slices(sliced) == {  # widths 3, 3, 2 of 8 (test above)
        cell.projections[0].weight: [(slice(0, 3), slice(0, 8))],
        cell.projections[1].weight: [(slice(0, 3), slice(0, 8))],
        cell.projections[2].weight: [(slice(0, 2), slice(0, 8))],
        cell.operations[0][0].weight: [(slice(0, 3), slice(0, 3))],
        cell.operations[1][0].weight: [(slice(0, 3), slice(0, 3))],
        cell.operations[2][1].weight: [(slice(0, 2), slice(0, 2))],
    }
    assert take_used_slices(sliced) == {}  # taken: forgotten


def test_union_blocks_cover_the_union_of_the_slices_once():
    for slices in ([(3, 8), (8, 3)], [(2, 2), (5, 5), (5, 1)], [(4, 2), (1, 7), (3, 5), (4, 1)], [(6, 6)]):
        covered = torch.zeros(8, 8, dtype=torch.int64)
        for block in union_blocks(slices):
            covered[block] += 1
        union = torch.zeros(8, 8, dtype=torch.int64)
        for rows, columns in slices:
            union[:rows, :columns] = 1
        assert torch.equal(covered, union), slices
    assert union_blocks([(3, 8), (8, 3)]) == [(slice(0, 8), slice(0, 3)), (slice(0, 3), slice(3, 8))]
    assert union_blocks([(2, 2), (5, 5)]) == [(slice(0, 5), slice(0, 5))]


def test_invalid_architecture_is_an_error_naming_the_row(space, generator):
    net = supernet(space, num_stacks=1)
    archs = architectures(space, generator, 3)
    archs[1, : graph.NUM_EDGE_BITS] = 0  # no edge: the output is not reachable
    with pytest.raises(ValueError, match="row 1 .*not connected"):
        net(images(generator, 3 * ROWS), archs)
    with pytest.raises(ValueError, match="equal groups"):
        net(images(generator, 3 * ROWS + 1), archs)


def test_vertex_widths_cover_every_cell(space, generator):
    archs = torch.cat([torch.tensor(SPECIAL), space.sample(300, generator)])
    for out_channels in (8, 13, 16):
        widths = set(vertex_widths(out_channels))
        for arch in archs.tolist():
            channels = compute_vertex_channels(5, out_channels, prune_cell(arch).matrix)
            assert set(channels[1:-1]) <= widths


def test_too_few_stem_channels_and_unknown_options_are_errors(space):
    with pytest.raises(ValueError, match="stem_channels"):
        NASBench101Supernet(space, stem_channels=4)
    with pytest.raises(ValueError, match="modules_per_stack"):
        get_supernet(space, modules_per_stack=1)
