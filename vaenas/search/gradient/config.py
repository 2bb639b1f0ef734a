"""Configuration of the gradient search (paper §4.3, Algorithm 3, "VAENAS-G"), `method=gradient`.

The one-shot config (vaenas.search.oneshot.config) plus a `gradient` section; the same machinery
(YAML + key=value overrides, resume fingerprint). Algorithm 3's inputs map to keys as follows:

    n_iters     -> train.steps            n_iters^vae -> vae.n_iters
    n_vae       -> vaenas.refit_every     N_s         -> vaenas.n_samples
    K           -> vaenas.top_fraction

Unused here, and refused (GradientConfig.unused_keys): vaenas.epsilon_*, vaenas.compare_samples,
train.group_size (one path per step) and the `search` section (the final architecture is the argmax
of w, not an evolution).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from vaenas.config import ConfigError, option
from vaenas.data import DataConfig
from vaenas.ops.gated import MODES
from vaenas.search.oneshot.config import (
    NASBench201Options,
    NASNetOptions,
    OneShotConfig,
    ShuffleNetOptions,
    SupernetConfig,
    TrainConfig,
    VAENASConfig,
)

#: spaces whose supernet takes gates (vaenas.supernet.gates)
GRADIENT_SPACES = ("nasbench201", "nasnet", "shufflenet")


def demo_supernets() -> SupernetConfig:
    """The CPU demo's reduced supernets (full size: supernet.nasnet.C=16 supernet.nasnet.layers=8, ...)."""
    return SupernetConfig(nasbench201=NASBench201Options(channels=8, cells_per_stage=1),
                          nasnet=NASNetOptions(C=4, layers=3), shufflenet=ShuffleNetOptions(width=0.5, small_input=True))


def demo_data() -> DataConfig:
    """The CPU demo's data: digits at 16 px (the one-shot defaults are the digits ground truth's 8 px)."""
    return DataConfig(name="digits", image_size=16, batch_size=64, holdout=200, calibration_images=64,
                      eval_batch_size=200, load_test=False)


@dataclass
class GradientSection:
    sampling: str = option(
        "vae", "paths: vae (VAENAS-G: from p_θ from the first step, Algorithm 3) or softmax (plain ProxylessNAS)",
        choices=("vae", "softmax"),
    )
    mode: str = option(
        "two", "gate gradients: two (the path and one more, ProxylessNAS's memory-light mode: with softmax "
        "sampling a pair drawn from softmax(w), the path from the pair) or full (every candidate, recomputed in "
        "backward)", choices=MODES,
    )
    arch_lr: float = option(
        0.05, "Adam learning rate of the architecture logits w (ProxylessNAS: 1e-3 over 120 epochs; the "
        "demo's 150 iterations need more)", above=0,
    )
    arch_beta1: float = option(0.0, "Adam β1 of w (ProxylessNAS: 0, so logits off the path do not drift)",
                               at_least=0, at_most=1)
    arch_beta2: float = option(0.999, "Adam β2 of w", at_least=0, at_most=1)
    arch_batch_size: int | None = option(
        None, "validation images per architecture step (null: data.batch_size); drawn from the held-out split",
        at_least=1,
    )
    cost_weight: float = option(
        0.0, "weight of the expected-cost term in the architecture loss (ProxylessNAS; vaenas.search.gradient."
        "cost_term): β of cost_form=mul_log, λ of add_linear; 0: no term", at_least=0,
    )
    cost_target: float | None = option(
        None, "the cost the term pulls towards, in gradient.cost_metric units of the exported network (one image at "
        "data.image_size); needed when cost_weight > 0", above=0,
    )
    cost_metric: str = option("flops", "what the term's expectation counts (latency: milliseconds by "
                              "gradient.latency_table)", choices=("flops", "params", "latency"))
    latency_table: str = option(
        "", "a latency table (JSON of `python -m vaenas.spaces.latency`) of the exported network, for "
        "cost_metric=latency; refused when measured for other child options or image size")
    cost_form: str = option(
        "mul_log", "mul_log: loss·(log E/log target)^β (ProxylessNAS's default), add_linear: loss + λ(E − target)/"
        "target", choices=("mul_log", "add_linear"),
    )
    baseline: bool = option(
        True, "also run plain ProxylessNAS (sampling=softmax, same seed and steps) in RUN_DIR/proxylessnas and "
        "plot both runs' entropy of softmax(w) and distinct architectures trained",
    )


@dataclass
class GradientConfig(OneShotConfig):
    """The gradient search (paper §4.3, Algorithm 3); defaults: the CPU demo."""

    method: str = option("gradient", "search method (gradient: Algorithm 3)", choices=("gradient",))
    space: str = option("nasnet", "search space", choices=GRADIENT_SPACES)
    supernet: SupernetConfig = field(default_factory=demo_supernets)
    data: DataConfig = field(default_factory=demo_data)
    # the demo: 150 iterations of both steps, refits at 50, 100, 150 (~0.5 s of CPU per iteration);
    # SGD at DARTS's 0.025 (0.1, the one-shot NB201 demo's, diverged on the NASNet supernet)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=150, lr=0.025, weight_decay=3e-4, warmup_steps=0,
                                                                grad_clip=None))
    vaenas: VAENASConfig = field(default_factory=lambda: VAENASConfig(refit_every=50, n_samples=16,
                                                                       compare_samples=0))
    gradient: GradientSection = field(default_factory=GradientSection)

    #: what the one-shot config has and Algorithm 3 does not use: refused, and left out of --help
    unused_keys: ClassVar[dict[str, str]] = {
        "search": "the gradient search returns the argmax of its architecture logits; it runs no evolution "
                  "(this key is for method=oneshot)",
        "vaenas.epsilon_inc": "the gradient search samples every path from the VAE (Γ = p_θ, paper eq. 6): no ε",
        "vaenas.epsilon_max": "the gradient search samples every path from the VAE (Γ = p_θ, paper eq. 6): no ε",
        "vaenas.compare_samples": "only the one-shot search compares VAE and uniform samples at its refits",
        "train.group_size": "the gradient search trains one path per step",
        "train.within_budget": "the gradient search has no search.* bounds; its cost term is gradient.cost_*",
    }

    def check(self) -> None:
        if self.space not in GRADIENT_SPACES:
            raise ConfigError(
                f"space: {self.space!r} has no gated supernet; choose one of {', '.join(GRADIENT_SPACES)}"
            )
        g = self.gradient
        if g.cost_weight > 0 and g.cost_target is None:
            raise ConfigError("gradient.cost_target: the expected-cost term (gradient.cost_weight > 0) needs a target "
                              f"in {g.cost_metric}")
        if g.cost_weight > 0 and g.cost_metric == "latency" and not g.latency_table:
            raise ConfigError("gradient.latency_table: cost_metric=latency needs a latency table of the exported "
                              "network (python -m vaenas.spaces.latency)")
        if g.cost_weight > 0 and g.cost_form == "mul_log" and g.cost_target <= 1:
            raise ConfigError(f"gradient.cost_target: {g.cost_target:g} must be above 1 for cost_form=mul_log "
                              "(it divides by log target)")
        super().check()
