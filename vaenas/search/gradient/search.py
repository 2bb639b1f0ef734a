"""The gradient-based VAENAS search, paper Algorithm 3 ("VAENAS-G"), on the one-shot machinery.

    w: one logit per candidate at every position (edge / choice block), Adam per position (ProxylessNAS)
    for i = 1 .. n_iters:
        α ~ p_θ(α|z)  (from step 1, the untrained VAE until the first refit; softmax(w)     line 2
            for plain ProxylessNAS, its two-path binarize in mode two)
        update w on a held-out (validation) batch: binary gates on α, gate-gradient         line 3
            estimator (vaenas.ops.gated_mixed_op, mode two or full); a position whose
            op in α is `none` gets no update (ProxylessNAS)
        update the supernet weights on a training batch, path α                             line 4
        if i mod n_vae == 0: N_s architectures ~ U, scored with the one-shot evaluation,    lines 5-9
            VAE.fit_topk
    α* = argmax of w per position, repaired to a valid architecture if needed               line 12

Everything else is OneShotSearch's: supernet, trainer (SGD step, used-gradient all-reduce),
VAE, scoring (BN recalibrated per architecture, split across ranks), checkpoint state, export.
Every rank draws the same paths from the shared `arch_generator`; the logits' gradient is
averaged across ranks, so w and its Adam state stay identical everywhere.

Winner-takes-all (paper §4.3): with softmax sampling the paths follow w, and the paths trained
most get the best validation loss and so larger w. Measured here per log point: the mean entropy
of softmax(w) over positions and the number of distinct architectures trained so far.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from vaenas import ops
from vaenas.config import ConfigError
from vaenas.data import SearchData
from vaenas.ops.gated import draw_other_path, draw_two_paths
from vaenas.runtime.collectives import check_identical, checksum
from vaenas.sampler.uniform import rejection_sample
from vaenas.search.gradient.arch_optimizer import PositionAdam
from vaenas.search.gradient.config import GradientConfig
from vaenas.search.gradient.cost_term import CostTerm, expected_cost
from vaenas.search.oneshot import OneShotSearch
from vaenas.search.oneshot.costs import search_cost_model
from vaenas.spaces.base import SearchSpace
from vaenas.supernet.gates import Gates


class ValidationStream:
    """Endless batches of `batch_size` rows cut from passes over the held-out loader (fixed order).
    Rank r of W takes chunks r, r + W, ... of the common sequence. `served` (chunks this rank took)
    is the resume position."""

    def __init__(self, loader, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.loader, self.batch_size, self.rank, self.world_size = loader, batch_size, rank, world_size
        self.served = 0
        self._chunks: Iterator[tuple[Tensor, Tensor]] | None = None

    def _all_chunks(self) -> Iterator[tuple[Tensor, Tensor]]:
        index = 0
        while True:
            produced = False
            for images, labels in self.loader:
                for start in range(0, len(labels) - self.batch_size + 1, self.batch_size):
                    produced = True
                    if index % self.world_size == self.rank:
                        yield images[start : start + self.batch_size], labels[start : start + self.batch_size]
                    index += 1
            if not produced:
                raise ValueError(
                    f"the held-out split has no batch of {self.batch_size} images for the architecture steps"
                )

    def __next__(self) -> tuple[Tensor, Tensor]:
        if self._chunks is None:
            self._chunks = self._all_chunks()
            for _ in range(self.served):  # resume: the sequence is deterministic
                next(self._chunks)
        self.served += 1
        return next(self._chunks)

    def state_dict(self) -> dict[str, int]:
        return {"served": self.served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.served, self._chunks = int(state["served"]), None


def initial_logits(space: SearchSpace, device: torch.device) -> Tensor:
    """w [T, K_max] = 0 for the tokens of each position, −inf beyond its vocabulary (never drawn)."""
    vocab = torch.tensor(space.vocab_sizes)
    logits = torch.zeros(space.length, int(vocab.max()), device=device)
    logits[torch.arange(logits.shape[1])[None] >= vocab[:, None]] = float("-inf")
    return logits.requires_grad_(True)


def mean_entropy(logits: Tensor) -> float:
    """Mean over positions of the entropy (nats) of softmax(w_t): log K at the start, 0 when collapsed."""
    return float(torch.special.entr(torch.softmax(logits.detach().double(), dim=-1)).sum(-1).mean())


#: paths in the window of path_entropy
PATH_WINDOW = 50


def path_entropy(archs: Tensor, space: SearchSpace) -> float:
    """Mean over positions of the entropy (nats) of the ops the paths archs [N, T] used there: how
    spread the trained paths are, whatever distribution drew them (whole strings of a large space
    are all distinct while per-position choices can still have collapsed)."""
    counts = torch.zeros(space.length, max(space.vocab_sizes), dtype=torch.float64)
    counts.scatter_add_(1, archs.T.contiguous(), torch.ones(archs.T.shape, dtype=torch.float64))
    return float(torch.special.entr(counts / len(archs)).sum(1).mean())


def sample_softmax(space: SearchSpace, logits: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """n valid architectures, each position drawn from softmax(w_t) (ProxylessNAS's multinomial),
    invalid rows drawn again: LongTensor[n, T]. Validity is a per-node constraint in NASNet and none
    in the others, so this is the product distribution conditioned on validity."""
    p = torch.softmax(logits.detach().double().cpu(), dim=-1)

    def draw(count: int) -> Tensor:
        return torch.multinomial(p, count, replacement=True, generator=generator).T.contiguous()

    return rejection_sample(draw, space.is_valid, n, space.length, 50, "softmax sampling")


def sample_two_paths(space: SearchSpace, logits: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """ProxylessNAS's mode-two paths (vaenas.ops.gated.draw_two_paths at every position): the
    active architecture LongTensor[1, T] and the inactive op per position [T]; drawn again
    whole while the active architecture is invalid (as sample_softmax)."""
    T = space.length

    def draw(count: int) -> Tensor:
        active, other = draw_two_paths(logits.detach().repeat(count, 1), generator)
        return torch.cat([active.view(count, T), other.view(count, T)], dim=1)

    rows = rejection_sample(draw, lambda rows: space.is_valid(rows[:, :T]), 1, 2 * T, 50, "softmax sampling (two)")
    return rows[:, :T], rows[0, T:]


def most_probable_architecture(space: SearchSpace, logits: Tensor) -> tuple[Tensor, list[int]]:
    """α* = argmax of w per position, and the positions a repair changed.

    Repair (NASNet only: the other spaces accept every string): a node whose incoming edges are all
    `none` gets the one (edge, op != none) that loses the least log-probability, max over its edges
    of log p(op) − log p(none). Nodes are independent under the product softmax, so the result is
    the most probable valid architecture."""
    arch = logits.detach().argmax(-1).cpu()
    if bool(space.is_valid(arch[None])[0]):
        return arch, []
    if space.name != "nasnet":
        raise ValueError(f"{space.name}: the argmax architecture is invalid and this space has no repair")
    from vaenas.spaces.nasnet import EDGES_PER_CELL, NODE_OFFSETS, NODES

    log_p = torch.log_softmax(logits.detach().double().cpu(), dim=-1)
    changed = []
    for cell in range(2):
        for node in range(NODES):
            start = cell * EDGES_PER_CELL + NODE_OFFSETS[node]
            edges = list(range(start, start + 2 + node))
            if any(int(arch[e]) != 0 for e in edges):
                continue
            gain = log_p[edges, 1:] - log_p[edges, :1]  # [edges, ops - 1]
            best = int(gain.flatten().argmax())
            edge, op = edges[best // gain.shape[1]], 1 + best % gain.shape[1]
            arch[edge] = op
            changed.append(edge)
    return space.validate(arch), changed


class GradientSearch(OneShotSearch):
    """Algorithm 3 on one rank (see the module docstring); `log(record)` as OneShotSearch."""

    def __init__(
        self,
        config: GradientConfig,
        data: SearchData,
        device: torch.device,
        world_size: int = 1,
        log: Callable[[dict[str, Any]], None] | None = None,
        rank: int = 0,
    ) -> None:
        super().__init__(config, data, device, world_size, log)
        g = config.gradient
        self.logits = initial_logits(self.space, device)
        # eps as ProxylessNAS; β1 = 0 by default so a logit off the step's paths gets no momentum update;
        # one Adam per position, as ProxylessNAS's one parameter per edge (see arch_optimizer)
        self.arch_optimizer = PositionAdam([self.logits], lr=g.arch_lr, betas=(g.arch_beta1, g.arch_beta2), eps=1e-8)
        arch_batch = g.arch_batch_size or config.data.batch_size
        self.validation = ValidationStream(data.holdout, arch_batch, rank, world_size)
        self.trained: set[tuple[int, ...]] = set()  # distinct architectures trained
        self.recent: list[list[int]] = []  # the last PATH_WINDOW paths trained
        self.curve: list[dict[str, float]] = []  # per log point: step, entropy, distinct, path_entropy
        #: ProxylessNAS's expected-cost term on the exported network's cost table (None: gradient.cost_weight 0)
        if g.latency_table:  # the exported network's measured latency beside its params and FLOPs
            try:
                self.cost_model = search_cost_model(self.space, data.image_size, self.supernet.child_options(),
                                                    g.latency_table)
            except ValueError as error:
                raise ConfigError(f"gradient.latency_table: {error}") from None
        self.cost_term = (CostTerm(self.cost_model, g.cost_metric, g.cost_target, g.cost_weight, g.cost_form)
                          if g.cost_weight > 0 else None)

    # --- paths --------------------------------------------------------------------------------
    def sample_path(self) -> tuple[Tensor, Tensor | None]:
        """α for this step, LongTensor[1, T] (line 2), and in mode two the second path per position [T].

        VAENAS-G: α ~ p_θ from the first step (Algorithm 3 line 2; before the first refit the
        untrained VAE, whose samples are close to uniform: per-position entropy within 0.3 % of
        log K on NAS-Bench-201, NASNet and ShuffleNet), the second path from softmax(w) without α.
        ProxylessNAS (sampling=softmax): mode two as its binarize (sample_two_paths), mode full
        α ~ softmax(w) (sample_softmax)."""
        g = self.config.gradient
        if g.sampling == "softmax":
            if g.mode == "two":
                return sample_two_paths(self.space, self.logits, self.arch_generator)
            return sample_softmax(self.space, self.logits, 1, self.arch_generator), None
        arch = self.vae.sample(1, self.arch_generator)
        return arch, (draw_other_path(self.logits, arch[0], self.arch_generator) if g.mode == "two" else None)

    def gates(self, other: Tensor | None) -> Gates:
        """The step's gates: mode two with its second path per position, or full."""
        return Gates(self.logits, "full") if other is None else Gates(self.logits, "two", other)

    def updated_positions(self, arch: Tensor) -> Tensor:
        """BoolTensor[T]: the positions whose logits this step updates, those where α's op is not
        `none` (ProxylessNAS's set_arch_param_grad gives a zero layer's edge no gradient)."""
        if self.space.zero_token is None:
            return torch.ones(self.space.length, dtype=torch.bool)
        return arch[0].cpu() != self.space.zero_token

    # --- Algorithm 3 --------------------------------------------------------------------------
    def arch_step(self, arch: Tensor, other: Tensor | None) -> Tensor:
        """Line 3: one Adam step of w on a validation batch through the gated supernet; returns the loss."""
        images, labels = next(self.validation)
        images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        images = images.contiguous(memory_format=torch.channels_last)  # as the weight step's (Trainer)
        self.supernet.train()
        self.arch_optimizer.zero_grad(set_to_none=True)
        autocast = self.trainer.autocast_dtype
        with torch.autocast(self.device.type, dtype=autocast, enabled=autocast is not None):
            logits = self.supernet(images, arch, gates=self.gates(other))
        loss = F.cross_entropy(logits.float(), labels)
        if self.cost_term is not None:  # its gradient reaches every logit through softmax(w)
            loss, _ = self.cost_term(loss, self.logits)
        loss.backward()  # the supernet weights' .grad too: the weight step sets them to None first
        grad = self.logits.grad
        if self.world_size > 1:
            dist.all_reduce(grad)
            grad.div_(self.world_size)
        before = self.logits.detach().clone()
        self.arch_optimizer.step(self.updated_positions(arch))
        if other is not None:  # keep the pair's total probability (ProxylessNAS rescale_updated_arch_param);
            # a position left alone (α's op `none`) is unchanged by it: its offset is exactly 0
            pairs = torch.stack([arch[0], other], dim=1).to(self.device)
            with torch.no_grad():
                self.logits.copy_(ops.rescale_updated_logits(self.logits, before, pairs))
        return loss.detach()

    def train(self, until: int | None = None, progress: Callable[[int], None] | None = None) -> None:
        """Iterations of lines 2-10 until `until` are done (default: train.steps)."""
        until = self.config.train.steps if until is None else until
        config = self.config
        while self.step < until:
            arch, other = self.sample_path()
            self.arch_digest = hashlib.sha256(self.arch_digest.encode() + arch.numpy().tobytes()).hexdigest()
            self.trained.add(tuple(arch[0].tolist()))
            self.recent = (self.recent + [arch[0].tolist()])[-PATH_WINDOW:]
            if self.on_step is not None:
                self.on_step(self.step, arch)
            arch_loss = self.arch_step(arch, other)
            images, labels = next(self.data.train)
            loss = self.trainer.step(self.step, images, labels, arch)
            self.step += 1
            if self.step % config.run.log_every == 0 or self.step == config.train.steps:
                point = {"step": self.step, "entropy": mean_entropy(self.logits), "distinct": len(self.trained),
                         "path_entropy": path_entropy(torch.tensor(self.recent), self.space)}
                if self.cost_term is not None:
                    point[f"expected_{self.cost_term.metric}"] = float(self.cost_term.expected(self.logits.detach()))
                self.curve.append(point)
                self.log({"kind": "train", **point, **self.skipped_record(), "loss": float(loss), "arch_loss": float(arch_loss),
                          "lr": self.trainer.optimizer.param_groups[0]["lr"]})
            if config.gradient.sampling == "vae" and self.step % config.vaenas.refit_every == 0:
                self.refit()
            if progress is not None:
                progress(self.step)
        finite = self.logits[torch.isfinite(self.logits)]  # −inf beyond a position's vocabulary
        check_identical(checksum([finite]), f"architecture logits at step {self.step}")

    def refit(self) -> dict[str, Any]:
        """Lines 6-9: N_s architectures from U, scored on the supernet, VAE.fit_topk."""
        v = self.config.vaenas
        archs = self.uniform.sample(v.n_samples, self.arch_generator)
        scores = self.score(archs)
        fit = self.vae.fit_topk(archs, scores, v.top_fraction, self.config.vae.n_iters)
        check_identical(checksum(self.vae.model.parameters()), f"VAE weights after the refit at step {self.step}")
        record: dict[str, Any] = {"kind": "refit", "step": self.step, "n_samples": len(archs),
                                  "score_mean": float(scores.mean()), "score_max": float(scores.max()),
                                  "vae_loss": fit["loss"]}
        self.refits.append(record)
        self.log(record)
        return record

    # --- result -------------------------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        """The found architecture (line 12), its supernet score, and the diversity measurements."""
        arch, repaired = most_probable_architecture(self.space, self.logits)
        p = torch.softmax(self.logits.detach().double().cpu(), dim=-1)
        return {
            "architecture": self.space.to_json(arch), "tokens": arch.tolist(),
            "repaired_positions": repaired, "sampling": self.config.gradient.sampling,
            "mode": self.config.gradient.mode, "supernet_score": float(self.score(arch[None])[0]),
            "cost": self.cost(arch), "expected_cost": dict(zip(("params", "flops", "latency_ms"), self.expected_cost())),
            "network": self.network(arch), "entropy": mean_entropy(self.logits),
            "max_entropy": float(torch.log(torch.tensor(self.space.vocab_sizes, dtype=torch.float64)).mean()),
            "distinct_trained": len(self.trained), "steps": self.step,
            "probabilities": [[round(float(q), 4) for q in row[:k]] for row, k in zip(p, self.space.vocab_sizes)],
            **self.skipped_summary(),
        }

    def expected_cost(self) -> list[float]:
        """[params, FLOPs(, latency ms)] expected of an architecture drawn from softmax(w) (cost_term.expected_cost)."""
        return expected_cost(self.cost_model, self.logits.detach().cpu()).tolist()

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["gradient"] = copy.deepcopy({  # a snapshot, as OneShotSearch's (Adam's state is live)
            "logits": self.logits.detach(), "arch_optimizer": self.arch_optimizer.state_dict(),
            "validation": self.validation.state_dict(), "trained": [list(a) for a in sorted(self.trained)],
            "curve": self.curve, "recent": self.recent,
        })
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        mine = copy.deepcopy(state["gradient"])  # Adam would keep and move the given tensors
        with torch.no_grad():
            self.logits.copy_(mine["logits"])
        self.arch_optimizer.load_state_dict(mine["arch_optimizer"])
        self.validation.load_state_dict(mine["validation"])
        self.trained = {tuple(a) for a in mine["trained"]}
        self.curve = [dict(point) for point in mine["curve"]]
        self.recent = [list(a) for a in mine["recent"]]


__all__ = [
    "GradientSearch", "ValidationStream", "mean_entropy", "most_probable_architecture", "sample_softmax",
    "sample_two_paths",
]
