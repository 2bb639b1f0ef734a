"""The cost a search limits and reports is the cost of the network it exports (its supernet's
options, the data's classes and image size), not that of the space's default child."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vaenas.config import load_config
from vaenas.data import build_search_data
from vaenas.search.gradient import GradientConfig, GradientSearch
from vaenas.search.oneshot import OneShotConfig, OneShotSearch
from vaenas.spaces import get_space

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

#: the data of a tiny run (digits: 10 classes)
DATA = ["progress=false", "data.batch_size=16", "data.holdout=32", "data.calibration_images=16",
        "data.eval_batch_size=32", "eval.group_size=4"]


def counted(module: torch.nn.Module, image_size: int) -> dict[str, float]:
    """Trainable parameters and forward FLOPs of one image, counted on the module itself."""
    params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module.eval()(torch.randn(1, 3, image_size, image_size))
    return {"params": float(params), "flops": float(counter.get_total_flops())}


def _search(cls, config_cls, overrides):
    config = load_config(None, DATA + overrides, cls=config_cls)
    return cls(config, build_search_data(config.data), torch.device("cpu"))


@pytest.mark.parametrize("cls, config_cls, overrides", [
    (OneShotSearch, OneShotConfig, ["space=nasbench201", "supernet.nasbench201.channels=4", "supernet.nasbench201.cells_per_stage=1", "data.image_size=8"]),
    (OneShotSearch, OneShotConfig, ["space=shufflenet", "supernet.shufflenet.width=0.25",
                                    "supernet.shufflenet.small_input=true", "data.image_size=32"]),
    (GradientSearch, GradientConfig, ["space=nasnet", "supernet.nasnet.C=4", "supernet.nasnet.layers=3",
                                      "data.image_size=16", "gradient.baseline=false"]),
], ids=["oneshot-nasbench201", "oneshot-shufflenet", "gradient-nasnet"])
def test_the_search_costs_the_network_it_exports(cls, config_cls, overrides):
    search = _search(cls, config_cls, overrides)
    size = search.data.image_size
    for arch in search.space.sample(3, torch.Generator().manual_seed(0)):
        child = search.supernet.export_child(arch)
        assert search.cost(arch) == counted(child, size)
        assert child.state_dict().keys() == search.space.build_child(arch, **search.network(arch)["options"]).state_dict().keys()
    default = search.space.cost(arch)  # the space's default child at its default size: far off
    assert default["params"] > 2 * search.cost(arch)["params"]


def test_a_flops_limit_applies_to_the_exported_network():
    """A limit at the exported networks' largest FLOPs (every edge a 3x3 conv) passes every
    candidate (before: the default child's FLOPs, ~100x more, rejected everything, and the search
    failed after training)."""
    largest = get_space("nasbench201").cost(torch.full((6,), 3), image_size=8, channels=4, cells_per_stage=1,
                                            num_classes=10)["flops"]
    search = _search(OneShotSearch, OneShotConfig, [
        "space=nasbench201", "supernet.nasbench201.channels=4", "supernet.nasbench201.cells_per_stage=1", "data.image_size=8", "search.seeds=4",
        "search.seeding=vae", "search.population=2", "search.parents=2", "search.generations=1",
        f"search.max_flops={largest}"])
    assert search.cost(torch.full((6,), 3))["flops"] == largest
    search.start_search()
    while search.search_step():
        pass
    assert len(search.evolutions["vae"].archs) == 6 and search.result()["cost"]["flops"] <= largest


def test_a_budget_no_architecture_meets_is_refused_before_anything_runs(tmp_path, capsys):
    from vaenas.search.oneshot.cli import main

    run = tmp_path / "run"
    assert main(["method=oneshot", *DATA, "supernet.nasbench201.channels=4", "supernet.nasbench201.cells_per_stage=1", "data.image_size=8",
                 "search.max_params=1", f"out={run}"]) == 2
    error = capsys.readouterr().err
    assert "search.max_params=1: none of 4096 uniformly drawn nasbench201 architectures is within it (they range over" in error
    assert len(error.strip().splitlines()) == 1 and not run.exists()  # refused before a folder was made


def test_seeds_are_drawn_uniformly_when_the_vae_cannot_meet_the_budget(monkeypatch, caplog):
    """The VAE's rejection sampling gives up (RuntimeError) when too few of its samples are within
    the limits; the final search then seeds from uniform draws within them instead of failing."""
    search = _search(OneShotSearch, OneShotConfig, [
        "space=nasbench201", "supernet.nasbench201.channels=4", "supernet.nasbench201.cells_per_stage=1", "data.image_size=8", "search.seeds=4",
        "search.seeding=vae", "search.population=2", "search.parents=2", "search.generations=1",
        "search.max_params=1e9"])

    def gives_up(*arguments, **options):
        raise RuntimeError("VAESampler: only 0 of 4 architectures were valid and accepted after 20 rounds")

    monkeypatch.setattr(search.vae, "sample", gives_up)
    caplog.set_level("WARNING")
    search.start_search()
    assert len(search.evolutions["vae"].archs) == 4 and search.evolutions["vae"].uniform_topups == 4
    assert "VAE seeds: VAESampler: only 0 of 4" in caplog.text and "topped up uniformly" in caplog.text


NB201_TINY = ["space=nasbench201", "supernet.nasbench201.channels=4", "supernet.nasbench201.cells_per_stage=1",
              "data.image_size=8"]


def test_every_architecture_the_final_search_scores_is_within_a_flops_band():
    """search.min_flops / max_flops: a band (SPOS's FLOPs ranges); the seeds, every bred candidate and
    the result are within it, checked with the cost table before the supernet scores anything."""
    space = get_space("nasbench201")
    table = space.cost_model(8, channels=4, cells_per_stage=1, num_classes=10)
    flops = table.costs(space.sample(2000, torch.Generator().manual_seed(0)))[:, 1]
    low, high = float(flops.quantile(0.35)), float(flops.quantile(0.6))
    search = _search(OneShotSearch, OneShotConfig, [*NB201_TINY, "search.seeds=4", "search.seeding=both",
                                                    "search.population=3", "search.parents=2", "search.generations=2",
                                                    f"search.min_flops={low}", f"search.max_flops={high}"])
    scored = []
    evaluate = search.oracle.evaluate
    search.oracle.evaluate = lambda archs: (scored.append(archs), evaluate(archs))[1]
    search.start_search()
    while search.search_step():
        pass
    scored = torch.cat(scored)
    assert len(scored) >= 8
    counted = torch.tensor([search.space.cost(arch, image_size=8, **search.supernet.child_options())["flops"]
                            for arch in scored])  # built and counted: the table's filter was exact
    assert bool(((counted >= low) & (counted <= high)).all())
    assert low <= search.result()["cost"]["flops"] <= high


@pytest.mark.parametrize("overrides, message", [
    (["search.min_flops=2e6", "search.max_flops=1e6"],
     "search.min_flops: 2e+06 is above search.max_flops 1e+06: no network is within an empty band"),
    (["search.min_params=5", "search.max_params=4"], "search.min_params: 5 is above search.max_params 4"),
    (["search.min_flops=0"], "search.min_flops: 0.0 must be greater than 0"),
])
def test_an_empty_or_bad_band_is_a_config_error(overrides, message):
    from vaenas.config import ConfigError

    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        load_config(None, DATA + overrides, cls=OneShotConfig)


def test_a_lower_bound_no_architecture_reaches_is_refused_before_anything_runs(tmp_path, capsys):
    from vaenas.search.oneshot.cli import main

    run = tmp_path / "run"
    assert main(["method=oneshot", *DATA, *NB201_TINY, "search.min_params=1e9", f"out={run}"]) == 2
    error = capsys.readouterr().err
    assert "search.min_params=1e+09: none of 4096 uniformly drawn nasbench201 architectures is within it" in error
    assert not run.exists()


def test_spos_constrained_sampling_trains_only_architectures_within_the_band():
    """train.within_budget with vaenas.epsilon_inc=0: SPOS's uniform sampling within a FLOPs band."""
    space = get_space("nasbench201")
    table = space.cost_model(8, channels=4, cells_per_stage=1, num_classes=10)
    flops = table.costs(space.sample(2000, torch.Generator().manual_seed(0)))[:, 1]
    low, high = float(flops.quantile(0.3)), float(flops.quantile(0.5))
    search = _search(OneShotSearch, OneShotConfig, [
        *NB201_TINY, "train.steps=6", "train.warmup_steps=0", "vaenas.refit_every=100", "vaenas.epsilon_inc=0",
        "train.within_budget=true", f"search.min_flops={low}", f"search.max_flops={high}"])
    trained = []
    search.on_step = lambda step, archs: trained.append(archs)
    search.train()
    trained = torch.cat(trained)
    assert len(trained) == 6
    counted = torch.tensor([space.cost(arch, image_size=8, **search.supernet.child_options())["flops"]
                            for arch in trained])
    assert bool(((counted >= low) & (counted <= high)).all())


def test_constrained_sampling_needs_a_bound():
    from vaenas.config import ConfigError

    with pytest.raises(ConfigError, match="train.within_budget: no bound to sample within"):
        load_config(None, DATA + ["train.within_budget=true"], cls=OneShotConfig)


def test_the_run_folder_shows_accuracy_against_cost_within_the_band(tmp_path):
    import json

    from vaenas.search.oneshot.cli import main

    run = tmp_path / "run"
    assert main(["method=oneshot", *DATA, *NB201_TINY, "train.steps=4", "train.warmup_steps=0", "vaenas.refit_every=2",
                 "vaenas.n_samples=4", "vae.n_iters=2", "search.seeds=3", "search.population=2", "search.parents=2",
                 "search.generations=1", "search.min_flops=2e5", "search.max_flops=6e5", f"out={run}"]) == 0
    found = json.loads((run / "architecture.json").read_text())
    assert 2e5 <= found["cost"]["flops"] <= 6e5 and (run / "cost.png").stat().st_size > 1000


def test_a_latency_budget_by_a_latency_table(tmp_path, capsys):
    """search.max_latency with a table of the exported network: every scored architecture within it by
    the table; a table of another network, or a bound without a table, is refused before training."""
    import json

    from vaenas.search.oneshot.cli import main
    from vaenas.spaces.latency import measure_latency_table

    space = get_space("nasbench201")
    options = {"channels": 4, "cells_per_stage": 1, "num_classes": 10}
    table, document = measure_latency_table(space, 8, repeats=2, warmup=1, **options)
    path = tmp_path / "latency.json"
    path.write_text(json.dumps(document))
    latencies = table.costs(space.sample(500, torch.Generator().manual_seed(0)))[:, 0]
    limit = float(latencies.quantile(0.5))
    search = _search(OneShotSearch, OneShotConfig, [*NB201_TINY, "search.seeds=3", "search.seeding=uniform",
                                                    "search.population=2", "search.parents=2", "search.generations=1",
                                                    f"search.latency_table={path}", f"search.max_latency={limit}"])
    search.start_search()
    while search.search_step():
        pass
    scored = search.evolutions["uniform"].archs
    assert len(scored) == 5 and bool((table.costs(scored)[:, 0] <= limit).all())
    assert search.result()["cost"]["latency_ms"] <= limit
    other = tmp_path / "other.json"
    assert main(["method=oneshot", *DATA, *NB201_TINY, "supernet.nasbench201.channels=8", f"search.latency_table={path}",
                 "search.max_latency=1", f"out={other}"]) == 2
    assert "search.latency_table: " in capsys.readouterr().err and not other.exists()
    with pytest.raises(Exception, match="search.max_latency / min_latency need a latency table"):
        load_config(None, DATA + ["search.max_latency=1"], cls=OneShotConfig)
