"""Cost tables: an architecture's params and FLOPs as a sum of table lookups, batched over [N, T].

`SearchSpace.cost` builds the child network and counts it (tens of ms per architecture). A cost table
is counted once per (space, child options, image size) from a few probe children and then costs
LongTensor[N, T] in microseconds per architecture, exactly: its params and FLOPs equal
`space.cost(arch, image_size, **options)` for every architecture (tests/spaces/test_cost_table.py).

    table = cost_model(space, image_size=32, C=16, layers=8)   # cached per space, options, size
    table.costs(archs)            # float64 [N, 2]: params, FLOPs (one image) of each row
    table.cost(arch)              # {'params': ..., 'flops': ...}, like space.cost
    table.expected(probabilities) # [2]: differentiable expected cost of independent positions

The additive form (CostTable), for NAS-Bench-201, NASNet and ShuffleNet:

    cost(arch) = fixed + sum_t choices[t, arch[t]] + sum_g groups_active(arch)[g] * group_costs[g]

`fixed` is every part no token changes (stem, reductions between stages, head); `choices[t, k]` the
summed cost of candidate k at position t over every layer that reads position t (NAS-Bench-201's cell
is repeated in every stage, a NASNet normal-cell edge in every normal cell); group g is a part that
exists when any of its positions holds a token other than `none` (NASNet's preprocessing of a cell
input that some edge reads). Entries are counted in place: each probe child (every position holding
candidate k) runs one image under FlopCounterMode, and each candidate module's FLOPs and parameters
are read at its own input shape; `fixed` is what remains, and must be the same in every probe (an
internal check that the space is additive).

NAS-Bench-101 has no additive table: a vertex's channels depend on how many vertices feed the output
and on the edges between them (nasbench101_network.compute_vertex_channels), so no token costs the same
in every cell. NASBench101Costs evaluates the exact closed form of the pruned cell instead, batched
over N with tensor ops (the same quantities, still microseconds per architecture); it has no
`expected` (a softmax over edge bits has no per-token cost to weight).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from vaenas.spaces.base import SearchSpace

#: the cost columns of every table, in order
COST_KEYS = ("params", "flops")


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


def settings_key(space: SearchSpace, image_size: int | None, options: dict[str, Any]) -> tuple:
    """The cache key of a table: the space, its child options overridden by `options`, the image side."""
    size = int(space.example_input(1).shape[-1]) if image_size is None else int(image_size)
    merged = space.canonical_child_options({**space.child_options, **options})
    return (space.name, size, tuple(sorted((key, _hashable(value)) for key, value in merged.items())))


class _Costed:
    """What both table forms share: validation, one-architecture dicts."""

    space: SearchSpace
    key: tuple
    #: the name of each cost column
    keys: tuple[str, ...] = COST_KEYS

    def costs(self, archs: Tensor, check: bool = True) -> Tensor:
        raise NotImplementedError

    def cost(self, arch: Tensor) -> dict[str, float]:
        """{'params', 'flops'} of one architecture [T], as space.cost returns them (a latency table: its keys)."""
        row = self.costs(torch.as_tensor(arch).reshape(1, -1))[0]
        return {key: float(value) for key, value in zip(self.keys, row.tolist())}

    def _checked(self, archs: Tensor, check: bool) -> Tensor:
        archs = torch.as_tensor(archs)
        if not check:
            return archs.reshape(-1, self.space.length).long()
        return self.space.check_valid(archs, "a cost lookup")

    @property
    def image_size(self) -> int:
        return self.key[1]


@dataclass(frozen=True, eq=False)
class CostTable(_Costed):
    """The additive cost table of a space at one setting (see the module docstring), float64 throughout.

    fixed [K]; choices [T, V, K] (V = the largest vocabulary; entries past a position's vocabulary are
    0 and never read); groups [G, T] bool; group_costs [G, K]; K = len(keys) (COST_KEYS: params, FLOPs;
    a latency table, vaenas.spaces.latency: milliseconds).
    """

    space: SearchSpace
    key: tuple
    fixed: Tensor
    choices: Tensor
    groups: Tensor
    group_costs: Tensor
    #: the token whose choice builds nothing (NASNet's `none`); groups count only other tokens
    zero_token: int | None = None
    #: the name of each cost column (a latency table has its own)
    keys: tuple[str, ...] = COST_KEYS

    def costs(self, archs: Tensor, check: bool = True) -> Tensor:
        """float64 [N, K]: params and FLOPs of each row of LongTensor[N, T]; check=False skips the token
        and validity checks (for callers that hold valid architectures, e.g. inside a search)."""
        archs = self._checked(archs, check)
        positions = torch.arange(archs.shape[1])
        total = self.choices[positions, archs].sum(dim=1) + self.fixed
        if self.groups.shape[0]:
            live = archs != self.zero_token
            active = (live[:, None, :] & self.groups[None]).any(dim=2).to(total.dtype)  # [N, G]
            total = total + active @ self.group_costs
        return total

    def expected(self, probabilities: Tensor) -> Tensor:
        """[K]: E[cost] when position t takes token k with probability probabilities[t, k] independently
        (rows sum to 1; e.g. a softmax of architecture logits). Exact for this table: a group's part
        exists with probability 1 - prod over its positions of P(zero token). Differentiable; the
        result has the probabilities' dtype."""
        length, width = self.choices.shape[:2]
        if probabilities.dim() != 2 or probabilities.shape[0] != length or probabilities.shape[1] > width:
            raise ValueError(f"{self.space.name}: expected-cost probabilities must be [{length}, <= {width}], "
                             f"got {tuple(probabilities.shape)}")
        choices = self.choices[:, : probabilities.shape[1]].to(probabilities)
        total = (probabilities[:, :, None] * choices).sum(dim=(0, 1)) + self.fixed.to(probabilities)
        if self.groups.shape[0]:
            zero = probabilities[:, self.zero_token]  # [T]
            none_in_group = torch.where(self.groups, zero[None], torch.ones_like(zero)[None]).prod(dim=1)
            total = total + (1.0 - none_in_group) @ self.group_costs.to(probabilities)
        return total


