"""Typed configuration of the searches (tabular study; one-shot in oneshot_config): nested dataclasses, YAML files and key=value overrides.

A config is a tree of dataclasses with defaults. `load_config(path, overrides)` reads an optional
YAML file, applies overrides such as `study.seeds=3` or `vae.hidden_dim=128` (values parsed as YAML),
and checks every value's type and range. Any mistake raises ConfigError with a one-line message
that names the key and, for an unknown key, suggests the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vaenas.groundtruth import BENCHMARKS, NB201_DATASETS
from vaenas.sampler import VAEConfig

#: methods of the any-time comparison (same query budget for all)
ANYTIME_METHODS = ("random", "regularized_evolution", "vaenas", "vae_evolution")
#: packaged configs, usable as `--config tabular_nb101`
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A bad config: unknown key, wrong type or value out of range (message names the key)."""


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    above: float | None = None,
) -> Any:
    """A dataclass field with a description and the constraints load_config checks.

    Lists and dicts take a default_factory; choices, at_least, at_most and above apply to each element of a list.
    """
    metadata = {"help": help, "choices": choices, "at_least": at_least, "at_most": at_most, "above": above}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class BenchmarkConfig:
    name: str = option("nasbench201", "tabular benchmark (ground truth)", choices=BENCHMARKS)
    dataset: str = option(
        "cifar10", "dataset of the accuracies (nasbench101_20k: cifar10 only)", choices=tuple(NB201_DATASETS)
    )


@dataclass
class StudyConfig:
    enabled: bool = option(
        True, "run the paper protocol (Table 4, seeded evolution, Fig. 2); false: the any-time comparison only"
    )
    seeds: int = option(10, "number of repetitions (seeds seed, seed+1, ...); results are mean ± std", at_least=1)
    seed: int = option(0, "first seed", at_least=0)
    n_train: int = option(
        1000, "architectures with ground truth, drawn uniformly from the universe (paper: 6000)", at_least=1
    )
    top_fraction: float = option(
        0.25, "the VAE is fitted (vae.n_iters steps) on this top fraction of them (paper: 1500/6000)",
        above=0, at_most=1,
    )
    noise: list[float] = option(
        [0.0, 0.1, 0.5], "std (absolute %) of Gaussian noise on the accuracies the VAE and the evolution see",
        at_least=0,
    )
    ks: list[int] = option([10, 50, 100, 300], "K: best accuracy among K samples, VAE vs uniform", at_least=1)
    histogram_samples: int = option(5000, "samples per sampler in the Fig. 2 histogram (first seed)", at_least=1)
    max_rounds: int = option(200, "resampling rounds when restricting the VAE's samples to the universe", at_least=1)


@dataclass
class EvolutionConfig:
    # 150, not 300: on NAS-Bench-201 every evolution finds the optimum within 300 queries, which
    # hides the effect of the seeds (measured: 94.37 ± 0.00 for all six variants at 300).
    budget: int = option(
        150, "queries (distinct architectures, seeds included) of the seeded SPOS evolution", at_least=1
    )
    population: int = option(50, "architectures per generation (and seeds drawn from the sampler)", at_least=2)
    parents: int = option(10, "top-k of everything queried so far that breeds the next generation", at_least=2)
    mutation_fraction: float = option(
        0.5, "share of each generation made by mutation (the rest: crossover)", at_least=0, at_most=1
    )


