"""Bad input to the retraining gets one line that says which: an architecture JSON of another space, an
invalid architecture, a recipe for the wrong space or dataset, a run folder without an architecture, ..."""

from __future__ import annotations

import json

import pytest
from retrain_helpers import ARCHITECTURES

NASNET_TOKENS = ARCHITECTURES["nasnet"]["tokens"]


def _error(retrain, *arguments) -> str:
    status, stdout, stderr = retrain(*arguments, "progress=false")
    assert status == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m vaenas.train: error: "), stderr
    return lines[0]


def test_an_architecture_of_another_space(retrain, arch_file):
    claimed = arch_file("mixed", {"space": "nasbench201", "tokens": NASNET_TOKENS})
    line = _error(retrain, f"arch={claimed}", "recipe=digits")
    assert "not a valid nasbench201 architecture" in line and "it is a valid nasnet architecture" in line


def test_an_invalid_architecture(retrain, arch_file):
    tokens = list(NASNET_TOKENS)
    tokens[14:16] = [0, 0]  # reduction cell, node 0: both its inputs none
    line = _error(retrain, f"arch={arch_file('bad', {'space': 'nasnet', 'tokens': tokens})}", "recipe=digits")
    assert "not a valid nasnet architecture" in line and "reduce cell, node 0 has no input" in line
    unknown = arch_file("unknown", {"space": "nasbench301", "tokens": [1]})
    assert "unknown search space 'nasbench301'" in _error(retrain, f"arch={unknown}", "recipe=digits")
    nameless = arch_file("nameless", {"tokens": [1, 2, 3, 1, 2, 3]})
    assert "names no search space" in _error(retrain, f"arch={nameless}", "recipe=digits")
    differ = arch_file("differ", {**ARCHITECTURES["nasnet"], "architecture": {"normal": [], "reduce": []}})
    assert "not a valid nasnet architecture" in _error(retrain, f"arch={differ}", "recipe=digits")


def test_tokens_and_description_that_disagree(retrain, arch_file):
    from vaenas.spaces import get_space

    space = get_space("nasbench201")
    document = {"space": "nasbench201", "tokens": [1, 1, 1, 1, 1, 1],
                "architecture": space.to_json(__import__("torch").tensor([3, 3, 3, 3, 3, 3]))}
    line = _error(retrain, f"arch={arch_file('two', document)}", "recipe=digits")
    assert "are different architectures" in line


def test_a_recipe_for_the_wrong_space(retrain, arch_file):
    line = _error(retrain, f"arch={arch_file('nasbench201')}", "recipe=cifar10", "data.root=/nowhere")
    assert "recipe: cifar10 trains nasnet architectures, but" in line
    assert "holds a nasbench201 one (recipes for nasbench201: digits, nasbench201)" in line


def test_a_recipe_for_the_wrong_dataset(retrain, arch_file):
    line = _error(retrain, f"arch={arch_file('nasnet')}", "recipe=imagenet_nasnet", "data.name=cifar10",
                  "data.root=/nowhere", "data.color_jitter=0")
    assert "data.name: recipe imagenet_nasnet is for imagenet, not cifar10" in line
    assert "(recipes for cifar10: cifar10, nasbench101, nasbench201)" in line


def test_a_run_folder_without_an_architecture(retrain, tmp_path):
    search = tmp_path / "search"
    search.mkdir()
    (search / "config.yaml").write_text("method: oneshot\nspace: nasnet\n")
    line = _error(retrain, f"arch={search}", "recipe=digits")
    assert f"arch: {search} holds no architecture.json: not the folder of a finished search" in line
    assert "no such file or folder" in _error(retrain, f"arch={tmp_path / 'nowhere'}", "recipe=digits")


def test_recipes_named_wrongly_or_twice_or_not_at_all(retrain, arch_file):
    arch = f"arch={arch_file('nasnet')}"
    assert "unknown recipe 'cifar' (did you mean 'cifar10'?)" in _error(retrain, arch, "recipe=cifar")
    assert "give the recipe once" in _error(retrain, arch, "recipe=digits", "--config", "digits")
    assert "recipe: name one, recipe=<name>" in _error(retrain, arch)
    assert "arch: give the architecture to retrain" in _error(retrain, "recipe=digits")
    assert "data.root: the cifar10 dataset needs the folder" in _error(retrain, arch, "recipe=cifar10")


@pytest.mark.parametrize("override, message", [
    ("network.nasnet.auxiliary=true", "network.nasnet.auxiliary: set by train.auxiliary_weight, not here"),
    ("network.nasnet.width=2", "network.nasnet: nasnet: unknown child options ['width']"),
    ("train.auxiliary_weight=0.4", "the network does not run on 16 px images"),  # DARTS's head needs 8x8 maps
    ("data.holdout=0", "data.holdout: digits has no test split"),
])
def test_network_and_data_options_the_recipe_cannot_take(retrain, arch_file, override, message):
    assert message in _error(retrain, f"arch={arch_file('nasnet')}", "recipe=digits", override)


def test_regularisers_of_nasnet_children_only(retrain, arch_file):
    line = _error(retrain, f"arch={arch_file('nasbench201')}", "recipe=digits", "train.drop_path=0.2")
    assert "train.drop_path: only NASNet children have drop path; this architecture is of nasbench201" in line


def test_a_search_run_folder_without_the_space_key_reads_it_from_config_yaml(retrain, tmp_path):
    """A one-shot search's architecture.json before the "space" key: the folder's config.yaml names the space."""
    from vaenas.train import read_architecture

    search = tmp_path / "search"
    search.mkdir()
    (search / "config.yaml").write_text("method: oneshot\nspace: nasbench201\n")
    (search / "architecture.json").write_text(json.dumps({"tokens": [3, 3, 1, 3, 1, 3], "found_by": "vae"}))
    architecture = read_architecture(search)
    assert (architecture.space, architecture.tokens) == ("nasbench201", (3, 3, 1, 3, 1, 3))
    # a search's architecture.json with its network entry (space, tokens, options), and the to_json form alone
    (search / "architecture.json").write_text(json.dumps(
        {"network": {"space": "nasnet", "tokens": NASNET_TOKENS, "options": {"C": 16}}}))
    assert read_architecture(search).space == "nasnet"
    from vaenas.spaces import get_space

    described = tmp_path / "described.json"
    described.write_text(json.dumps({"space": "nasnet", "architecture": get_space("nasnet").to_json(
        __import__("torch").tensor(NASNET_TOKENS))}))
    assert list(read_architecture(described).tokens) == NASNET_TOKENS
