"""The one-shot mixture Γ = (1-ε)·U + ε·p_θ (paper eq. 5, Algorithm 2 lines 1, 3 and 11)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from vaenas.sampler.uniform import AcceptFn, UniformSampler
from vaenas.sampler.vae import VAESampler
from vaenas.spaces.base import SearchSpace

logger = logging.getLogger(__name__)


class MixtureSampler:
    """Each row comes from the VAE with probability ε, else from the uniform sampler.

    ε starts at `epsilon` and step() raises it by `epsilon_inc`, capped at `epsilon_max`;
    ValueError if epsilon > epsilon_max.
    After sample(), `last_from_vae` (BoolTensor[n]) says which rows the VAE produced.
    """

    def __init__(
        self,
        uniform: UniformSampler,
        vae: VAESampler,
        epsilon: float = 0.0,
        epsilon_inc: float = 0.1,
        epsilon_max: float = 1.0,
    ) -> None:
        if uniform.space.name != vae.space.name:
            raise ValueError(f"the samplers cover different spaces: {uniform.space.name} and {vae.space.name}")
        self.uniform, self.vae = uniform, vae
        self._set_schedule(epsilon, epsilon_inc, epsilon_max)
        self.last_from_vae = torch.zeros(0, dtype=torch.bool)

    def _set_schedule(self, epsilon: float, epsilon_inc: float, epsilon_max: float) -> None:
        for name, value in (("epsilon", epsilon), ("epsilon_max", epsilon_max)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if epsilon_inc < 0:
            raise ValueError(f"epsilon_inc must be >= 0, got {epsilon_inc}")
        # step() would silently lower such an ε to the cap: a schedule that decreases is a mistake
        if epsilon > epsilon_max:
            raise ValueError(f"epsilon {epsilon:g} exceeds epsilon_max {epsilon_max:g}: ε starts at or below its cap")
        self.epsilon, self.epsilon_inc, self.epsilon_max = float(epsilon), float(epsilon_inc), float(epsilon_max)

    @property
    def space(self) -> SearchSpace:
        return self.uniform.space

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        accept: AcceptFn | None = None,
        max_rounds: int = 20,
    ) -> Tensor:
        """n architectures from Γ, LongTensor[n, T], rows in the order of the per-row coin flips."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        from_vae = torch.rand(n, generator=generator) < self.epsilon
        archs = torch.empty(n, self.space.length, dtype=torch.long)
        n_vae = int(from_vae.sum())
        # a component with no rows is not called, so ε = 0 never touches the (untrained) VAE
        if n_vae:
            archs[from_vae] = self.vae.sample(n_vae, generator, temperature, accept, max_rounds)
        if n_vae < n:
            archs[~from_vae] = self.uniform.sample(n - n_vae, generator, accept, max_rounds)
        self.last_from_vae = from_vae
        return archs

    def step(self) -> float:
        """ε ← min(ε + ε_inc, ε_max) (Algorithm 2 line 11); returns the new ε."""
        self.epsilon = min(self.epsilon + self.epsilon_inc, self.epsilon_max)
        return self.epsilon

    def state_dict(self) -> dict[str, Any]:
        """ε and its schedule; the VAE's own state is checkpointed by vae.state_dict()."""
        return {"epsilon": self.epsilon, "epsilon_inc": self.epsilon_inc, "epsilon_max": self.epsilon_max}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._set_schedule(float(state["epsilon"]), float(state["epsilon_inc"]), float(state["epsilon_max"]))
