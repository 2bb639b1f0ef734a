"""The VAE architecture sampler (paper §3.2, eq. 2; Algorithm 1).

ArchitectureVAE is the model (LSTM encoder q_φ(z|α), LSTM decoder p_θ(α|z), ELBO), in the shape of
D-VAE's models (encode / reparameterize / decode / loss). Its decoder is parametrised exactly as
the batched decode op vaenas.ops.vae_decode takes it, so that training uses nn.LSTM with teacher
forcing while all sampling and greedy decoding goes through the op (decoder_weights() hands the
trained parameters over). VAESampler wraps the model with an optimizer, seeded generators,
rejection of invalid / unaccepted strings and fit_topk (Algorithm 1, warm-started).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from vaenas import ops
from vaenas.config import check_device, option
from vaenas.sampler.uniform import AcceptFn, accepted_rows, rejection_sample
from vaenas.spaces.base import DecodeConstraints, SearchSpace

logger = logging.getLogger(__name__)

# The op's seed is an int64 in C++; a 63-bit draw keeps it positive on every backend.
_SEED_BOUND = 2**62


class ArchitectureVAE(nn.Module):
    """VAE over architecture strings of a search space.

    Token k of position t has the flat embedding row 1 + offset[t] + k (offset = exclusive prefix
    sum of the vocabulary sizes); row 0 is the start token of the decoder. The encoder and the
    decoder share this table, which is the row numbering of the op's `input_table`.

    Decoder (the op's recurrence): h_0 = tanh(latent(z)), c_0 = 0; the input of step t is the
    embedding of token t-1 (start at t = 0); logits_t = weight_out[t] @ h_t + bias_out[t], masked
    to position t's vocabulary and, for spaces with an edge budget, to token 0 once the budget is
    spent (as the op masks them), so that training maximises the likelihood the op samples from.
    """

    def __init__(
        self,
        constraints: DecodeConstraints,
        latent_dim: int = 16,
        embedding_dim: int = 16,
        hidden_dim: int = 64,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        vocab_sizes = constraints.vocab_sizes.long().cpu()
        positions, max_vocab = len(vocab_sizes), int(vocab_sizes.max())
        self.latent_dim, self.hidden_dim = latent_dim, hidden_dim
        self.budget_max = int(constraints.budget_max)
        self.register_buffer("vocab_sizes", vocab_sizes, persistent=False)
        self.register_buffer("offsets", torch.cumsum(vocab_sizes, 0) - vocab_sizes, persistent=False)
        self.register_buffer("budget_mask", constraints.budget_mask.bool().cpu(), persistent=False)
        # [T, V] True where token k exists at position t
        self.register_buffer(
            "vocab_mask", torch.arange(max_vocab)[None, :] < vocab_sizes[:, None], persistent=False
        )

        self.embedding = nn.Embedding(1 + int(vocab_sizes.sum()), embedding_dim)
        self.encoder = nn.LSTM(embedding_dim, hidden_dim, batch_first=True)
        self.to_mean = nn.Linear(hidden_dim, latent_dim)
        self.to_logvar = nn.Linear(hidden_dim, latent_dim)
        self.latent = nn.Linear(latent_dim, hidden_dim)
        self.decoder = nn.LSTM(embedding_dim, hidden_dim, batch_first=True)
        self.weight_out = nn.Parameter(torch.empty(positions, max_vocab, hidden_dim))
        self.bias_out = nn.Parameter(torch.empty(positions, max_vocab))
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default initialisation of every parameter, drawn from `generator` (the global
        stream when None): nn.Embedding N(0, 1); nn.LSTM, nn.Linear and the per-position output
        layer U(-1/√fan_in, 1/√fan_in), fan_in = hidden size for an LSTM."""
        nn.init.normal_(self.embedding.weight, generator=generator)
        fan_in = {self.encoder: self.hidden_dim, self.decoder: self.hidden_dim, self.to_mean: self.hidden_dim,
                  self.to_logvar: self.hidden_dim, self.latent: self.latent_dim}
        groups = [(list(module.parameters()), size) for module, size in fan_in.items()]
        groups.append(([self.weight_out, self.bias_out], self.hidden_dim))  # nn.Linear(hidden, V) per position
        for parameters, size in groups:
            bound = 1.0 / math.sqrt(size)
            for parameter in parameters:
                nn.init.uniform_(parameter, -bound, bound, generator=generator)

    def token_rows(self, archs: Tensor) -> Tensor:
        """LongTensor[N, T]: the embedding row of each token of archs [N, T]."""
        return 1 + self.offsets + archs

    def encode(self, archs: Tensor) -> tuple[Tensor, Tensor]:
        """archs LongTensor[N, T] -> (mean, log variance) of q(z|α), each float [N, d]."""
        _, (h_last, _) = self.encoder(self.embedding(self.token_rows(archs)))
        h_last = h_last[0]
        return self.to_mean(h_last), self.to_logvar(h_last)

    @staticmethod
    def reparameterize(mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z = mean + σ·ε, ε ~ N(0, I) drawn from `generator`: float [N, d]."""
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * noise

    def allowed_tokens(self, archs: Tensor) -> Tensor:
        """BoolTensor[N, T, V]: the tokens the op may produce at each position, given the earlier
        tokens of archs [N, T] (the vocabulary, and the edge budget where the space has one)."""
        allowed = self.vocab_mask.expand(archs.shape[0], -1, -1)
        if bool(self.budget_mask.any()):
            spent = ((archs != 0) & self.budget_mask).long()
            used_before = torch.cumsum(spent, dim=1) - spent
            # the op checks the budget at every budget position, whatever budget_max is
            exhausted = (used_before >= self.budget_max) & self.budget_mask
            not_zero = torch.arange(allowed.shape[2], device=archs.device) != 0
            allowed = allowed & ~(exhausted[:, :, None] & not_zero)
        return allowed

    def decode_logits(self, z: Tensor, archs: Tensor) -> Tensor:
        """Teacher-forced decoder logits: z [N, d], archs [N, T] -> float [N, T, V], -inf where a
        token is not allowed (log_softmax of a row is the op's log p at that step)."""
        start = torch.zeros(archs.shape[0], 1, dtype=torch.long, device=archs.device)
        inputs = self.embedding(torch.cat([start, self.token_rows(archs)[:, :-1]], dim=1))
        h0 = torch.tanh(self.latent(z))[None]
        hidden, _ = self.decoder(inputs, (h0, torch.zeros_like(h0)))
        logits = torch.einsum("nth,tvh->ntv", hidden, self.weight_out) + self.bias_out
        return logits.masked_fill(~self.allowed_tokens(archs), float("-inf"))

    def log_likelihood(self, z: Tensor, archs: Tensor) -> Tensor:
        """log p_θ(α|z) of each row: z [N, d], archs [N, T] -> float [N]."""
        log_p = torch.log_softmax(self.decode_logits(z, archs), dim=2)
        return log_p.gather(2, archs[:, :, None]).squeeze(2).sum(dim=1)

    def loss(
        self, archs: Tensor, kl_weight: float = 1.0, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Negative ELBO (paper eq. 2) of archs [N, T], averaged over the rows.

        Returns scalars: loss = recon + kl_weight·kl, recon = -log p_θ(α|z) summed over positions,
        kl = KL(q(z|α) || N(0, I)) summed over latent dimensions.
        """
        mean, logvar = self.encode(archs)
        z = self.reparameterize(mean, logvar, generator)
        recon = -self.log_likelihood(z, archs).mean()
        kl = (-0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(dim=1)).mean()
        return {"loss": recon + kl_weight * kl, "recon": recon, "kl": kl}

    @torch.no_grad()
    def decoder_weights(self) -> ops.DecoderWeights:
        """The decoder in the op's form; input_table folds the embedding into the input gates."""
        input_table = (
            self.embedding.weight @ self.decoder.weight_ih_l0.T + self.decoder.bias_ih_l0 + self.decoder.bias_hh_l0
        )
        return ops.DecoderWeights(
            latent_weight=self.latent.weight.detach().clone(),
            latent_bias=self.latent.bias.detach().clone(),
            input_table=input_table.contiguous(),
            weight_hh=self.decoder.weight_hh_l0.detach().clone(),
            weight_out=self.weight_out.detach().clone(),
            bias_out=self.bias_out.detach().clone(),
        )


@dataclass
class VAEConfig:
    """Sizes and training settings of the VAE sampler (defaults sized for a 2-core CPU)."""

    latent_dim: int = option(16, "VAE: dimension of z", at_least=1)
    embedding_dim: int = option(16, "VAE: token embedding size", at_least=1)
    hidden_dim: int = option(64, "VAE: LSTM hidden size (encoder and decoder)", at_least=1)
    # The paper's ELBO has weight 1; with it the KL term collapses (~0.001 nats on NB201) and the
    # latent carries nothing: reconstruction accuracy ~0, uniqueness 0.28, novelty 0.13. At 0.1 the
    # latent carries ~8.5 nats, uniqueness 0.52, novelty 0.58, same mean accuracy of samples.
    kl_weight: float = option(0.1, "VAE: weight of the KL term of the negative ELBO", at_least=0)
    lr: float = option(3e-3, "VAE: Adam learning rate", above=0)
    batch_size: int = option(128, "VAE: minibatch size (drawn with replacement)", at_least=1)
    n_iters: int = option(500, "VAE: training steps of a full fit (paper protocol, vae_evolution)", at_least=1)
    device: str = option("cpu", "VAE: device of training and decoding (cpu, cuda, cuda:N)")
    # intra-op threads while training on a CPU (None: leave torch's setting). A training step is
    # hundreds of tiny ops, each an OpenMP region whose barrier waits for every thread: on 2 idle
    # cores 100 steps took 1.1 s with 1 thread and 0.7 s with 2, but with one other busy process
    # on the machine 1.1-1.8 s against 6-192 s. Decoding is one op with one parallel region and
    # keeps torch's setting (M = 10k NB101 rows: 0.08 s on 1 thread, 0.04 s on 2).
    num_threads: int | None = option(1, "VAE: intra-op CPU threads while training (null: torch's setting)", at_least=1)

    def __post_init__(self) -> None:
        check_device("vae.device", self.device)


@contextlib.contextmanager
def _cpu_threads(count: int | None, device: torch.device) -> Iterator[None]:
    """Run the block with `count` intra-op threads when on a CPU, then restore the setting."""
    previous = torch.get_num_threads()
    if count is None or device.type != "cpu" or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class VAESampler:
    """The learned sampler p_θ(α) = E_z~N(0,I) p_θ(α|z) of a search space, with Algorithm 1.

    seed fixes the initial weights, the training noise and (when sample gets no generator) the
    sampling randomness, so a seeded run is reproducible.
    """

    def __init__(self, space: SearchSpace, config: VAEConfig | None = None, seed: int = 0) -> None:
        self.space = space
        self.config = config or VAEConfig()
        self.device = torch.device(self.config.device)
        self._decode_constraints = space.decode_constraints()
        # Every parameter is drawn from a local generator seeded with `seed` (torch.manual_seed
        # would also reseed every CUDA generator). The submodules' own default initialisation still
        # draws from the global CPU stream first; fork_rng(devices=[]) restores that stream.
        with torch.random.fork_rng(devices=[]):
            self.model = ArchitectureVAE(
                self._decode_constraints, self.config.latent_dim, self.config.embedding_dim, self.config.hidden_dim,
                generator=torch.Generator().manual_seed(seed),
            ).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        self._train_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self._sample_generator = torch.Generator().manual_seed(seed + 2)
        self._weights: ops.DecoderWeights | None = None  # cached op arguments, reset by training

    # --- sampling -----------------------------------------------------------------------------
    def decoder_weights(self) -> ops.DecoderWeights:
        """The op's arguments for the current weights (cached between trainings)."""
        if self._weights is None:
            self._weights = self.model.decoder_weights()
        return self._weights

    def decode(
        self, z: Tensor, generator: torch.Generator | None = None, greedy: bool = False, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Decode z [M, d] with vaenas.ops.vae_decode: tokens LongTensor[M, T] (on CPU) and log p [M].

        Sampled decoding draws the op's seed from `generator` (the sampler's own when None).
        """
        generator = self._sample_generator if generator is None else generator
        seed = 0 if greedy else int(torch.randint(_SEED_BOUND, (1,), generator=generator))
        tokens, log_prob = ops.vae_decode(
            z.to(self.device), self.decoder_weights(), self._decode_constraints,
            greedy=greedy, temperature=temperature, seed=seed,
        )
        return tokens.cpu(), log_prob.cpu()

    def sample_prior(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """n strings decoded from z ~ N(0, I), with no validity check or resampling: LongTensor[n, T]."""
        generator = self._sample_generator if generator is None else generator
        z = torch.randn(n, self.config.latent_dim, generator=generator)
        return self.decode(z, generator, temperature=temperature)[0]

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        accept: AcceptFn | None = None,
        max_rounds: int = 20,
    ) -> Tensor:
        """n valid architectures from p_θ(α): LongTensor[n, T].

        Rows that are not space.is_valid, or that accept(archs [M, T]) -> BoolTensor[M] rejects,
        are drawn again, up to max_rounds rounds; RuntimeError if still fewer than n.
        """
        def keep(archs: Tensor) -> Tensor:
            valid = self.space.is_valid(archs)
            return valid if accept is None else valid & accepted_rows(accept, archs)

        return rejection_sample(
            lambda count: self.sample_prior(count, generator, temperature), keep,
            n, self.space.length, max_rounds, "VAESampler",
        )

    # --- training (Algorithm 1) ---------------------------------------------------------------
    def fit(self, archs: Tensor, n_iters: int | None = None) -> dict[str, float]:
        """Train n_iters minibatch steps (Adam, with replacement) on archs [N, T]; warm-started.

        Every row must be a valid architecture (ValueError naming the first that is not: the
        decoder gives an invalid one log p = -inf, so training would report an infinite loss).
        Returns the mean loss, recon and kl of the last steps (at most 50).
        """
        return self._fit(self.space.check_valid(archs, "fit"), n_iters)

    def _fit(self, archs: Tensor, n_iters: int | None) -> dict[str, float]:
        """fit() on rows already checked."""
        archs = archs.to(self.device)
        n_iters = self.config.n_iters if n_iters is None else int(n_iters)
        if n_iters < 0:
            raise ValueError(f"n_iters must be >= 0, got {n_iters}")
        if len(archs) == 0:
            raise ValueError("cannot fit the VAE on zero architectures")
        with _cpu_threads(self.config.num_threads, self.device):
            history = self._train(archs, n_iters)
        final = history.mean(dim=0).tolist() if len(history) else [float("nan")] * 3
        result = {"loss": final[0], "recon": final[1], "kl": final[2], "n_train": len(archs), "n_iters": n_iters}
        logger.debug("VAE fit: %s", result)
        return result

    def _train(self, archs: Tensor, n_iters: int) -> Tensor:
        """n_iters Adam steps on minibatches of archs [N, T]; float [min(50, n_iters), 3]: the
        loss, recon and kl of the last steps."""
        self.model.train()
        tail = min(50, n_iters)
        history = torch.zeros(tail, 3, device=self.device)
        for step in range(n_iters):
            batch = archs[torch.randint(len(archs), (self.config.batch_size,), generator=self._train_generator,
                                        device=self.device)]
            losses = self.model.loss(batch, self.config.kl_weight, self._train_generator)
            self.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            self.optimizer.step()
            if step >= n_iters - tail:
                # kept on the device, read once at the end, so training never waits for it
                history[step - (n_iters - tail)] = torch.stack([losses[k].detach() for k in ("loss", "recon", "kl")])
        self.model.eval()
        self._weights = None
        return history.cpu()

    def fit_topk(
        self, archs: Tensor, scores: Tensor, top_fraction: float = 0.5, n_iters: int | None = None
    ) -> dict[str, float]:
        """Algorithm 1: rank archs [N, T] by scores [N] (higher is better), train on the top fraction.

        Keeps ceil(top_fraction·N) rows (at least one); ties keep the earlier row. Every row must
        be a valid architecture, as in fit().
        """
        archs = self.space.check_valid(archs, "fit_topk")
        scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1).cpu()
        if len(scores) != len(archs):
            raise ValueError(f"fit_topk: {len(archs)} architectures but {len(scores)} scores")
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"fit_topk: top_fraction must lie in (0, 1], got {top_fraction}")
        if len(archs) == 0:
            raise ValueError("fit_topk: no architectures")
        if bool(torch.isnan(scores).any()):
            raise ValueError("fit_topk: scores contain NaN")
        keep = max(1, math.ceil(top_fraction * len(archs)))
        order = torch.sort(scores, descending=True, stable=True).indices[:keep]
        return self._fit(archs[order], n_iters)

    # --- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot (copied tensors): model, optimizer, both generators, config."""
        # copied because model and optimizer state_dicts alias the live tensors, which later
        # training updates in place (a checkpoint held in memory would change under its owner)
        return copy.deepcopy({
            "config": dataclasses.asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_generator": self._train_generator.get_state(),
            "sample_generator": self._sample_generator.get_state(),
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sizes = ("latent_dim", "embedding_dim", "hidden_dim")
        saved = {k: state["config"][k] for k in sizes}
        mine = {k: getattr(self.config, k) for k in sizes}
        if saved != mine:
            raise ValueError(f"VAESampler checkpoint has sizes {saved}, this sampler {mine}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._train_generator.set_state(state["train_generator"])
        self._sample_generator.set_state(state["sample_generator"])
        self._weights = None

