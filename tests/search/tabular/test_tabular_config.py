"""Config of the tabular study: defaults, YAML files, key=value overrides and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vaenas.config import ConfigError, all_keys, describe_options, load_config, to_dict
from vaenas.search.tabular import TabularConfig, check_budgets


def test_defaults_equal_the_packaged_nb201_config():
    assert load_config(None, cls=TabularConfig) == TabularConfig()
    assert load_config("tabular_nb201", cls=TabularConfig) == TabularConfig()
    nb101 = load_config("tabular_nb101", cls=TabularConfig)
    assert nb101.benchmark.name == "nasbench101_20k" and nb101.study.n_train == 6000


def test_overrides_are_typed_and_nested():
    config = load_config(None, ["study.seeds=5", "vae.hidden_dim=128", "study.noise=[0, 0.1]", "anytime.enabled=false",
                                "benchmark.dataset=cifar100", "out=runs/x"], cls=TabularConfig)
    assert config.study.seeds == 5
    assert config.vae.hidden_dim == 128
    assert config.vae.n_iters == TabularConfig().vae.n_iters  # the study's VAE defaults survive an override
    assert config.study.noise == [0.0, 0.1] and all(isinstance(v, float) for v in config.study.noise)
    assert config.anytime.enabled is False
    assert config.benchmark.dataset == "cifar100" and config.out == "runs/x"


def test_yaml_file_then_overrides(tmp_path: Path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"study": {"seeds": 2, "ks": [5, 20]}, "vae": {"lr": 0.01}}))
    config = load_config(path, ["study.seeds=4"], cls=TabularConfig)
    assert config.study.seeds == 4 and config.study.ks == [5, 20] and config.vae.lr == 0.01


def test_resolved_config_round_trips(tmp_path: Path):
    config = load_config(None, ["study.seeds=2", "anytime.methods=[random]"], cls=TabularConfig)
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(to_dict(config)))
    assert load_config(path, cls=TabularConfig) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("study.sedds=3", "unknown config key 'study.sedds'; did you mean 'study.seeds'?"),
        ("vae.hiden_dim=3", "did you mean 'vae.hidden_dim'?"),
        ("seeds=3", "did you mean 'study.seeds'?"),
        ("studdy.seeds=3", "did you mean 'study.seeds'?"),
    ],
)
def test_unknown_key_suggests_the_closest(override, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?").replace(".", r"\.")):
        load_config(None, [override], cls=TabularConfig)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("study.seeds=three", "study.seeds: expected int, got 'three'"),
        ("study.seeds=true", "study.seeds: expected int"),
        ("study.seeds=2.5", "study.seeds: expected int"),
        ("study.noise=0.1", "study.noise: expected list"),
        ("study.ks=[10,x]", r"study.ks\[1\]: expected int"),
        ("anytime.enabled=3", "anytime.enabled: expected bool"),
        ("study.seeds=0", "study.seeds: 0 is below the minimum 1"),
        ("study.top_fraction=0", "study.top_fraction: 0.0 must be greater than 0"),
        ("study.top_fraction=1.5", "above the maximum"),
        ("benchmark.name=nb201", "benchmark.name: unknown value 'nb201' .*did you mean 'nasbench201'"),
        ("anytime.methods=[random,evolution]", "anytime.methods: unknown value 'evolution'"),
        ("evolution.parents=80", "evolution.parents: 80 parents exceed the population 50"),
        ("study", "expected key=value"),
        ("study=3", "study is a section"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override], cls=TabularConfig)


def test_bad_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml", cls=TabularConfig)
    broken = tmp_path / "broken.yaml"
    broken.write_text("study: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken, cls=TabularConfig)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("study:\n  sedds: 3\n")
    with pytest.raises(ConfigError, match="did you mean 'study.seeds'"):
        load_config(unknown, cls=TabularConfig)


def test_budgets_must_fit_the_universe():
    with pytest.raises(ConfigError, match="anytime.budget: 500 exceeds the 100 architectures"):
        check_budgets(load_config(None, ["anytime.budget=500", "study.n_train=50", "evolution.budget=50"], cls=TabularConfig), 100)


def test_help_lists_every_option_with_default():
    lines = describe_options(TabularConfig())
    for key in all_keys(TabularConfig):
        assert any(line.strip().startswith(f"{key}=") for line in lines), key
    assert "  study.seeds=10  (int) " in "\n".join(lines)
    assert all(len(line.split(")", 1)[1].strip()) > 0 for line in lines), "every option has a description"
