"""The one-shot config: packaged configs, and bad values refused with one line naming the key."""

from __future__ import annotations

import pytest
import torch

from vaenas.config import ConfigError, load_config
from vaenas.data import DataError
from vaenas.data.config import DATASETS
from vaenas.search import PACKAGED_CONFIGS
from vaenas.search.oneshot import OneShotConfig


@pytest.mark.parametrize("name", sorted(p.stem for p in PACKAGED_CONFIGS.glob("oneshot_*.yaml")))
def test_packaged_configs_serve_their_datasets_image_size_on_one_thread(name):
    config = load_config(name, ["data.root=/data"], cls=OneShotConfig)
    assert config.data.size == DATASETS[config.data.name], (name, config.data.size)
    assert config.train.threads == 1, name


def test_defaults_are_the_8_px_digits_demo_and_follow_another_dataset():
    assert OneShotConfig().data.size == 8
    assert load_config(None, ["data=cifar10", "data.root=/data"], cls=OneShotConfig).data.size == 32


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("vae.hidden_dim=0", "vae.hidden_dim: 0 is below the minimum 1"),
        ("vae.latent_dim=0", "vae.latent_dim: 0 is below the minimum 1"),
        ("vae.batch_size=0", "vae.batch_size: 0 is below the minimum 1"),
        ("vae.kl_weight=-1", "vae.kl_weight: -1.0 is below the minimum 0"),
        ("vae.lr=-1", "vae.lr: -1.0 must be greater than 0"),
        ("vae.n_iters=0", "vae.n_iters: 0 is below the minimum 1"),
        ("vae.device=foo", "vae.device: 'foo' is not a device; choose cpu, cuda or cuda:N"),
        ("train.device=gpu", "train.device: 'gpu' is not a device; choose auto, cpu, cuda or cuda:N"),
        ("supernet.nasbench201={channels: 0}", "supernet.nasbench201.channels: 0 is below the minimum 1"),
        ("supernet.nasbench201.chanels=8", "did you mean 'supernet.nasbench201.channels'?"),
        ("supernet.shufflenet.width=0", "supernet.shufflenet.width: 0.0 must be greater than 0"),
        ("run.seed=18446744073709551616", "run.seed: 18446744073709551616 is above the maximum"),
        ("data.image_size=100000", "data.image_size: 100000 is above the maximum 1024"),
    ],
)
def test_bad_values_are_refused_naming_the_key(override, message):
    with pytest.raises((ConfigError, DataError)) as error:
        load_config(None, [override], cls=OneShotConfig)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
@pytest.mark.parametrize("key", ["train.device", "vae.device"])
def test_a_gpu_device_without_a_gpu_is_refused(key):
    with pytest.raises(ConfigError, match=f"{key}: 'cuda' asks for a GPU, but torch finds no CUDA device"):
        load_config(None, [f"{key}=cuda"], cls=OneShotConfig)


def test_budgets_in_yaml_1_1_exponent_form_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("search:\n  max_flops: 5.0e6\n  max_params: 1e6\n")
    config = load_config(path, cls=OneShotConfig)
    assert config.search.max_flops == 5.0e6 and config.search.max_params == 1e6


def test_an_evolution_asking_for_more_distinct_architectures_than_the_space_holds_is_refused():
    with pytest.raises(ConfigError, match="evaluates 16016 distinct architectures, and nasbench201 has 15,625"):
        load_config(None, ["search.population=4000", "search.generations=4"], cls=OneShotConfig)
    load_config(None, ["space=nasnet", "search.population=4000", "search.generations=4"], cls=OneShotConfig)