@dataclass
class AnytimeConfig:
    enabled: bool = option(True, "run the any-time comparison (best accuracy vs number of queries)")
    methods: list[str] = option(list(ANYTIME_METHODS), "methods compared at the same budget", choices=ANYTIME_METHODS)
    budget: int = option(300, "queries per method and seed (distinct architectures)", at_least=1)
    noise: float = option(0.0, "std (absolute %) of Gaussian noise on the accuracies the methods see", at_least=0)
    report_at: list[int] = option([25, 50, 100, 200, 300], "budgets shown in results.md", at_least=1)
    # The VAENAS loop's settings: one for every benchmark (issue 9 tuned them on NB201 CIFAR-10 and
    # checked them on NB201 CIFAR-100 and NB101-20k; README "Tabular study" has the ablation).
    loop_warmup: int = option(20, "VAENAS loop: uniform queries before the first VAE fit", at_least=1)
    round_size: int = option(10, "VAENAS loop: N_s new architectures sampled from Γ per round", at_least=1)
    top_fraction: float = option(
        0.05, "VAENAS loop: refit the VAE on this top fraction of all queries so far (the paper's ratio K)",
        above=0, at_most=1,
    )
    top_min: int = option(5, "VAENAS loop: ... but on at least this many of the best queries", at_least=1)
    first_fit_iters: int = option(200, "VAENAS loop: VAE iterations of the first fit (from scratch)", at_least=1)
    vae_iters: int = option(50, "VAENAS loop: VAE iterations per later refit (warm start)", at_least=1)
    vae_batch_size: int = option(16, "VAENAS loop: VAE minibatch size of its fits", at_least=1)
    temperature: float = option(
        1.5, "VAENAS loop: decoder sampling temperature of a round's first draw", above=0
    )
    temperature_growth: float = option(
        1.2, "VAENAS loop: factor on the temperature for each further draw of a round when too few "
        "samples are new (a concentrated VAE mostly repeats what was queried)", at_least=1,
    )
    explore_share: float = option(
        0.1, "VAENAS loop: share of each round's new architectures drawn at explore_temperature (a VAE "
        "fitted on the best few draws near them; when they sit in a local optimum, hotter samples leave it)",
        at_least=0, at_most=1,
    )
    explore_temperature: float = option(
        3.0, "VAENAS loop: decoder temperature of the exploring share's first draw", above=0
    )
    draw_factor: int = option(16, "VAENAS loop: samples drawn per still-missing new architecture", at_least=1)
    draw_rounds: int = option(
        8, "VAENAS loop: draws per round before the rest is topped up uniformly from the universe", at_least=1
    )
    sampler: str = option(
        "mixture", "VAENAS loop: Γ = mixture (1-ε)U + εVAE, or the VAE after the warm-up", choices=("mixture", "vae")
    )
    epsilon: float = option(1.0, "VAENAS loop: ε of the first round after the warm-up", at_least=0, at_most=1)
    epsilon_inc: float = option(0.0, "VAENAS loop: ε increment per round", at_least=0, at_most=1)
    population: int = option(50, "regularized evolution: population (oldest removed)", at_least=2)
    sample_size: int = option(10, "regularized evolution: tournament size", at_least=1)
    warmup: int = option(
        100, "vae_evolution: uniform queries the VAE is fitted on (vae.n_iters) before seeding evolution", at_least=1
    )
    warmup_top_fraction: float = option(
        0.5, "vae_evolution: the VAE is fitted on this top fraction of the warm-up", above=0, at_most=1
    )


@dataclass
class TabularConfig:
    """The tabular VAENAS study (paper §5.3 protocol plus any-time curves)."""

    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    anytime: AnytimeConfig = field(default_factory=AnytimeConfig)
    # fewer, smaller steps than VAEConfig's defaults: the default study must finish in ~2 min on 2 cores
    vae: VAEConfig = field(default_factory=lambda: VAEConfig(n_iters=300, batch_size=64))
    out: str = option("", "run folder (default: runs/<benchmark>-<time>); also --out")
    progress: bool = option(True, "show progress bars on stderr")


#: descriptions of options whose dataclass (VAEConfig, owned by vaenas.sampler) gives none
_SECTION_HELP = {
    "vae.latent_dim": "VAE: dimension of z",
    "vae.embedding_dim": "VAE: token embedding size",
    "vae.hidden_dim": "VAE: LSTM hidden size (encoder and decoder)",
    "vae.kl_weight": "VAE: weight of the KL term of the negative ELBO",
    "vae.lr": "VAE: Adam learning rate",
    "vae.batch_size": "VAE: minibatch size (drawn with replacement)",
    "vae.n_iters": "VAE: training steps of a full fit (paper protocol, vae_evolution)",
    "vae.device": "VAE: device of training and decoding (cpu, cuda)",
    "vae.num_threads": "VAE: intra-op CPU threads while training (null: torch's setting)",
}