# --- counting probe children ---------------------------------------------------------------------
def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def network_cost(model: nn.Module, image_size: int, in_channels: int = 3) -> Tensor:
    """float64 [K]: trainable parameters and FLOPs (FlopCounterMode, eval mode) of one image; run on the
    meta device when the model is there (shapes only: FLOPs depend on nothing else)."""
    model = model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, in_channels, image_size, image_size, device=device))
    return torch.tensor([_params(model), counter.get_total_flops()], dtype=torch.float64)


def part_costs(model: nn.Module, image_size: int, names: list[str], in_channels: int = 3) -> dict[str, Tensor]:
    """{name: float64 [K]}: params and FLOPs of the named submodules, each counted in place: one plain
    forward of one random image (on the model's device; "meta" propagates shapes only) records every part's inputs, then each part runs alone on them under
    FlopCounterMode. Parts with the same structure (repr) and input shapes are counted once (a cell's
    edge repeats across cells and probes), which keeps a table of a 20-cell NASNet to a few seconds."""
    model = model.eval()
    device = next(model.parameters()).device
    inputs: dict[str, tuple] = {}
    hooks = [model.get_submodule(name).register_forward_pre_hook(
        lambda _module, args, name=name: inputs.setdefault(name, tuple(
            a.detach().clone() if isinstance(a, Tensor) else a for a in args))) for name in names]
    try:
        with torch.no_grad():
            model(torch.randn(1, in_channels, image_size, image_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    costs = {}
    for name in names:
        module, args = model.get_submodule(name), inputs.get(name)
        if args is None:
            raise RuntimeError(f"part {name} of {type(model).__name__} did not run in the forward")
        signature = (repr(module), tuple(tuple(a.shape) if isinstance(a, Tensor) else a for a in args))
        if signature not in _PART_CACHE:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                module(*args)
            _PART_CACHE[signature] = torch.tensor([_params(module), counter.get_total_flops()], dtype=torch.float64)
        costs[name] = _PART_CACHE[signature]
    return costs


_PART_CACHE: dict[tuple, Tensor] = {}


@dataclass(frozen=True)
class TableLayout:
    """Where a space's token-dependent parts sit in its child (what a cost or latency table is built from).

    probes: {token k: an architecture with k at every position} (tokens that build nothing are left out);
    places(module name) -> ('choice', position) | ('group', g) | None: the modules that depend on a token
    (None: the rest, the fixed part); groups [G, T] bool: the positions whose non-zero tokens build group g.
    """

    probes: dict[int, Tensor]
    places: Callable[[str], tuple[str, int] | None]
    groups: Tensor


def located_parts(model: nn.Module, layout: TableLayout) -> list[tuple[str, tuple[str, int]]]:
    """(module name, place) of every module of a probe child that depends on a token."""
    named = [(name, layout.places(name)) for name, _ in model.named_modules()]
    return [(name, place) for name, place in named if place is not None]


def _additive_table(space: SearchSpace, key: tuple, layout: TableLayout, options: dict[str, Any]) -> CostTable:
    """Count the probe child of each token and fold its parts into a table; the rest of the network is
    `fixed`, counted once on the probe with the fewest modules (the whole network under FlopCounterMode,
    minus its parts). The parts built for any token (groups) must agree between probes."""
    width = max(space.vocab_sizes)
    choices = torch.zeros(space.length, width, len(COST_KEYS), dtype=torch.float64)
    group_costs = torch.zeros(layout.groups.shape[0], len(COST_KEYS), dtype=torch.float64)
    fixed, smallest = None, None
    for token, arch in layout.probes.items():
        model = space.build_child(arch, **options).to("meta")  # its forwards only propagate shapes
        named = located_parts(model, layout)
        parts = part_costs(model, key[1], [name for name, _ in named])
        groups_here = torch.zeros_like(group_costs)
        for name, (kind, index) in named:
            if kind == "choice":
                choices[index, token] += parts[name]
            else:
                groups_here[index] += parts[name]
        if fixed is None:
            group_costs = groups_here
        elif not torch.equal(group_costs, groups_here):
            raise RuntimeError(f"{space.name}: the probe children disagree on the parts built for any token "
                               f"({group_costs.tolist()} vs {groups_here.tolist()}): the cost is not additive")
        size = sum(1 for _ in model.modules())
        if smallest is None or size < smallest:
            variable = sum(parts.values(), torch.zeros(len(COST_KEYS), dtype=torch.float64))
            fixed, smallest = network_cost(model, key[1]) - variable, size
    return CostTable(space, key, fixed, choices, layout.groups, group_costs, getattr(space, "zero_token", None))


def _every_token(space: SearchSpace, skip: tuple[int, ...] = ()) -> dict[int, Tensor]:
    return {k: torch.full((space.length,), k) for k in range(space.vocab_sizes[0]) if k not in skip}


def _nasbench201_layout(space: SearchSpace, options: dict[str, Any]) -> TableLayout:
    from vaenas.spaces.nasbench201 import InferCell

    probes = _every_token(space)
    model = space.build_child(probes[1], **options)
    cells = {name for name, module in model.named_modules() if isinstance(module, InferCell)}

    def places(name: str) -> tuple[str, int] | None:
        parent, _, rest = name.rpartition(".layers.")
        return ("choice", int(rest)) if parent in cells and rest.isdigit() else None

    return TableLayout(probes, places, torch.zeros(0, space.length, dtype=torch.bool))


def _shufflenet_layout(space: SearchSpace, options: dict[str, Any]) -> TableLayout:
    def places(name: str) -> tuple[str, int] | None:
        head, _, rest = name.partition(".")
        return ("choice", int(rest)) if head == "features" and rest.isdigit() else None

    return TableLayout(_every_token(space), places, torch.zeros(0, space.length, dtype=torch.bool))


def _nasnet_layout(space: SearchSpace, options: dict[str, Any]) -> TableLayout:
    from vaenas.spaces import nasnet

    settings = space.child_settings(options)
    reductions = set(nasnet.reduction_cells(settings["layers"], settings["reductions"]))

    def places(name: str) -> tuple[str, int] | None:
        parts = name.split(".")
        if parts[0] != "cells" or len(parts) not in (3, 4):
            return None
        cell_type = int(int(parts[1]) in reductions)
        if len(parts) == 3 and parts[2] in ("preprocess0", "preprocess1"):
            return "group", 2 * cell_type + int(parts[2][-1])
        if len(parts) == 4 and parts[2] == "edges":
            node, predecessor = (int(piece) for piece in parts[3].removeprefix("node").split("_from"))
            return "choice", nasnet.edge_position(cell_type, node, predecessor)
        return None

    # group 2c + i: the edges of cell type c that read cell input i (predecessor i of every node)
    groups = torch.zeros(2 * len(nasnet.CELLS), space.length, dtype=torch.bool)
    for cell_type in range(len(nasnet.CELLS)):
        for node in range(nasnet.NODES):
            for predecessor in range(2):
                groups[2 * cell_type + predecessor, nasnet.edge_position(cell_type, node, predecessor)] = True
    return TableLayout(_every_token(space, skip=(nasnet.OPS.index("none"),)), places, groups)


_LAYOUTS = {"nasbench201": _nasbench201_layout, "shufflenet": _shufflenet_layout, "nasnet": _nasnet_layout}


def table_layout(space: SearchSpace, **options: Any) -> TableLayout:
    """The TableLayout of build_child(arch, **options); ValueError for a space without an additive table."""
    if space.name not in _LAYOUTS:
        raise ValueError(f"{space.name}: no additive table (a cell's channels depend on its whole graph); "
                         f"spaces with one: {', '.join(sorted(_LAYOUTS))}")
    return _LAYOUTS[space.name](space, options)


_CACHE: dict[tuple, _Costed] = {}


def cost_model(space: SearchSpace, image_size: int | None = None, **options: Any) -> CostTable | Any:
    """The exact batched cost model of build_child(arch, **options) on one image of side image_size
    (None: example_input's): a CostTable, or NASBench101Costs for NAS-Bench-101. Counted on first use
    (a few probe children, about a second for NASNet), then cached per space name, options and size."""
    key = settings_key(space, image_size, options)
    if key in _CACHE:
        return _CACHE[key]
    # building probe children initialises weights from the global RNG: a search's random streams must not
    # depend on whether a table was already cached in this process (bit-for-bit resumes)
    with torch.random.fork_rng(devices=[]):
        if space.name == "nasbench101":
            from vaenas.spaces.nasbench101_cost import NASBench101Costs

            _CACHE[key] = NASBench101Costs(space, key, options)
        elif space.name in _LAYOUTS:
            _CACHE[key] = _additive_table(space, key, table_layout(space, **options), options)
        else:
            raise ValueError(f"no cost table for space {space.name!r}: known {sorted([*_LAYOUTS, 'nasbench101'])}")
    return _CACHE[key]
