"""The VAENAS loop of the tabular any-time comparison: Algorithm 2's inner loop with real accuracies.

A small uniform warm-up, then rounds of N_s new architectures drawn from Γ, the VAE refitted warm on
the best few of all queries so far before each round (README "Tabular study" has the ablation that
chose each setting).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from vaenas.sampler import MixtureSampler, VAESampler, draw_new
from vaenas.search.evolution import DRAW_ROUNDS, TabularOracle, UniverseSampler, fill_with_new, top_up_uniformly
from vaenas.search.tabular.config import TabularConfig
from vaenas.search.tabular.results import LoopRound


def vaenas_loop(config: TabularConfig, oracle: TabularOracle, seed: int, generator: torch.Generator) -> list[LoopRound]:
    """The VAENAS loop (Algorithm 2's inner loop with real accuracies) on oracle's benchmark until
    its budget is spent; the VAE's weights are seeded by `seed`, every draw comes from `generator`.

    `loop_warmup` uniform queries; then rounds: fit the VAE on the best `top_fraction` (at least
    `top_min`) of everything queried so far (from scratch the first time, warm started after),
    draw `round_size` new architectures from Γ = (1-ε)U + ε·VAE, step ε.

    Queried architectures are rejected. A VAE fitted on a few architectures mostly repeats them
    (issue 9 measured 80-97 % of draws), so each round draws `draw_factor` rows per missing
    architecture, and each further draw of the round samples hotter (temperature x
    `temperature_growth`); what `draw_rounds` draws cannot find is topped up uniformly (on the
    sparse NB101-20k universe a quarter of the late queries). The last `explore_share` of each
    round is drawn from the same VAE at `explore_temperature`: when the best few sit in a local
    optimum, their close samples stay there (issue 9: one CIFAR-100 seed in 80 stuck for about
    140 queries). Returns each round's provenance.
    """
    anytime, benchmark = config.anytime, oracle.benchmark
    space, uniform = benchmark.space, UniverseSampler(benchmark)
    vae_config = dataclasses.replace(config.vae, batch_size=anytime.vae_batch_size)
    vae = VAESampler(space, vae_config, seed=seed)
    epsilon = 1.0 if anytime.sampler == "vae" else anytime.epsilon
    mixture = MixtureSampler(uniform, vae, epsilon, anytime.epsilon_inc)
    oracle.query(fill_with_new(oracle, lambda m: uniform.sample(m, generator), anytime.loop_warmup, DRAW_ROUNDS))
    rounds: list[LoopRound] = []
    while oracle.remaining > 0:
        archs, scores = oracle.history()
        best_first = torch.sort(scores, descending=True, stable=True).indices  # ties: the earlier query
        top = max(anytime.top_min, math.ceil(anytime.top_fraction * len(archs)))
        vae.fit(archs[best_first[:top]], anytime.first_fit_iters if not rounds else anytime.vae_iters)

        queried = set(oracle.queried_keys())
        drawn, repeats = 0, 0

        def draw(m: int, temperature: float) -> Tensor:
            """m rows of Γ at `temperature` (draw_new raises it `temperature_growth` times per call)."""
            nonlocal drawn, repeats
            rows = mixture.sample(m, generator, temperature, benchmark.contains, config.study.max_rounds)
            drawn += m
            repeats += sum(key in queried for key in space.canonical_key(rows))
            return rows

        before, size = oracle.used, min(anytime.round_size, oracle.remaining)
        exploring = math.floor(anytime.explore_share * size + 0.5)
        close_temperatures: list[float] = []
        new = draw_new(draw, size - exploring, space, rounds=anytime.draw_rounds, factor=anytime.draw_factor,
                       seen=oracle.queried_keys(), temperature=anytime.temperature,
                       growth=anytime.temperature_growth, temperatures=close_temperatures)
        new = draw_new(draw, len(new) + exploring, space, rounds=anytime.draw_rounds, factor=anytime.draw_factor,
                       seen=oracle.queried_keys(), found=new, temperature=anytime.explore_temperature,
                       growth=anytime.temperature_growth)
        accuracy = benchmark.accuracy(new).mean().item() if len(new) else math.nan
        oracle.query(top_up_uniformly(oracle, new, size))
        temperature = close_temperatures[-1] if close_temperatures else anytime.temperature
        rounds.append(LoopRound(before, oracle.used - before, len(new), drawn, repeats, accuracy, temperature))
        mixture.step()
    return rounds