# --- reading and checking ---------------------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def all_keys(cls: type = TabularConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the config tree, e.g. ['benchmark.name', ..., 'progress']."""
    keys = []
    for name, hint in _hints(cls).items():
        if dataclasses.is_dataclass(hint):
            keys += all_keys(hint, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _unknown_key(key: str, cls: type = TabularConfig) -> ConfigError:
    keys = all_keys(cls)
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if not close:  # a misspelt leaf under a right section: compare leaves only
        leaf = key.rsplit(".", 1)[-1]
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in keys}
        close = [by_leaf[m] for m in difflib.get_close_matches(leaf, by_leaf, n=1, cutoff=0.6)]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint} (see --help)")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) if typing.get_origin(hint) is None else str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """value checked against the type hint (int, float, str, bool, list/tuple of them, X | None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    bad = ConfigError(f"{key}: expected {_type_name(hint)}, got {value!r} ({type(value).__name__})")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if hint is Any:
        return value
    if hint is dict or origin is dict:  # free-form options (e.g. a supernet's constructor options)
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise bad


def _check_range(value: Any, metadata: typing.Mapping[str, Any], key: str) -> None:
    for element in value if isinstance(value, (list, tuple)) else [value]:
        if element is None:  # an optional value left unset: nothing to range-check
            continue
        choices = metadata.get("choices")
        if choices is not None and element not in choices:
            close = difflib.get_close_matches(str(element), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{key}: unknown value {element!r}{hint}; choose one of {', '.join(map(str, choices))}")
        if metadata.get("at_least") is not None and element < metadata["at_least"]:
            raise ConfigError(f"{key}: {element!r} is below the minimum {metadata['at_least']}")
        if metadata.get("at_most") is not None and element > metadata["at_most"]:
            raise ConfigError(f"{key}: {element!r} is above the maximum {metadata['at_most']}")
        if metadata.get("above") is not None and element <= metadata["above"]:
            raise ConfigError(f"{key}: {element!r} must be greater than {metadata['above']}")


def _section_shorthand(cls: type, value: Any) -> Any:
    """`data: digits` for `data: {name: digits}`: a scalar given for a section that has a `name` key."""
    if not isinstance(value, dict) and "name" in _hints(cls):
        return {"name": value}
    return value


def _build(defaults: Any, data: dict[str, Any], prefix: str = "", root: type | None = None) -> Any:
    """A copy of the dataclass instance `defaults` with the values of the nested dict `data`;
    unknown keys and bad values raise ConfigError (suggestions drawn from the keys of `root`)."""
    root = type(defaults) if root is None else root
    data = _section_shorthand(type(defaults), data) if prefix else data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {data!r}")
    cls = type(defaults)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in data:
        if name not in fields:
            raise _unknown_key(f"{prefix}{name}", root)
    values = {}
    for name, value in data.items():
        key, hint = f"{prefix}{name}", hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(getattr(defaults, name), value, f"{key}.", root)
        else:
            values[name] = _coerce(value, hint, key)
            if isinstance(values[name], dict):  # sub-keys of a free-form option add to its defaults
                values[name] = {**getattr(defaults, name), **values[name]}
            _check_range(values[name], fields[name].metadata, key)
    try:
        return dataclasses.replace(defaults, **values)
    except (TypeError, ValueError) as error:  # a section's own __post_init__ checks
        where = prefix.rstrip(".") or "config"
        # a section that names its keys itself (DataConfig: "data.name: ...") needs no second prefix
        raise ConfigError(str(error) if str(error).startswith(prefix) else f"{where}: {error}") from error


def _set_dotted(tree: dict[str, Any], key: str, value: Any, root: type = TabularConfig) -> None:
    """tree[a][b] = value for key 'a.b', checking that each part names a section or option.

    A free-form dict option takes sub-keys (`supernet.nasnet.C=8`); a section with a
    `name` key takes a scalar for it (`data=digits` is `data.name=digits`)."""
    parts = key.split(".")
    cls: Any = root
    for depth, part in enumerate(parts):
        if cls is dict or typing.get_origin(cls) is dict:  # below a free-form option: any key
            if depth < len(parts) - 1:
                tree = tree.setdefault(part, {})
                continue
            tree[part] = value
            return
        hints = _hints(cls) if dataclasses.is_dataclass(cls) else {}
        if part not in hints:
            raise _unknown_key(key, root)
        cls = hints[part]
        if depth < len(parts) - 1:
            if not (dataclasses.is_dataclass(cls) or cls is dict or typing.get_origin(cls) is dict):
                raise _unknown_key(key, root)
            tree = tree.setdefault(part, {})
            if not isinstance(tree, dict):
                raise ConfigError(f"{'.'.join(parts[: depth + 1])}: expected a mapping of keys")
    if dataclasses.is_dataclass(cls):
        if "name" in _hints(cls) and not isinstance(value, dict):
            tree.setdefault(parts[-1], {})
            if isinstance(tree[parts[-1]], dict):
                tree[parts[-1]]["name"] = value
                return
        raise ConfigError(f"{key} is a section; set one of its keys, e.g. {all_keys(cls, key + '.')[0]}=...")
    tree[parts[-1]] = value


def resolve_config_path(path: str | Path) -> Path:
    """path itself, or a packaged config named like 'tabular_nb101' (with or without .yaml)."""
    path = Path(path)
    if path.is_file():
        return path
    packaged = CONFIG_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if packaged.is_file():
        return packaged
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config file {str(path)!r} not found (packaged configs: {', '.join(names)})")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a config file (or a packaged config's name); ConfigError if not YAML."""
    resolved = resolve_config_path(path)
    try:
        tree = yaml.safe_load(resolved.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{resolved}: not valid YAML: {str(error).splitlines()[0]}") from error
    if not isinstance(tree, dict):
        raise ConfigError(f"{resolved}: expected a mapping of keys at the top level")
    return tree


def load_config(
    path: str | Path | None = None, overrides: typing.Sequence[str] = (), cls: type = TabularConfig
) -> Any:
    """The `cls` config (default: TabularConfig) of a YAML file (or the defaults) with `key=value`
    overrides applied, checked (the module's check() for TabularConfig, else config.check())."""
    tree: dict[str, Any] = read_yaml(path) if path is not None else {}
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad override {override!r}: expected key=value, e.g. study.seeds=3")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"{key}: cannot parse value {text!r}") from error
        _set_dotted(tree, key.strip(), value, cls)
    config = _build(cls(), tree)
    if cls is TabularConfig:
        check(config)
    else:
        config.check()
    return config


def check(config: TabularConfig) -> None:
    """Constraints between options; ConfigError naming the key."""
    if config.benchmark.name == "nasbench101_20k" and config.benchmark.dataset != "cifar10":
        raise ConfigError(
            f"benchmark.dataset: nasbench101_20k has cifar10 accuracies only, not {config.benchmark.dataset!r}"
        )
    if config.evolution.parents > config.evolution.population:
        raise ConfigError(
            f"evolution.parents: {config.evolution.parents} parents exceed the population {config.evolution.population}"
        )
    if config.anytime.sample_size > config.anytime.population:
        raise ConfigError(
            f"anytime.sample_size: {config.anytime.sample_size} exceeds anytime.population {config.anytime.population}"
        )
    if not config.study.ks:
        raise ConfigError("study.ks: give at least one K")
    if not config.study.noise:
        raise ConfigError("study.noise: give at least one noise level (0 for none)")
    if config.anytime.enabled and not config.anytime.methods:
        raise ConfigError("anytime.methods: give at least one method (or anytime.enabled=false)")


def check_budgets(config: TabularConfig, universe_size: int) -> None:
    """Sizes that must fit the benchmark's universe of `universe_size` architectures (and a study
    that runs something)."""
    if not (config.study.enabled or config.anytime.enabled):
        raise ConfigError("study.enabled and anytime.enabled are both false: nothing to run")
    for key, value in (
        ("study.n_train", config.study.n_train),
        ("evolution.budget", config.evolution.budget),
        ("anytime.budget", config.anytime.budget),
    ):
        if value > universe_size:
            raise ConfigError(f"{key}: {value} exceeds the {universe_size} architectures of {config.benchmark.name}")


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain YAML-ready data (tuples become lists)."""
    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def describe_options(defaults: Any | None = None, prefix: str = "") -> list[str]:
    """One help line per option of the config tree `defaults` (default: TabularConfig()):
    'key=default  (type) description'."""
    defaults = TabularConfig() if defaults is None else defaults
    lines = []
    hints = _hints(type(defaults))
    for f in dataclasses.fields(defaults):
        hint, key, default = hints[f.name], f"{prefix}{f.name}", getattr(defaults, f.name)
        if dataclasses.is_dataclass(hint):
            lines += describe_options(default, f"{key}.")
            continue
        text = f.metadata.get("help") or _SECTION_HELP.get(key, "")
        if f.metadata.get("choices"):
            text += f" [{'|'.join(map(str, f.metadata['choices']))}]"
        lines.append(f"  {key}={_show(default)}  ({_type_name(hint)}) {text}".rstrip())
    return lines


def _show(value: Any) -> str:
    """value as it would be typed in an override (YAML, no spaces)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if value == "":
        return '""'
    return str(value)
