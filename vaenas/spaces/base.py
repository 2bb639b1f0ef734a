"""The protocol every search space implements (DESIGN §3).

An architecture is a fixed-length string of T tokens; position t has its own vocabulary of
`vocab_sizes[t]` tokens. Batched forms take and return LongTensor[N, T]. Spaces depend on nothing
else of vaenas; DecodeConstraints, defined here, is what a space
hands to the VAE decode op (vaenas.ops.vae_decode).
"""

from __future__ import annotations

import abc
import functools
import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class DecodeConstraints:
    """The constraints of a search space that the decode applies in its pass.

    vocab_sizes [T] int64: tokens k >= vocab_sizes[t] are never produced at position t.
    budget_mask [T] bool, budget_max: at most `budget_max` non-zero tokens over the positions of
      budget_mask (NAS-Bench-101: at most 9 of the 21 edge bits set). budget_max < 0: no budget.
    """

    vocab_sizes: Tensor
    budget_mask: Tensor
    budget_max: int = -1

    def __post_init__(self) -> None:
        if self.budget_max < 0 and bool(self.budget_mask.any()):
            # "no budget": the decode op would otherwise read budget_max < 0 as an exhausted budget.
            object.__setattr__(self, "budget_mask", torch.zeros_like(self.budget_mask))

    @staticmethod
    def vocabulary_only(vocab_sizes: list[int] | tuple[int, ...]) -> "DecodeConstraints":
        sizes = torch.tensor(vocab_sizes, dtype=torch.long)
        return DecodeConstraints(sizes, torch.zeros(len(sizes), dtype=torch.bool), -1)

    def to(self, device: torch.device) -> "DecodeConstraints":
        return DecodeConstraints(self.vocab_sizes.to(device), self.budget_mask.to(device), self.budget_max)


