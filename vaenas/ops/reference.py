"""Pure-PyTorch references: the specification of every custom op.

Each function here is plain, obvious PyTorch. Fast backends (C++ CPU, CUDA, Triton) must agree
with it; it is never edited to match a kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def token_offsets(vocab_sizes: Tensor) -> Tensor:
    """Exclusive prefix sum of `vocab_sizes` [T]: row of position t's token 0 in a flat table."""
    return torch.cumsum(vocab_sizes, 0) - vocab_sizes


def vae_decode(
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
    """Decode M latent vectors into M architecture strings with an autoregressive LSTM.

    Shapes (H hidden size, T positions, V = max(vocab_sizes), R = 1 + sum(vocab_sizes)):
      z [M, d] float; latent_weight [H, d]; latent_bias [H]
      input_table [R, 4H]: the LSTM's input contribution for each previous token, already
        multiplied through: embedding @ weight_ih.T + bias_ih + bias_hh. Row 0 is the start
        token (input of step 0); the token k of position t feeds step t+1 through row
        1 + offset[t] + k, offset = exclusive prefix sum of vocab_sizes.
      weight_hh [4H, H] (gate order i, f, g, o as torch.nn.LSTM); weight_out [T, V, H];
      bias_out [T, V]; vocab_sizes [T] int64; budget_mask [T] bool.
      uniforms [M, T] float in [0, 1) or None.

    Recurrence, for t = 0..T-1:
      h_0 = tanh(z @ latent_weight.T + latent_bias), c_0 = 0
      gates = input_table[row_t] + h @ weight_hh.T;  c = σ(f)·c + σ(i)·tanh(g);  h = σ(o)·tanh(c)
      logits = weight_out[t] @ h + bias_out[t], with tokens k >= vocab_sizes[t] masked out and,
        at a position of budget_mask once `budget_max` non-zero tokens were chosen at earlier
        budget positions, every token but 0 masked out (NAS-Bench-101: at most 9 edges).
      probabilities p = softmax(logits / temperature) over the allowed tokens.
      greedy: token = argmax p (the first maximum). Sampled: token = the first allowed k whose
        cumulative probability p_0 + ... + p_k exceeds u[t] (the last allowed token if none does,
        which only float rounding can cause), u = uniforms, or torch.rand(M, T) from a generator
        on z's device seeded with `seed` when uniforms is None.
    Returns tokens [M, T] int64 and log_prob [M] float32: sum over t of log p[token].
    """
    num_rows, positions = z.shape[0], vocab_sizes.shape[0]
    hidden = weight_hh.shape[1]
    max_vocab = weight_out.shape[1]
    device = z.device
    if not greedy and uniforms is None:
        generator = torch.Generator(device=device).manual_seed(seed)
        uniforms = torch.rand(num_rows, positions, generator=generator, device=device)

    offsets = token_offsets(vocab_sizes)
    input_table, weight_hh = input_table.float(), weight_hh.float()
    weight_out, bias_out = weight_out.float(), bias_out.float()
    vocab_index = torch.arange(max_vocab, device=device)
    h = torch.tanh(z.float() @ latent_weight.float().T + latent_bias.float())
    c = torch.zeros_like(h)
    row = torch.zeros(num_rows, dtype=torch.long, device=device)
    budget_used = torch.zeros(num_rows, dtype=torch.long, device=device)
    tokens = torch.zeros(num_rows, positions, dtype=torch.long, device=device)
    log_prob = torch.zeros(num_rows, dtype=torch.float32, device=device)

    for t in range(positions):
        gates = input_table[row] + h @ weight_hh.T
        i, f, g, o = gates.split(hidden, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        logits = h @ weight_out[t].T + bias_out[t]

        allowed = (vocab_index < vocab_sizes[t]).expand(num_rows, max_vocab)
        if bool(budget_mask[t]):
            exhausted = budget_used >= budget_max
            allowed = allowed & ~(exhausted[:, None] & (vocab_index != 0))
        scaled = (logits / temperature).masked_fill(~allowed, float("-inf"))
        log_p = torch.log_softmax(scaled, dim=1)

        if greedy:
            token = torch.argmax(log_p, dim=1)
        else:
            cumulative = torch.cumsum(log_p.exp(), dim=1)
            exceeds = (cumulative > uniforms[:, t : t + 1].float()) & allowed
            last_allowed = (allowed * (vocab_index + 1)).argmax(dim=1)
            first_exceeding = torch.where(exceeds.any(dim=1), exceeds.int().argmax(dim=1), last_allowed)
            token = first_exceeding

        tokens[:, t] = token
        log_prob += log_p.gather(1, token[:, None]).squeeze(1)
        if bool(budget_mask[t]):
            budget_used += (token != 0).long()
        row = 1 + offsets[t] + token
    return tokens, log_prob


# --- grouped supernet forward (DESIGN §4, op family 2) ------------------------------------------


def segmented_batch_norm(
    x: Tensor,
    num_segments: int,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    mean: Tensor | None = None,
    var: Tensor | None = None,
    activation: str | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Batch norm of a batch made of `num_segments` equal consecutive segments, each on its own,
    then `activation` (None, "relu" or "silu", the Swish x * sigmoid(x)) of the normalised values.

    x [S*b, C, *spatial]; weight, bias [C] or None (no affine). Without `mean`/`var`: each segment
    is normalised with its own batch statistics (biased variance, as nn.BatchNorm2d in training);
    with `mean`, `var` [S, C]: with those (evaluation). Statistics are computed in float32 for
    half-precision x, else in x's dtype; y has x's dtype. Returns (y like x, mean [S, C], var [S, C]).
    Equivalent to torch.cat([F.batch_norm(x_s, None, None, weight, bias, True, 0., eps) for x_s
    in x.chunk(S)]) when no statistics are given.
    """
    if x.shape[0] % num_segments:
        raise ValueError(f"a batch of {x.shape[0]} rows does not split into {num_segments} equal segments")
    compute = torch.promote_types(x.dtype, torch.float32)  # float32 for bf16/fp16 inputs
    segments = x.unflatten(0, (num_segments, x.shape[0] // num_segments)).to(compute)  # [S, b, C, *]
    reduce = [1] + list(range(3, segments.dim()))
    if mean is None or var is None:
        var, mean = torch.var_mean(segments, dim=reduce, unbiased=False)  # [S, C]
    shape = (num_segments, 1, -1) + (1,) * (segments.dim() - 3)  # broadcast [S, C] over [S, b, C, *]
    y = (segments - mean.view(shape)) * torch.rsqrt(var.view(shape) + eps)
    if weight is not None:
        y = y * weight.to(compute).view(1, 1, -1, *([1] * (segments.dim() - 3)))
    if bias is not None:
        y = y + bias.to(compute).view(1, 1, -1, *([1] * (segments.dim() - 3)))
    if activation == "relu":
        y = torch.relu(y)
    elif activation == "silu":
        y = y * torch.sigmoid(y)
    elif activation is not None:
        raise ValueError(f"activation must be None, 'relu' or 'silu', got {activation!r}")
    return y.flatten(0, 1).to(x.dtype), mean, var


def gather_segments(x: Tensor, positions: Tensor, num_segments: int) -> Tensor:
    """The rows of the segments at `positions` [s] of x [S*b, *], concatenated: [s*b, *]."""
    return x.unflatten(0, (num_segments, x.shape[0] // num_segments)).index_select(0, positions).flatten(0, 1)


def scatter_segments(parts: list[Tensor], positions: list[Tensor], num_segments: int) -> Tensor:
    """Inverse of gather_segments over a partition: parts[k] [s_k*b, *] holds the segments at
    positions[k]; the positions of all parts cover 0..S-1 exactly once. Returns [S*b, *] with
    segment p taken from the part that holds it."""
    order = torch.cat(positions)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    stacked = torch.cat([part.unflatten(0, (len(pos), -1)) for part, pos in zip(parts, positions)])
    return stacked.index_select(0, inverse).flatten(0, 1)


def route(x: Tensor, segments: Tensor, choice: Tensor, candidates: Sequence[Callable | None]) -> Tensor | None:
    """Segment s of x [S*b, *] runs candidates[choice[s]] (a None candidate: zeros), each candidate
    once on the concatenation of the segments that chose it; None when every segment chose a None
    candidate. With one distinct choice the candidate runs on x itself."""
    num_segments = len(segments)
    chosen = torch.unique(choice).tolist()
    if len(chosen) == 1:
        candidate = candidates[chosen[0]]
        return None if candidate is None else candidate(x, segments)
    parts, positions, zero_positions = [], [], []
    for k in chosen:
        where = (choice == k).nonzero().flatten()
        if candidates[k] is None:
            zero_positions.append(where)
            continue
        parts.append(candidates[k](gather_segments(x, where.to(x.device), num_segments), segments[where]))
        positions.append(where)
    if not parts:
        return None
    if zero_positions:
        where = torch.cat(zero_positions)
        rows = parts[0].shape[0] // len(positions[0]) * len(where)
        parts.append(parts[0].new_zeros((rows,) + parts[0].shape[1:]))
        positions.append(where)
    return scatter_segments(parts, [p.to(x.device) for p in positions], num_segments)


def route_sum(terms: Sequence[tuple[Tensor | None, Tensor, Sequence[Callable | None]]], segments: Tensor) -> Tensor | None:
    """Σ of route(x, segments, choice, candidates) over terms (x, choice, candidates), None terms
    left out; None when every term is None."""
    routed = [route(x, segments, choice, candidates) for x, choice, candidates in terms]
    routed = [term for term in routed if term is not None]
    return sum(routed[1:], routed[0]) if routed else None


# --- channel-sliced shared convolution (DESIGN §4, op family 3) ---------------------------------


def sliced_conv2d(x: Tensor, weight: Tensor, out_channels: int, stride: int, padding: int) -> Tensor:
    """Convolution of x [B, c_in, H, W] with the [:out_channels, :c_in] slice of a shared weight
    [C_out, C_in, k, k] (no bias): [B, out_channels, H', W']. The slice is a view, so autograd
    accumulates the weight's gradient into that slice and leaves the rest of it zero."""
    return torch.nn.functional.conv2d(x, weight[:out_channels, : x.shape[1]], None, stride, padding)


# --- binary-gate mixed op (ProxylessNAS; the gradient search, paper §4.3) -----------------------


def gated_mixed_op(
    x: Tensor, candidates: list, active: int, logits: Tensor, paths: list[int], none_shape: tuple[int, ...]
) -> Tensor:
    """The explicit gated sum y = Σ_{j in paths} g_j·o_j(x), every candidate run with autograd.

    Binary gates g [K]: one-hot on `active`. Their value is the one-hot, their derivative that of
    p = softmax(logits over `paths`) (zero outside them): g = onehot + p − p.detach(). Autograd then
    computes ∂L/∂g_j = Σ o_j(x)·∂L/∂y and carries it to the logits as Σ_j ∂L/∂g_j·∂p_j/∂w_i =
    Σ_j ∂L/∂g_j·p_j(δ_ij − p_i): the ProxylessNAS estimator (vaenas.ops.gated). A None candidate
    is zeros of `none_shape`. Candidates off the active path get zero weight gradients.
    """
    index = torch.tensor(paths, device=logits.device)
    p = torch.zeros_like(logits).index_put((index,), torch.softmax(logits.index_select(0, index), dim=0))
    gates = torch.nn.functional.one_hot(torch.tensor(active), len(candidates)).to(p) + p - p.detach()
    outputs = [x.new_zeros(none_shape) if candidates[j] is None else candidates[j](x) for j in paths]
    return sum(gates[j] * out for j, out in zip(paths, outputs))
