"""What one seed of the tabular study produces (plain data that travels between ranks and is
saved as seeds/seed-<n>.json in the run folder), and the finished seeds of a run folder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from vaenas.runtime import RunFolder


@dataclass
class Curve:
    """best[q - 1]: best true accuracy (%) after q distinct queries."""

    part: str  # "seeded_evolution" (paper protocol) or "anytime"
    method: str
    noise: float
    seed: int
    best: list[float]
    # wall time of the run (any-time part); not part of equality: a resumed run equals a straight one
    seconds: float = field(default=0.0, compare=False)


@dataclass
class LoopRound:
    """Where one round of the VAENAS loop's queries came from (the report's diagnosis table)."""

    queried_before: int  # distinct queries before this round
    new: int  # new architectures queried this round
    from_sampler: int  # of them drawn from Γ; the rest were topped up uniformly
    drawn: int  # rows Γ drew this round
    repeats: int  # of those, rows already queried before this round
    sampler_accuracy: float  # mean true accuracy (%) of the from_sampler rows (nan if none)
    temperature: float  # decoder temperature of the round's last draw at `temperature` (not exploring)


@dataclass
class Found:
    """The best architecture one run found."""

    method: str
    noise: float
    seed: int
    arch: list[int]
    accuracy: float


@dataclass
class SeedResult:
    """Everything one seed produced, in plain Python (it travels between ranks)."""

    seed: int
    max_of_k: list[tuple[str, float, int, float]] = field(default_factory=list)  # (sampler, noise, K, best %)
    curves: list[Curve] = field(default_factory=list)
    found: list[Found] = field(default_factory=list)
    histogram: dict[str, list[float]] = field(default_factory=dict)  # sampler label -> accuracies (first seed)
    loop_rounds: list[LoopRound] = field(default_factory=list)  # the VAENAS loop's rounds (any-time part)

    def to_dict(self) -> dict:
        """A JSON-able dict (floats round-trip exactly through json: Python writes their repr)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict) -> SeedResult:
        """The SeedResult that to_dict described (JSON turns its tuples into lists: undone here)."""
        return cls(
            seed=int(document["seed"]),
            max_of_k=[tuple(entry) for entry in document["max_of_k"]],
            curves=[Curve(**curve) for curve in document["curves"]],
            found=[Found(**found) for found in document["found"]],
            histogram=dict(document["histogram"]),
            loop_rounds=[LoopRound(**entry) for entry in document.get("loop_rounds", [])],
        )


#: the run folder's group of finished seeds: seeds/seed-<n>.json, one SeedResult each
SEED_GROUP = "seeds"


def save_seed(folder: RunFolder, result: SeedResult) -> None:
    """seeds/seed-<n>.json, written atomically: it is there whole or not at all."""
    folder.save_unit(SEED_GROUP, f"seed-{result.seed}", result.to_dict())


def load_seeds(folder: RunFolder) -> dict[int, SeedResult]:
    """{seed: SeedResult} of every finished seed in the run folder."""
    results = {}
    for name, document in folder.load_units(SEED_GROUP).items():
        result = SeedResult.from_dict(document)
        if name != f"seed-{result.seed}":
            raise ValueError(f"{folder.unit_path(SEED_GROUP, name)} holds seed {result.seed}")
        results[result.seed] = result
    return results


def vae_label(noise: float) -> str:
    """The name of the VAE fitted at `noise` in histograms and tables."""
    return f"VAE, noise {noise:g} %"
