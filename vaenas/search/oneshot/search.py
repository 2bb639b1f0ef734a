"""The one-shot VAENAS search, paper Algorithm 2 ("VAENAS-OS"), end to end.

    Γ = (1-ε)·U + ε·p_θ, ε = 0                                  (MixtureSampler)
    for i = 1 .. n_iters^sup:
        α ~ Γ (G architectures per step), train the supernet on them         (train)
        if i mod n_vae == 0:
            N_s architectures ~ Γ, scored on the supernet (BN recalibrated per architecture,
            G-group evaluation, split across ranks), VAE.fit_topk(top K %, n_iters^vae)
            + Fig. 2 on the supernet: pure-VAE vs pure-uniform samples scored
        ε ← ε + ε_inc
    N_seeds ~ p_θ (and/or U, the ablation) -> SPOS evolution on supernet scores  (final_search)

Every rank draws the same architectures from the shared `arch_generator` (seeded by run.seed):
nothing is broadcast per step. `OneShotSearch` holds the whole state; `state_dict` /
`load_state_dict` carry every part a bit-for-bit resume needs (weights, optimizer, VAE, ε, step,
data position, generators, evolution); vaenas.runtime.checkpoints wraps it into the checkpoint file.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from vaenas.data import DataError, SearchData
from vaenas.groundtruth import GroundTruthError, ground_truth, kendall_tau
from vaenas.groundtruth.ranking import rank_against, true_percentile
from vaenas.runtime import rng_state, set_rng_state
from vaenas.runtime.collectives import broadcast_buffers, check_identical, checksum, split_evaluate, union_across_ranks
from vaenas.sampler import MixtureSampler, UniformSampler, VAESampler, draw_new
from vaenas.search.budget import budget_filter
from vaenas.search.oneshot.config import OneShotConfig
from vaenas.search.oneshot.costs import search_cost_model
from vaenas.search.oneshot.final_search import Evolution, SupernetOracle
from vaenas.search.oneshot.train import Trainer
from vaenas.spaces import get_space
from vaenas.supernet import clear_group_statistics, get_supernet, network_description, recalibrate
from vaenas.supernet.evaluation import evaluate_architectures

logger = logging.getLogger(__name__)

#: fewest architectures with a true accuracy that a report's τ is computed over (τ of 2 is ±1)
MIN_TAU_ROWS = 5


def known_tau(scores: Tensor, true: Tensor) -> float:
    """Kendall τ of supernet scores against true accuracies; nan (shown '–') over fewer than
    MIN_TAU_ROWS architectures, where it says nothing."""
    return kendall_tau(scores, true) if len(true) >= MIN_TAU_ROWS else float("nan")

#: seed offsets of the independent random streams derived from run.seed
_VAE_SEED, _ARCH_STREAM, _SEARCH_STREAM, _GLOBAL_STREAM = 1000, 2000, 3000, 4000
#: draws of the evolution's seeds, and the temperature factor of each further draw (the tabular
#: loop's DRAW_ROUNDS and temperature_growth defaults)
_SEED_ROUNDS, _SEED_GROWTH = 8, 1.2
class _ScoringProgress:
    """progress(done, total) of a long evaluation: a log line at most every PERIOD seconds (a
    refit of N_s = 20 on 756 images took 4-5 minutes on the CPU with nothing shown, issue 17)."""

    PERIOD = 30.0

    def __init__(self) -> None:
        self.started = self.shown = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.shown >= self.PERIOD and done < total:
            self.shown = now
            logger.info("scored %d of %d architectures on the supernet (%.0f s)", done, total, now - self.started)


class OneShotSearch:
    """Algorithm 2 on one rank. `log(record)` receives every metrics record (rank 0 writes them)."""

    def __init__(
        self,
        config: OneShotConfig,
        data: SearchData,
        device: torch.device,
        world_size: int = 1,
        log: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config, self.data, self.device, self.world_size = config, data, device, world_size
        self.log = log or (lambda record: None)
        seed = config.run.seed
        self.space = get_space(config.space)
        # the same initial weights on every rank: built from the run seed, the global stream restored
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.supernet = get_supernet(
                self.space, num_classes=data.num_classes, **config.supernet.options(config.space)
            )
        self.supernet.to(device)
        # the global torch stream, which ShuffleNet's dropout reads, starts from the run seed as well: a run
        # is then a function of run.seed, not of what ran before it in the process (state_dict carries it on)
        torch.manual_seed(seed + _GLOBAL_STREAM)
        self.vae = VAESampler(self.space, config.vae, seed=seed + _VAE_SEED)
        self.uniform = UniformSampler(self.space)
        self.mixture = MixtureSampler(
            self.uniform, self.vae, epsilon=0.0,
            epsilon_inc=config.vaenas.epsilon_inc, epsilon_max=config.vaenas.epsilon_max,
        )
        self.arch_generator = torch.Generator().manual_seed(seed + _ARCH_STREAM)
        global_batch = config.data.batch_size * world_size
        t = config.train
        self.trainer = Trainer(
            self.supernet, lr=t.lr * global_batch / t.lr_batch, momentum=t.momentum, nesterov=t.nesterov,
            weight_decay=t.weight_decay, label_smoothing=t.label_smoothing, steps=t.steps, schedule=t.schedule,
            device=device, bf16=t.bf16, world_size=world_size, warmup=t.warmup_steps, grad_clip=t.grad_clip,
        )
        #: the exact batched cost of the exported networks (vaenas.spaces.cost_table): no network is built
        self.cost_model = search_cost_model(self.space, data.image_size, self.supernet.child_options(),
                                            config.search.latency_table)
        self.accept = budget_filter(self.cost_model, config.search.budget())
        try:
            self.benchmark = ground_truth(config.search.ground_truth, config.space, config.data.name)
        except GroundTruthError as error:  # a bad file of one's own: bad data, one line (exit status 1)
            raise DataError(f"search.ground_truth: {error}") from None
        self.oracle = SupernetOracle(self.space, self.score)
        self.step = 0  # training steps done
        self.arch_digest = ""  # chained sha256 of every architecture trained, in order
        self.refits: list[dict[str, Any]] = []
        self.epsilons: list[tuple[int, float]] = []  # (step, ε) at every log point
        self.evolutions: dict[str, Evolution] = {}
        self.seedings = ["vae", "uniform"] if config.search.seeding == "both" else [config.search.seeding]
        self.on_step: Callable[[int, Tensor], None] | None = None  # tests: (step, archs [G, T])
        self.skipped: set[str] = set()  # undecodable image files the loaders skipped (data.skip_corrupt)

    # --- the exported network -----------------------------------------------------------------
    def cost(self, arch: Tensor) -> dict[str, float]:
        """{'params', 'flops'} of the network export_child gives for arch [T]: the space's child
        with this supernet's options (width / channels / cells, num_classes of the data), its
        FLOPs counted on one image at the data's size. The search limits and the reports use it; the
        cost table gives it (equal to space.cost's count of the built child, without building it)."""
        return self.cost_model.cost(arch)

    def network(self, arch: Tensor) -> dict[str, Any]:
        """architecture.json's "network" entry of arch [T]: what load_found_network rebuilds it from."""
        return network_description(self.supernet, arch, self.data.image_size)

    # --- scoring ------------------------------------------------------------------------------
    def _score_here(self, archs: Tensor) -> Tensor:
        return evaluate_architectures(
            self.supernet, archs, self.data.calibration, self.data.holdout,
            group_size=self.config.eval.group_size, device=self.device, autocast_dtype=self.trainer.autocast_dtype,
            progress=_ScoringProgress(),
        ).accuracy

    def score(self, archs: Tensor) -> Tensor:
        """Supernet accuracy (%, held-out) of archs [N, T] as float64 [N], the work split across ranks."""
        return split_evaluate(self._score_here, archs)

    def _true(self, archs: Tensor) -> tuple[Tensor, Tensor]:
        """(true accuracy of the rows the table knows, their mask) of archs [N, T]."""
        known = self.benchmark.contains(archs)
        return self.benchmark.accuracy(archs[known]), known

    # --- Algorithm 2 --------------------------------------------------------------------------
    def train(self, until: int | None = None, progress: Callable[[int], None] | None = None) -> None:
        """Training steps (lines 2-12) until `until` steps are done (default: train.steps)."""
        until = self.config.train.steps if until is None else until
        config = self.config
        while self.step < until:
            # train.within_budget: SPOS's constrained sampling, every trained architecture within the bounds
            within = self.accept if config.train.within_budget else None
            archs = self.mixture.sample(config.train.group_size, self.arch_generator, accept=within)
            self.arch_digest = hashlib.sha256(self.arch_digest.encode() + archs.numpy().tobytes()).hexdigest()
            if self.on_step is not None:
                self.on_step(self.step, archs)
            images, labels = next(self.data.train)
            loss = self.trainer.step(self.step, images, labels, archs)
            self.step += 1
            if self.step % config.run.log_every == 0 or self.step == config.train.steps:
                self.epsilons.append((self.step, self.mixture.epsilon))
                self.log({"kind": "train", "step": self.step, "loss": float(loss), "epsilon": self.mixture.epsilon,
                          "lr": self.trainer.optimizer.param_groups[0]["lr"], **self.skipped_record()})
            if self.step % config.vaenas.refit_every == 0:
                self.refit()
            self.mixture.step()
            if self.step == config.train.steps:  # the ranks' BN running statistics, rank 0's from here on
                broadcast_buffers(self.supernet)
            if progress is not None:
                progress(self.step)

    def refit(self) -> dict[str, Any]:
        """Lines 5-9: N_s architectures from Γ scored, the VAE refitted on the top K %; plus Fig. 2."""
        v = self.config.vaenas
        archs = self.mixture.sample(v.n_samples, self.arch_generator)
        from_vae = self.mixture.last_from_vae.clone()
        scores = self.score(archs)
        fit = self.vae.fit_topk(archs, scores, v.top_fraction, self.config.vae.n_iters)
        # every rank fitted the same VAE on the same data with the same seeds: check it
        check_identical(checksum(self.vae.model.parameters()), f"VAE weights after the refit at step {self.step}")
        broadcast_buffers(self.supernet)
        record: dict[str, Any] = {
            "kind": "refit", "step": self.step, "epsilon": self.mixture.epsilon,
            "n_samples": len(archs), "from_vae": int(from_vae.sum()),
            "score_mean": float(scores.mean()), "score_max": float(scores.max()), "vae_loss": fit["loss"],
        }
        if v.compare_samples:
            vae_archs = self.vae.sample(v.compare_samples, self.arch_generator)
            uniform_archs = self.uniform.sample(v.compare_samples, self.arch_generator)
            both = self.score(torch.cat([vae_archs, uniform_archs]))
            vae_scores, uniform_scores = both[: len(vae_archs)], both[len(vae_archs):]
            record.update(vae_mean=float(vae_scores.mean()), vae_max=float(vae_scores.max()),
                          uniform_mean=float(uniform_scores.mean()), uniform_max=float(uniform_scores.max()))
            if self.benchmark is not None:
                for name, rows in (("vae", vae_archs), ("uniform", uniform_archs)):
                    true, known = self._true(rows)
                    record[f"{name}_true_mean"] = float(true.mean()) if len(true) else float("nan")
        if self.benchmark is not None:
            true, known = self._true(archs)
            record["kendall_tau"] = known_tau(scores[known], true)
        self.refits.append(record)
        self.log(record)
        return record

    # --- final search (lines 13-15) -----------------------------------------------------------
    def start_search(self) -> None:
        """Draw the seeds of every evolution of search.seeding and score them (generation 0).

        N_seeds distinct architectures: the sampler (the VAE at temperature 1, p_θ itself, line
        13) is drawn again, each time _SEED_GROWTH hotter, while its draws repeat (a fitted VAE
        concentrates: 16 draws held 3 distinct architectures before), as the tabular loop draws
        its rounds (vaenas.sampler.draw_new); what _SEED_ROUNDS draws cannot find is topped up
        uniformly (Evolution.seed), as SPOS fills its population with random candidates."""
        s = self.config.search
        for index, seeding in enumerate(self.seedings):
            if seeding in self.evolutions:
                continue
            generator = torch.Generator().manual_seed(self.config.run.seed + _SEARCH_STREAM + index)
            if seeding == "vae":
                def sample(m: int, temperature: float) -> Tensor:
                    try:
                        return self.vae.sample(m, generator, temperature, accept=self.accept)  # limits checked first
                    except RuntimeError as error:  # a VAE that cannot meet the budget: uniform seeds instead
                        logger.warning("VAE seeds: %s; the seeds are topped up uniformly", error)
                        return torch.empty(0, self.space.length, dtype=torch.long)
            else:
                def sample(m: int, temperature: float) -> Tensor:
                    return self.uniform.sample(m, generator, accept=self.accept)
            seeds = draw_new(sample, s.seeds, self.space, rounds=_SEED_ROUNDS, growth=_SEED_GROWTH)
            evolution = Evolution(
                self.space, self.oracle, population=s.population, parents=s.parents,
                mutation_fraction=s.mutation_fraction, generator=generator, accept=self.accept, mutation=s.mutation,
            )
            evolution.seed(seeds, size=s.seeds)
            self.evolutions[seeding] = evolution
            self.log({"kind": "seeds", "seeding": seeding, "drawn_distinct": len(seeds),
                      "uniform_topups": evolution.uniform_topups})
            self._log_generation(seeding, evolution)

    def search_step(self) -> bool:
        """One generation of the first evolution not finished; False when all are done."""
        for seeding in self.seedings:
            evolution = self.evolutions[seeding]
            if evolution.generation <= self.config.search.generations:
                evolution.step()
                self._log_generation(seeding, evolution)
                return True
        return False

    def _log_generation(self, seeding: str, evolution: Evolution) -> None:
        arch, score = evolution.best()
        record = {"kind": "evolution", "seeding": seeding, "generation": evolution.generation - 1,
                  "evaluated": len(evolution.archs), "best_score": score, "arch": arch.tolist()}
        if self.benchmark is not None and bool(self.benchmark.contains(arch[None])[0]):
            record["best_true"] = float(self.benchmark.accuracy(arch[None])[0])
        self.log(record)

    # --- data ----------------------------------------------------------------------------------
    def skipped_record(self) -> dict[str, int]:
        """{"skipped_images": count} of the files this rank's loaders skipped so far ({} unless
        data.skip_corrupt); newly skipped ones are logged as a warning."""
        if not self.config.data.skip_corrupt:
            return {}
        loaders = [self.data.train, self.data.holdout, self.data.calibration] + ([self.data.test] if self.data.test else [])
        new = set().union(*(loader.skipped for loader in loaders)) - self.skipped
        if new:
            self.skipped |= new
            logger.warning("skipped %d undecodable image file(s) (data.skip_corrupt), %d so far: %s", len(new),
                           len(self.skipped), ", ".join(sorted(new)[:3]) + (", ..." if len(new) > 3 else ""))
        return {"skipped_images": len(self.skipped)}

    def skipped_summary(self) -> dict[str, Any]:
        """The result's record of skipped files, every rank's (a collective: call it on every rank)."""
        if not self.config.data.skip_corrupt:
            return {}
        self.skipped_record()
        files = sorted(union_across_ranks(self.skipped))
        return {"skipped_images": {"count": len(files), "files": files}}

    def result(self) -> dict[str, Any]:
        """The found architecture (best supernet score of the first seeding) and the comparison."""
        found_by = self.seedings[0]
        arch, score = self.evolutions[found_by].best()
        summary: dict[str, Any] = {
            "architecture": self.space.to_json(arch), "tokens": arch.tolist(), "found_by": found_by,
            "supernet_score": score, "cost": self.cost(arch), "network": self.network(arch), "evolutions": {},
            "holdout_images": self.data.holdout.num_images, **self.skipped_summary(),
        }
        if self.benchmark is not None:
            summary["ground_truth"] = self.benchmark.source
        for seeding, evolution in self.evolutions.items():
            best, best_score = evolution.best()
            entry: dict[str, Any] = {"best_score": best_score, "tokens": best.tolist(), "evaluated": len(evolution.archs),
                                     "curve": list(evolution.curve), "uniform_topups": evolution.uniform_topups}
            if self.benchmark is not None:
                true, known = self._true(evolution.archs)
                if bool(known[int(evolution.scores.argmax())]):
                    entry["best_true"] = float(self.benchmark.accuracy(best[None])[0])
                    entry["best_true_percentile"] = true_percentile(entry["best_true"], self.benchmark.accuracies)
                entry["kendall_tau"] = known_tau(evolution.scores[known], true)
            summary["evolutions"][seeding] = entry
        if self.benchmark is not None and "best_true" in summary["evolutions"][found_by]:
            summary["true_accuracy"] = summary["evolutions"][found_by]["best_true"]
            summary["table_best"] = self.benchmark.best()[1]
        if self.benchmark is not None and self.config.search.ranked_cells:
            summary["table_ranking"] = self.table_ranking(self.config.search.ranked_cells)
        return summary

    def table_ranking(self, count: int) -> dict[str, float]:
        """How the final supernet ranks `count` architectures of the ground truth (all of them when it
        holds fewer, else a fixed draw of seed 0, the same for every run and method): Kendall τ,
        Spearman, τ in the true top half, precision@10 (vaenas.groundtruth.ranking), and the count.
        A collective: the scoring is split across ranks."""
        universe, truth = self.benchmark.universe, self.benchmark.accuracies
        if len(universe) > count:
            rows = torch.randperm(len(universe), generator=torch.Generator().manual_seed(0))[:count]
            universe, truth = universe[rows], truth[rows]
        return {**rank_against(self.score, universe, truth), "architectures": len(universe)}

    def export_child(self, arch: Tensor) -> torch.nn.Module:
        """The child network of arch [T] with the supernet's weights and BN statistics recalibrated for it."""
        arch = arch[None]
        with recalibrate(self.supernet, 1):
            for images, _ in self.data.calibration:
                self.supernet(images.to(self.device), arch)
        try:
            return self.supernet.export_child(arch[0], group=0)
        finally:
            clear_group_statistics(self.supernet)

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a bit-for-bit resume needs (tensors and plain data: torch.load(weights_only=True)).

        A snapshot: the supernet's and the optimizer's state_dicts alias the live weights and momentum
        buffers, which training updates in place, so the whole state is copied (a state kept in memory
        would otherwise change under its owner)."""
        state = {
            "step": self.step,
            "supernet": self.supernet.state_dict(),
            "optimizer": self.trainer.optimizer.state_dict(),
            "vae": self.vae.state_dict(),
            "mixture": self.mixture.state_dict(),
            "arch_generator": self.arch_generator.get_state(),
            "arch_digest": self.arch_digest,
            "data": self.data.train.state_dict(),
            "skipped": sorted(self.skipped),
            # the global streams: dropout (ShuffleNet's) draws from torch's; the data loaders have generators
            # of their own (vaenas.data.loaders), so nothing draws from it at a step a straight run would not
            "rng": rng_state(),
            "refits": self.refits,
            "epsilons": [list(e) for e in self.epsilons],
            # the oracle's cache is the union of the evolutions' histories: restored from them
            "evolutions": {k: e.state_dict() for k, e in self.evolutions.items()},
        }
        return copy.deepcopy(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state` (state_dict's); copied first, since the optimizers' load_state_dict
        keeps the given tensors as their buffers and training would then move them."""
        state = copy.deepcopy(state)
        self.step = int(state["step"])
        self.supernet.load_state_dict(state["supernet"])
        self.trainer.optimizer.load_state_dict(state["optimizer"])
        self.vae.load_state_dict(state["vae"])
        self.mixture.load_state_dict(state["mixture"])
        self.arch_generator.set_state(state["arch_generator"])
        self.arch_digest = str(state["arch_digest"])
        self.skipped = set(state.get("skipped", ()))
        self.data.train.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        self.refits = list(state["refits"])
        self.epsilons = [tuple(e) for e in state["epsilons"]]
        for seeding, evolution_state in state["evolutions"].items():
            s = self.config.search
            evolution = Evolution(
                self.space, self.oracle, population=s.population, parents=s.parents,
                mutation_fraction=s.mutation_fraction, generator=torch.Generator(), accept=self.accept,
            )
            evolution.load_state_dict(evolution_state)
            self.evolutions[seeding] = evolution
