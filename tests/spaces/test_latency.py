"""Latency tables (vaenas.spaces.latency): measured in place on the CPU, saved with what they were
measured with, refused for any other setting; the check against children built end to end."""

from __future__ import annotations

import json

import pytest
import torch

from vaenas.spaces import get_space
from vaenas.spaces.latency import (
    check_against_children,
    load_latency_table,
    main,
    measure_latency_table,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

NASNET = {"C": 4, "layers": 3, "num_classes": 3}
QUICK = {"repeats": 2, "warmup": 1}


@pytest.fixture(scope="module")
def nasnet_table(tmp_path_factory):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # measured at one thread (the one_thread fixture is per test)
    try:
        space = get_space("nasnet")
        table, document = measure_latency_table(space, 16, **QUICK, **NASNET)
    finally:
        torch.set_num_threads(previous)
    path = tmp_path_factory.mktemp("latency") / "nasnet.json"
    path.write_text(json.dumps(document))
    return space, table, document, path


def test_the_table_sums_measured_parts(nasnet_table):
    space, table, document, _ = nasnet_table
    assert table.keys == ("latency_ms",) and table.choices.shape == (28, 8, 1)
    assert bool((table.choices[:, 0] == 0).all())  # `none` builds nothing
    assert bool((table.choices[:, 4:] > 0).all())  # every separable / dilated conv takes time
    assert bool((table.group_costs > 0).all())  # the preprocessing of each cell input
    archs = space.sample(5, torch.Generator().manual_seed(0))
    live = (archs != 0)[:, None, :] & table.groups[None]
    by_hand = (table.fixed[0] + table.choices[torch.arange(28), archs, 0].sum(1)
               + live.any(2).double() @ table.group_costs[:, 0])
    torch.testing.assert_close(table.costs(archs)[:, 0], by_hand)
    measured = document["measured_with"]
    assert measured["device"] == "cpu" and measured["batch_size"] == 1 and measured["threads"] == 1
    assert measured["options"]["C"] == 4 and measured["image_size"] == 16 and "torch" in document["software"]


def test_a_saved_table_loads_for_its_setting_and_is_refused_for_others(nasnet_table):
    space, table, _, path = nasnet_table
    loaded = load_latency_table(path, space, 16, **NASNET)
    archs = space.sample(8, torch.Generator().manual_seed(1))
    assert torch.equal(loaded.costs(archs), table.costs(archs))
    for options, size, batch, field in [({**NASNET, "C": 8}, 16, 1, "options"), (NASNET, 32, 1, "image_size"),
                                        (NASNET, 16, 4, "batch_size")]:
        with pytest.raises(ValueError, match=f"measured with {field}="):
            load_latency_table(path, space, size, batch_size=batch, **options)
    torch.set_num_threads(2)
    try:
        with pytest.raises(ValueError, match="measured with threads=1, asked for threads=2"):
            load_latency_table(path, space, 16, **NASNET)
    finally:
        torch.set_num_threads(1)


def test_check_against_built_children(nasnet_table):
    _, table, _, _ = nasnet_table
    check = check_against_children(table, 4, **QUICK)
    assert len(check["measured_ms"]) == 4 and all(ms > 0 for ms in check["measured_ms"])
    assert check["mape_percent"] >= 0 and -1 <= check["spearman"] <= 1


def test_the_cli_writes_the_table_and_its_check(tmp_path, capsys):
    out = tmp_path / "nb201.json"
    assert main(["nasbench201", "--image-size", "8", "--option", "channels=4", "--option", "cells_per_stage=1",
                 "--threads", "1", "--repeats", "2", "--warmup", "1", "--check", "3", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["measured_with"]["options"] == {"channels": 4, "cells_per_stage": 1}
    assert document["check"]["children"] == 3 and "MAPE" in capsys.readouterr().out
    assert main(["nasbench201", "--option", "width=2", "--out", str(out)]) == 2
    assert "width" in capsys.readouterr().err


def test_nasbench101_has_no_latency_table():
    with pytest.raises(ValueError, match="nasbench101: no additive table"):
        measure_latency_table(get_space("nasbench101"), 8, stem_channels=8)


def test_equivalent_option_spellings_find_the_same_table(nasnet_table):
    """NASNet's reductions=None stands for layers//3 and 2*layers//3: a table measured with either
    spelling loads for the other (the gradient search asks with its supernet's explicit indices)."""
    space, _, document, path = nasnet_table
    explicit = {**NASNET, "reductions": [1, 2]}
    assert load_latency_table(path, space, 16, runtime=False, **explicit).fixed.tolist() == [document["fixed_ms"]]
    with pytest.raises(ValueError, match="measured with options="):
        load_latency_table(path, space, 16, runtime=False, **{**NASNET, "reductions": [0, 2]})
