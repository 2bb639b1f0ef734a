"""Triton backend of vaenas.ops.vae_decode: the whole autoregressive decode in one launch.

The specification is vaenas.ops.reference.vae_decode (read it first); this file only says how
the same algorithm maps onto a GPU. One program decodes BLOCK_M rows for all T positions:

  - h and c live in registers for the whole decode ([BLOCK_M, HIDDEN_TILE] float32 each). The
    gate products need h in K slices (weight_hh.T must be staged in shared memory in slices:
    whole, it is 256 KiB at H = 256), and register tensors cannot be sliced, so each step also
    writes h to the program's own rows of a scratch buffer and reads the slices back
    (8 * BLOCK_M * H bytes per step, from L1/L2; the products are 8 * BLOCK_M * H * H flops).
  - per step, the four gate products h @ weight_hh[g].T and the head h @ weight_out[t].T are
    tl.dot calls. tl.dot needs every dimension >= 16, so H, V and d are padded to power-of-two
    tiles of at least 16 with masked (zero) loads; the padding rows and columns stay exactly 0
    and are masked out of the softmax.
  - the products run in IEEE float32 (input_precision="ieee"): TF32 keeps 10 mantissa bits
    (relative error up to 5e-4 per input), enough to flip near-tied greedy and sampled tokens
    against the float32 reference.
  - masking, the NAS-Bench-101 edge budget, first-maximum argmax and first-exceeding inverse-CDF
    sampling follow the reference exactly.

Randomness: with `uniforms` given, every backend returns the same tokens (up to a uniform that
falls within float rounding of a cumulative-probability boundary). With `uniforms=None` the
kernel draws u[m, t] = tl.rand(seed, m * T + t) (Philox), a different stream from the
reference's torch.rand(generator seeded with `seed`): the same seed gives different but equally
distributed tokens on the two backends, and the same tokens on every call of this backend.

Not differentiable: log_prob is returned for scoring and REINFORCE-style use, with no autograd
formula (the VAE trains its decoder with teacher forcing, not through this op).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from vaenas.ops.reference import token_offsets


def _configs() -> list[triton.Config]:
    """Block sizes tried by the autotuner: one in tests, a few on a GPU otherwise.

    The interpreter runs each program as numpy calls, so one large block is fastest there
    (~0.6 s per 67 x 26 decode on 2 cores) and autotuning would only repeat the decode. Tests on
    a GPU set VAENAS_TRITON_AUTOTUNE=0 (tests/conftest.py) for one config as well: each of their
    many shape variants would otherwise compile and time every config (the Fast-LLM convention).
    Otherwise the best BLOCK_M trades parallelism (M / BLOCK_M programs) against registers
    (c, h and the four gate accumulators are 6 * BLOCK_M * HIDDEN_TILE floats); the tuner picks
    per (H, M) among the configs _prune_configs keeps. The choice reads the environment when
    this module is imported; it never queries the GPU.

    num_stages=1: software pipelining multi-buffers the weight_hh slices in shared memory; at
    H = 256 (BLOCK_M 16, compiled offline for sm_90 with Triton 3.8) that took 520 KiB, over an
    H100's 228 KiB, against 68 KiB unpipelined.
    """
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return [triton.Config({"BLOCK_M": 64}, num_warps=4)]
    if os.environ.get("VAENAS_TRITON_AUTOTUNE", "1") == "0":
        return [triton.Config({"BLOCK_M": 16}, num_warps=4, num_stages=1)]
    return [
        triton.Config({"BLOCK_M": 16}, num_warps=4, num_stages=1),
        triton.Config({"BLOCK_M": 16}, num_warps=8, num_stages=1),
        triton.Config({"BLOCK_M": 32}, num_warps=4, num_stages=1),
        triton.Config({"BLOCK_M": 64}, num_warps=4, num_stages=1),
    ]


def _prune_configs(configs: list[triton.Config], named_args: dict, **kwargs: object) -> list[triton.Config]:
    """Drop blocks whose six [BLOCK_M, HIDDEN_TILE] float32 tiles (h, c and the four gates) need
    more than ~160 registers per thread (H = 256: only BLOCK_M 16 at 8 warps stays)."""
    hidden_tile = _tile(named_args["hidden"])
    kept = [
        config for config in configs
        if config.kwargs["BLOCK_M"] * hidden_tile * 6 <= 160 * 32 * config.num_warps
    ]
    return kept or configs[:1]


def _tile(size: int) -> int:
    """Power-of-two tile >= size and >= 16 (the smallest tl.dot dimension)."""
    return max(16, triton.next_power_of_2(size))


# The recurrence product runs over K chunks of this width: a [BLOCK_K, HIDDEN_TILE] float32
# slice of weight_hh.T is staged in shared memory per gate, 64 KiB at H = 256, where the whole
# [256, 256] matrix (256 KiB) would exceed the 228 KiB of an H100 SM.
MAX_BLOCK_K = 64


@triton.jit
def _gate_product(h_chunk, weight_hh_ptr, gate: tl.constexpr, k_start, hidden, k_chunk, hidden_cols, col_ok):
    """h[:, k_start : k_start + BLOCK_K] @ weight_hh[gate*H : (gate+1)*H, k_start : k_start + BLOCK_K].T"""
    k_rows = k_start + k_chunk
    # weight_hh_t[k, j] = weight_hh[gate * H + j, k]
    weight_hh_t = tl.load(weight_hh_ptr + (gate * hidden + hidden_cols[None, :]) * hidden + k_rows[:, None],
                          mask=(k_rows[:, None] < hidden) & col_ok[None, :], other=0.0).to(tl.float32)
    return tl.dot(h_chunk, weight_hh_t, input_precision="ieee")


@triton.autotune(
    # not keyed on num_rows: every new M would re-run the tuning (4 configs, timed with repeats)
    configs=_configs(), key=["hidden", "latent", "max_vocab"], prune_configs_by={"early_config_prune": _prune_configs}
)
@triton.jit
def _vae_decode_kernel(
    z_ptr, latent_weight_ptr, latent_bias_ptr, input_table_ptr, weight_hh_ptr, weight_out_ptr,
    bias_out_ptr, vocab_sizes_ptr, offsets_ptr, budget_mask_ptr, uniforms_ptr, tokens_ptr, log_prob_ptr,
    h_buffer_ptr,
    num_rows, latent, hidden, max_vocab, positions, budget_max, temperature, seed,
    LATENT_TILE: tl.constexpr, HIDDEN_TILE: tl.constexpr, VOCAB_TILE: tl.constexpr,
    BLOCK_K: tl.constexpr, GREEDY: tl.constexpr, GIVEN_UNIFORMS: tl.constexpr, BLOCK_M: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < num_rows
    rows64 = rows.to(tl.int64)
    hidden_cols = tl.arange(0, HIDDEN_TILE)
    col_ok = hidden_cols < hidden
    latent_cols = tl.arange(0, LATENT_TILE)
    vocab = tl.arange(0, VOCAB_TILE)

    # h_0 = tanh(z @ latent_weight.T + latent_bias), c_0 = 0
    z = tl.load(z_ptr + rows64[:, None] * latent + latent_cols[None, :],
                mask=row_ok[:, None] & (latent_cols[None, :] < latent), other=0.0).to(tl.float32)
    latent_weight_t = tl.load(latent_weight_ptr + hidden_cols[None, :] * latent + latent_cols[:, None],
                              mask=(latent_cols[:, None] < latent) & col_ok[None, :], other=0.0).to(tl.float32)
    latent_bias = tl.load(latent_bias_ptr + hidden_cols, mask=col_ok, other=0.0).to(tl.float32)
    # tanh(x) = 2 sigmoid(2x) - 1: tl has no tanh in every Triton we support (3.6 to 3.8 and the
    # interpreter); the absolute error, ~1e-7, is far below the 1e-4 the tests ask of log_prob.
    h = 2.0 * tl.sigmoid(2.0 * (tl.dot(z, latent_weight_t, input_precision="ieee") + latent_bias[None, :])) - 1.0
    c = tl.zeros((BLOCK_M, HIDDEN_TILE), dtype=tl.float32)

    # h also lives in this program's rows of h_buffer [rows, HIDDEN_TILE] (L1/L2-resident), the
    # only way to feed K slices of it to tl.dot: register tensors cannot be sliced.
    k_chunk = tl.arange(0, BLOCK_K)
    h_buffer_rows = h_buffer_ptr + rows64[:, None] * HIDDEN_TILE
    tl.store(h_buffer_rows + hidden_cols[None, :], h)

    table_row = tl.zeros((BLOCK_M,), dtype=tl.int64)  # row 0: the start token
    budget_used = tl.zeros((BLOCK_M,), dtype=tl.int32)
    log_prob = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for t in range(positions):
        # gates = input_table[row] + h @ weight_hh.T, one [BLOCK_M, HIDDEN_TILE] tile per gate
        table = input_table_ptr + table_row[:, None] * (4 * hidden) + hidden_cols[None, :]
        table_mask = row_ok[:, None] & col_ok[None, :]
        gate_i = tl.load(table, mask=table_mask, other=0.0).to(tl.float32)
        gate_f = tl.load(table + hidden, mask=table_mask, other=0.0).to(tl.float32)
        gate_g = tl.load(table + 2 * hidden, mask=table_mask, other=0.0).to(tl.float32)
        gate_o = tl.load(table + 3 * hidden, mask=table_mask, other=0.0).to(tl.float32)
        tl.debug_barrier()  # h of the previous step is in h_buffer for every thread
        # A runtime loop: unrolled (tl.static_range), H = 256 with BLOCK_M 32 did not compile for
        # sm_90 within 200 s on 2 CPU cores.
        for k_start in range(0, HIDDEN_TILE, BLOCK_K):
            h_chunk = tl.load(h_buffer_rows + k_start + k_chunk[None, :])
            gate_i += _gate_product(h_chunk, weight_hh_ptr, 0, k_start, hidden, k_chunk, hidden_cols, col_ok)
            gate_f += _gate_product(h_chunk, weight_hh_ptr, 1, k_start, hidden, k_chunk, hidden_cols, col_ok)
            gate_g += _gate_product(h_chunk, weight_hh_ptr, 2, k_start, hidden, k_chunk, hidden_cols, col_ok)
            gate_o += _gate_product(h_chunk, weight_hh_ptr, 3, k_start, hidden, k_chunk, hidden_cols, col_ok)
        c = tl.sigmoid(gate_f) * c + tl.sigmoid(gate_i) * (2.0 * tl.sigmoid(2.0 * gate_g) - 1.0)
        h = tl.sigmoid(gate_o) * (2.0 * tl.sigmoid(2.0 * c) - 1.0)
        # Padding columns: every gate is 0 there, so c stays 0 and h = 0.5 * tanh(0) = 0.
        tl.debug_barrier()  # every thread has read the previous h before it is overwritten
        tl.store(h_buffer_rows + hidden_cols[None, :], h)

        # logits = h @ weight_out[t].T + bias_out[t]; weight_out_t[k, v] = weight_out[t, v, k]
        vocab_ok = vocab < max_vocab
        weight_out_t = tl.load(weight_out_ptr + (t * max_vocab + vocab[None, :]) * hidden + hidden_cols[:, None],
                               mask=col_ok[:, None] & vocab_ok[None, :], other=0.0).to(tl.float32)
        bias = tl.load(bias_out_ptr + t * max_vocab + vocab, mask=vocab_ok, other=0.0).to(tl.float32)
        logits = tl.dot(h, weight_out_t, input_precision="ieee") + bias[None, :]

        vocab_size = tl.load(vocab_sizes_ptr + t)
        on_budget = tl.load(budget_mask_ptr + t) != 0
        exhausted = on_budget & (budget_used >= budget_max)
        allowed = (vocab[None, :] < vocab_size) & ~(exhausted[:, None] & (vocab[None, :] != 0))

        # log_softmax over the allowed tokens; token 0 is always allowed, so the maximum is finite.
        scaled = tl.where(allowed, logits / temperature, float("-inf"))  # a division, as the reference
        maximum = tl.max(scaled, axis=1)
        shifted = scaled - maximum[:, None]
        log_p = shifted - tl.log(tl.sum(tl.exp(shifted), axis=1))[:, None]

        if GREEDY:
            best = tl.max(log_p, axis=1)
            token = tl.min(tl.where(log_p == best[:, None], vocab[None, :], VOCAB_TILE), axis=1)
        else:
            if GIVEN_UNIFORMS:
                u = tl.load(uniforms_ptr + rows64 * positions + t, mask=row_ok, other=0.0).to(tl.float32)
            else:
                u = tl.rand(seed, rows * positions + t)
            cumulative = tl.cumsum(tl.exp(log_p), axis=1)
            exceeds = (cumulative > u[:, None]) & allowed
            first_exceeding = tl.min(tl.where(exceeds, vocab[None, :], VOCAB_TILE), axis=1)
            last_allowed = tl.max(tl.where(allowed, vocab[None, :], 0), axis=1)
            token = tl.where(first_exceeding < VOCAB_TILE, first_exceeding, last_allowed)

        tl.store(tokens_ptr + rows64 * positions + t, token.to(tl.int64), mask=row_ok)
        log_prob += tl.sum(tl.where(vocab[None, :] == token[:, None], log_p, 0.0), axis=1)
        budget_used += (on_budget & (token != 0)).to(tl.int32)
        table_row = 1 + tl.load(offsets_ptr + t).to(tl.int64) + token.to(tl.int64)
    tl.store(log_prob_ptr + rows, log_prob, mask=row_ok)


@triton_op("vaenas::vae_decode_triton", mutates_args=())
def _vae_decode_op(
    z: Tensor,
    latent_weight: Tensor,
    latent_bias: Tensor,
    input_table: Tensor,
    weight_hh: Tensor,
    weight_out: Tensor,
    bias_out: Tensor,
    vocab_sizes: Tensor,
    budget_mask: Tensor,
    budget_max: int,
    uniforms: Tensor | None,
    temperature: float,
    greedy: bool,
    seed: int,
) -> tuple[Tensor, Tensor]:
    num_rows, latent = z.shape
    hidden = weight_hh.shape[1]
    positions, max_vocab = weight_out.shape[0], weight_out.shape[1]
    tokens = torch.empty(num_rows, positions, dtype=torch.int64, device=z.device)
    log_prob = torch.empty(num_rows, dtype=torch.float32, device=z.device)
    given_uniforms = uniforms is not None and not greedy
    # The kernel never reads uniforms_ptr unless GIVEN_UNIFORMS; z stands in as a valid pointer.
    uniforms_arg = uniforms.contiguous() if given_uniforms else z

    hidden_tile = _tile(hidden)
    # Rows up to a multiple of the largest BLOCK_M, so that every program's block fits.
    largest_block = max(config.kwargs["BLOCK_M"] for config in _vae_decode_kernel.configs)
    buffer_rows = triton.cdiv(num_rows, largest_block) * largest_block
    h_buffer = torch.empty(buffer_rows, hidden_tile, dtype=torch.float32, device=z.device)

    def grid(meta: dict) -> tuple[int]:
        return (triton.cdiv(num_rows, meta["BLOCK_M"]),)

    wrap_triton(_vae_decode_kernel)[grid](
        z.contiguous(), latent_weight.contiguous(), latent_bias.contiguous(), input_table.contiguous(),
        weight_hh.contiguous(), weight_out.contiguous(), bias_out.contiguous(),
        vocab_sizes.to(torch.int32), token_offsets(vocab_sizes).to(torch.int32), budget_mask.to(torch.int32),
        uniforms_arg, tokens, log_prob, h_buffer,
        num_rows, latent, hidden, max_vocab, positions, budget_max, temperature, seed,
        LATENT_TILE=_tile(latent), HIDDEN_TILE=hidden_tile, VOCAB_TILE=_tile(max_vocab),
        BLOCK_K=min(hidden_tile, MAX_BLOCK_K),
        GREEDY=greedy, GIVEN_UNIFORMS=given_uniforms,
    )
    return tokens, log_prob


def vae_decode_triton(
    z: Tensor,
    latent_weight: Tensor,
    latent_bias: Tensor,
    input_table: Tensor,
    weight_hh: Tensor,
    weight_out: Tensor,
    bias_out: Tensor,
    vocab_sizes: Tensor,
    budget_mask: Tensor,
    budget_max: int,
    uniforms: Tensor | None,
    temperature: float,
    greedy: bool,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """vaenas.ops.reference.vae_decode on CUDA tensors (or CPU tensors under TRITON_INTERPRET=1).

    Same arguments, shapes and results as the reference; see the module docstring for how the
    random stream differs when `uniforms` is None. Runs torch.ops.vaenas.vae_decode_triton.
    """
    return torch.ops.vaenas.vae_decode_triton(
        z, latent_weight, latent_bias, input_table, weight_hh, weight_out, bias_out, vocab_sizes,
        budget_mask, budget_max, uniforms, temperature, greedy, seed,
    )