class SearchSpace(abc.ABC):
    """A search space: encoding, validity, uniform sampling, variation operators, children, cost."""

    #: short identifier used in configs and JSON ("nasbench101", "nasbench201", "nasnet", "shufflenet")
    name: str
    #: number of tokens at each position
    vocab_sizes: tuple[int, ...]
    #: the token of the `none` op at every position (a zero layer: the edge adds nothing), in
    #: spaces that have one; the gradient search skips a logit update where the path takes it
    zero_token: int | None = None

    @property
    def length(self) -> int:
        """T, the number of positions."""
        return len(self.vocab_sizes)

    # --- validity -----------------------------------------------------------------------------
    def check_tokens(self, archs: Tensor) -> Tensor:
        """archs as LongTensor[N, T]; ValueError naming the row, position and value of a bad token."""
        archs = torch.as_tensor(archs)
        if archs.dim() == 1:
            archs = archs[None]
        if archs.dim() != 2 or archs.shape[1] != self.length:
            raise ValueError(f"{self.name}: an architecture has {self.length} tokens, got shape {tuple(archs.shape)}")
        if archs.dtype.is_floating_point or archs.dtype == torch.bool:
            raise ValueError(f"{self.name}: architecture tokens must be integers, got {archs.dtype}")
        archs = archs.long()
        limits = torch.tensor(self.vocab_sizes)
        bad = (archs < 0) | (archs >= limits)
        if bad.any():
            row, position = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{self.name}: invalid token {int(archs[row, position])} at position {position} "
                f"({self.position_name(position)}) of architecture {row}: allowed 0..{self.vocab_sizes[position] - 1}"
            )
        return archs

    @abc.abstractmethod
    def is_valid(self, archs: Tensor) -> Tensor:
        """BoolTensor[N]: which rows of LongTensor[N, T] are valid architectures of the space."""

    def check_valid(self, archs: Tensor, operation: str) -> Tensor:
        """archs as LongTensor[N, T] (check_tokens); ValueError naming `operation`, the first
        invalid row and why it is invalid, unless every row is a valid architecture."""
        archs = self.check_tokens(archs)
        valid = self.is_valid(archs)
        if not bool(valid.all()):
            row = int((~valid).nonzero()[0])
            raise ValueError(
                f"{self.name}: {operation} needs valid architectures; row {row} is not: "
                f"{self.invalid_reason(archs[row])}"
            )
        return archs

    def validate(self, arch: Tensor) -> Tensor:
        """One architecture [T]; ValueError that names the problem if it is not valid."""
        arch = self.check_tokens(arch)
        reason = self.invalid_reason(arch[0])
        if reason is not None:
            raise ValueError(f"{self.name}: invalid architecture {arch[0].tolist()}: {reason}")
        return arch[0]

    def invalid_reason(self, arch: Tensor) -> str | None:
        """Why one architecture [T] (tokens in range) is invalid, or None when it is valid."""
        return None if bool(self.is_valid(arch[None])[0]) else "it violates the space's constraints"

    def position_name(self, position: int) -> str:
        """Human name of a position, used in error messages."""
        return f"position {position}"

    # --- sampling and variation ---------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n architectures drawn from the space's uniform sampler U(α): LongTensor[n, T], all valid."""

    @abc.abstractmethod
    def mutate(self, archs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One valid mutant of each row of archs [N, T]."""

    @abc.abstractmethod
    def crossover(self, parents_a: Tensor, parents_b: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One valid child of each pair of rows of parents_a, parents_b [N, T]."""

    def decode_constraints(self) -> DecodeConstraints:
        """Constraints the VAE decode applies in its pass; the rest is checked by is_valid."""
        return DecodeConstraints.vocabulary_only(self.vocab_sizes)

    def canonical_key(self, archs: Tensor) -> list[Any]:
        """One hashable key per row; two rows with equal keys are the same network (dedup)."""
        return [tuple(row) for row in archs.tolist()]

    # --- serialisation ------------------------------------------------------------------------
    @abc.abstractmethod
    def to_json(self, arch: Tensor) -> dict:
        """A JSON-serialisable description of one architecture [T] (human-readable)."""

    @abc.abstractmethod
    def from_json(self, data: dict | str) -> Tensor:
        """Inverse of to_json: LongTensor[T]; ValueError naming the problem on bad input."""

    def dumps(self, arch: Tensor) -> str:
        return json.dumps(self.to_json(arch))

    # --- child networks and cost --------------------------------------------------------------
    @abc.abstractmethod
    def build_child(self, arch: Tensor, **options: Any) -> nn.Module:
        """The standalone network of one architecture, for retraining."""

    #: how many distinct architectures (canonical keys) the space holds; counts of distinct
    #: architectures asked for (an evolution's budget) must not exceed it
    num_architectures: int

    #: defaults of build_child's options, set by spaces whose children take any
    child_options: dict[str, Any] = {}

    def canonical_child_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """options with equivalent spellings made one (e.g. NASNet's reductions=None and the indices it
        stands for), so that tables keyed by them match; the default: options as given."""
        return options

    def child_settings(self, options: dict[str, Any]) -> dict[str, Any]:
        """child_options overridden by `options`; ValueError naming any unknown option."""
        unknown = set(options) - set(self.child_options)
        if unknown:
            raise ValueError(f"{self.name}: unknown child options {sorted(unknown)}; known: {sorted(self.child_options)}")
        return {**self.child_options, **options}

    @abc.abstractmethod
    def example_input(self, batch_size: int = 1) -> Tensor:
        """A random input of the child networks' resolution, for FLOP counting."""

    def cost(self, arch: Tensor, image_size: int | None = None, **options: Any) -> dict[str, float]:
        """{'params': trainable parameters, 'flops': forward FLOPs of one image} of the network
        build_child(arch, **options) on one image of side `image_size` (None: example_input's);
        cached. A search passes its supernet's child options and its data's image size, so this
        is the cost of the network it exports (vaenas.supernet.Supernet.child_options)."""
        arch = self.validate(arch)
        return dict(self._cached_cost(tuple(arch.tolist()), image_size, _frozen(options)))

    def cost_model(self, image_size: int | None = None, **options: Any) -> Any:
        """The exact batched form of cost(): a model whose costs(archs [N, T]) -> float64 [N, 2] equals
        cost() row by row in microseconds, without building networks (vaenas.spaces.cost_table)."""
        from vaenas.spaces.cost_table import cost_model

        return cost_model(self, image_size, **options)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (spaces are few and long-lived)
    def _cached_cost(
        self, arch: tuple[int, ...], image_size: int | None, options: tuple[tuple[str, Any], ...]
    ) -> tuple[tuple[str, float], ...]:
        from torch.utils.flop_counter import FlopCounterMode

        model = self.build_child(torch.tensor(arch), **dict(options)).eval()
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        example = self.example_input(1)
        if image_size is not None:
            example = torch.randn(1, example.shape[1], image_size, image_size)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
        return (("params", float(params)), ("flops", float(counter.get_total_flops())))


def _frozen(options: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """options as a hashable cache key: sorted items, lists as tuples (NASNet's reductions)."""
    def hashable(value: Any) -> Any:
        return tuple(hashable(v) for v in value) if isinstance(value, (list, tuple)) else value

    return tuple(sorted((key, hashable(value)) for key, value in options.items()))
