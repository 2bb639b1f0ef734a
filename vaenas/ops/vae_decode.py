"""vaenas.ops.vae_decode: batched autoregressive LSTM decode of latent vectors into architectures.

The specification is vaenas.ops.reference.vae_decode. Backends: reference (pure PyTorch), cpu
(C++, csrc/cpu), cuda (csrc/cuda), triton (kernels/vae_decode.py), chosen by vaenas.ops._dispatch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from vaenas import _extension
from vaenas.ops import reference
from vaenas.ops._dispatch import choose_backend
from vaenas.spaces.base import DecodeConstraints

IMPLEMENTED_BACKENDS = ("reference", "cpu", "cuda", "triton")


def _vae_decode_fake(
    z: Tensor, latent_weight: Tensor, latent_bias: Tensor, input_table: Tensor, weight_hh: Tensor,
    weight_out: Tensor, bias_out: Tensor, vocab_sizes: Tensor, budget_mask: Tensor, budget_max: int,
    uniforms: Tensor | None, temperature: float, greedy: bool, seed: int,
) -> tuple[Tensor, Tensor]:
    """The outputs' shapes and dtypes without computing them (torch.compile, opcheck)."""
    tokens = z.new_empty((z.shape[0], vocab_sizes.shape[0]), dtype=torch.long)
    return tokens, z.new_empty((z.shape[0],), dtype=torch.float32)


if _extension.available():  # the schema exists only once vaenas._C is loaded
    torch.library.register_fake("vaenas::vae_decode")(_vae_decode_fake)


@dataclass(frozen=True)
class DecoderWeights:
    """The decoder's parameters in the form the op takes, fields in the op's argument order (see
    reference.vae_decode for shapes)."""

    latent_weight: Tensor  # [H, d]
    latent_bias: Tensor  # [H]
    input_table: Tensor  # [1 + sum(vocab), 4H]: start row, then one row per (position, token)
    weight_hh: Tensor  # [4H, H]
    weight_out: Tensor  # [T, V, H]
    bias_out: Tensor  # [T, V]


def _as_float32(name: str, tensor: Tensor | None) -> Tensor | None:
    """tensor as float32 (None stays None); ValueError naming it unless its dtype is floating."""
    if tensor is None:
        return None
    if not tensor.dtype.is_floating_point:
        raise ValueError(f"vae_decode: {name} must be a floating-point tensor, got {tensor.dtype}")
    return tensor.float()


def vae_decode(
    z: Tensor,
    weights: DecoderWeights,
    constraints: DecodeConstraints,
    *,
    greedy: bool = False,
    temperature: float = 1.0,
    uniforms: Tensor | None = None,
    seed: int = 0,
    backend: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Decode z [M, d] into tokens [M, T] int64 and their log-probability [M] float32.

    Sampled decode draws its randomness from `uniforms` [M, T] when given (every backend then
    returns the same tokens), else from `seed`. `backend` forces one backend (DESIGN §2).

    Dtypes, the same for every backend: the op computes in float32, so z, the weights and
    uniforms may have any floating dtype and are converted to float32 here (a float64 z gives
    exactly what z.float() gives); any of them with another dtype is a ValueError that names it.
    """
    if z.dim() != 2:
        raise ValueError(f"z must be [M, d], got shape {tuple(z.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if uniforms is not None and uniforms.shape != (z.shape[0], constraints.vocab_sizes.shape[0]):
        raise ValueError(
            f"uniforms must be [M, T] = [{z.shape[0]}, {constraints.vocab_sizes.shape[0]}], got {tuple(uniforms.shape)}"
        )
    chosen = choose_backend("vae_decode", z.device, backend, IMPLEMENTED_BACKENDS)
    constraints = constraints.to(z.device)
    # The reference converts on its own and the C++ kernels reject anything but float32; doing it
    # here gives every backend one contract (.float() of a float32 tensor is a no-op).
    decoder = [_as_float32(field.name, getattr(weights, field.name)) for field in dataclasses.fields(weights)]
    arguments = (
        _as_float32("z", z), *decoder, constraints.vocab_sizes, constraints.budget_mask, constraints.budget_max,
        _as_float32("uniforms", uniforms), float(temperature), bool(greedy), int(seed),
    )
    if chosen == "reference":
        return reference.vae_decode(*arguments)
    if chosen in ("cpu", "cuda"):  # the dispatcher picks the C++ or CUDA kernel by device
        return torch.ops.vaenas.vae_decode(*arguments)
    from vaenas.kernels.vae_decode import vae_decode_triton

    return vae_decode_triton(*arguments)
