"""The gradient search (Algorithm 3): gated supernet forwards against the explicit gated-sum
reference, the argmax repair, softmax sampling, and tiny runs end to end (resume bit for bit,
plot and architecture written, plain ProxylessNAS baseline)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from vaenas.runtime import RunFolder, load_checkpoint
from vaenas.search.gradient import initial_logits, most_probable_architecture, sample_softmax
from vaenas.search.gradient.cli import main
from vaenas.spaces import get_space
from vaenas.supernet import get_supernet
from vaenas.supernet.gates import Gates

#: Algorithm 3 in a few seconds: NB201 at 4 channels, 8 px; refits at steps 3 and 6
TINY = [
    "method=gradient", "space=nasbench201", "progress=false", "supernet.nasbench201.channels=4", "supernet.nasbench201.cells_per_stage=1",
    "data.image_size=8", "data.batch_size=16", "data.holdout=48", "data.calibration_images=16",
    "data.eval_batch_size=48", "train.steps=6", "vaenas.refit_every=3", "vaenas.n_samples=4", "vae.n_iters=5",
    "vae.batch_size=8", "eval.group_size=4", "run.checkpoint_every=2", "run.log_every=1", "gradient.baseline=false",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _supernet(space_name: str):
    space = get_space(space_name)
    torch.manual_seed(0)
    options = {"nasbench201": {"channels": 4, "cells_per_stage": 1}, "nasnet": {"C": 2, "layers": 3},
               "shufflenet": {"width": 0.25, "small_input": True, "dropout": 0.0}}[space_name]
    return space, get_supernet(space, num_classes=3, **options).double()


@pytest.mark.parametrize("space_name", ["nasbench201", "nasnet", "shufflenet"])
@pytest.mark.parametrize("mode", ["two", "full"])
def test_gated_supernet_matches_the_explicit_gated_sum(space_name, mode, monkeypatch):
    """Same logits as the plain forward; the logits' and weights' gradients of the recompute
    backend equal those of the reference (every candidate run, autograd through the gates)."""
    space, supernet = _supernet(space_name)
    size = 32 if space_name == "shufflenet" else 8
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, size, size, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 1])
    arch = space.sample(1, generator)
    logits = torch.randn(initial_logits(space, torch.device("cpu")).shape, generator=generator,
                         dtype=torch.float64).requires_grad_(True)
    other = torch.stack([torch.multinomial((torch.arange(k) != int(a)).double(), 1, generator=generator)[0]
                         for k, a in zip(space.vocab_sizes, arch[0])]) if mode == "two" else None
    plain = supernet(images, arch)
    results = {}
    for backend in ("aten", "reference"):
        monkeypatch.setenv("VAENAS_BACKEND", backend)  # every op's reference under "reference"
        supernet.zero_grad(set_to_none=True)
        logits.grad = None
        out = supernet(images, arch, gates=Gates(logits, mode, other))
        torch.nn.functional.cross_entropy(out, labels).backward()
        weights = {n: p.grad.clone() for n, p in supernet.named_parameters() if p.grad is not None}
        results[backend] = (out.detach(), logits.grad.clone(), weights)
    out, logit_grad, weights = results["aten"]
    ref_out, ref_logit_grad, ref_weights = results["reference"]
    torch.testing.assert_close(out, plain.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(logit_grad, ref_logit_grad, rtol=1e-8, atol=1e-12)
    assert torch.count_nonzero(logit_grad) > 0
    for name, grad in weights.items():
        torch.testing.assert_close(grad, ref_weights[name], rtol=1e-8, atol=1e-12, msg=name)
    for name, grad in ref_weights.items():  # the reference's extra gradients: zero (off the path)
        if name not in weights:
            assert torch.count_nonzero(grad) == 0, name


def test_gated_forward_runs_one_architecture():
    space, supernet = _supernet("nasbench201")
    logits = initial_logits(space, torch.device("cpu")).double()
    with pytest.raises(ValueError, match="one architecture"):
        supernet(torch.randn(4, 3, 8, 8, dtype=torch.float64), space.sample(2), gates=Gates(logits, "full"))


def test_argmax_repair_gives_the_most_probable_valid_nasnet_architecture():
    space = get_space("nasnet")
    logits = torch.zeros(28, 8)
    logits[:, 4] = 1.0  # sep_conv_3x3 everywhere ...
    logits[0:2, 0] = 5.0  # ... but node 0 of the normal cell has only `none` inputs
    logits[1, 6] = 4.5  # its least costly fix: edge from c_{k-1}, sep_conv_7x7
    arch, repaired = most_probable_architecture(space, logits)
    assert bool(space.is_valid(arch[None])[0]) and repaired == [1]
    assert arch[:2].tolist() == [0, 6] and arch[2:].tolist() == [4] * 26


def test_softmax_sampling_gives_valid_architectures_that_follow_w():
    space = get_space("nasnet")
    logits = torch.zeros(28, 8)
    logits[:, 0] = 3.0  # `none` likely everywhere: many raw draws are invalid
    archs = sample_softmax(space, logits, 64, torch.Generator().manual_seed(0))
    assert bool(space.is_valid(archs).all())
    assert (archs == 0).float().mean() > 0.5


def _gradient_search(*overrides: str):
    from vaenas.config import load_config
    from vaenas.data import build_search_data
    from vaenas.search.gradient import GradientConfig, GradientSearch

    config = load_config(None, TINY + list(overrides), cls=GradientConfig)
    return GradientSearch(config, build_search_data(config.data), torch.device("cpu"))


def test_vaenas_g_draws_its_paths_from_the_vae_from_the_first_step():
    """Algorithm 3 line 2: α ~ p_θ at every step, the untrained VAE before the first refit (as
    VAENAS-OS's Γ draws from it with probability ε from step 1), not the uniform sampler."""
    search = _gradient_search()
    assert not search.refits
    state = search.arch_generator.get_state()
    arch, other = search.sample_path()
    generator = torch.Generator()
    generator.set_state(state)
    assert torch.equal(arch, search.vae.sample(1, generator))
    generator.set_state(state)
    assert not torch.equal(arch, search.uniform.sample(1, generator))
    assert other is not None and not bool((other == arch[0]).any())  # mode two's second path


def test_proxylessnas_mode_two_draws_its_paths_as_binarize():
    """sampling=softmax, mode two: the pair from softmax(w) without replacement, the active path
    from the pair's softmax (sample_two_paths); at p = (.7, .2, .1, 0, 0) on every edge the active
    op follows (.771, .174, .055)."""
    from vaenas.search.gradient import sample_two_paths

    search = _gradient_search("gradient.sampling=softmax")
    with torch.no_grad():
        search.logits.copy_(torch.tensor([0.7, 0.2, 0.1, 0.0, 0.0]).log().expand(6, 5))
    state = search.arch_generator.get_state()
    arch, other = search.sample_path()
    generator = torch.Generator()
    generator.set_state(state)
    expected = sample_two_paths(search.space, search.logits, generator)
    assert torch.equal(arch, expected[0]) and torch.equal(other, expected[1])
    draws = torch.cat([sample_two_paths(search.space, search.logits, generator)[0] for _ in range(4000)]).flatten()
    frequency = torch.bincount(draws, minlength=5).double() / len(draws)  # 24,000 edges
    torch.testing.assert_close(frequency, torch.tensor([0.771, 0.174, 0.055, 0, 0], dtype=torch.float64),
                               atol=0.012, rtol=0)


@pytest.mark.parametrize("mode", ["two", "full"])
def test_an_edge_whose_path_is_none_gets_no_update(mode):
    """ProxylessNAS: a zero layer's edge has no gradient, so no Adam step, no moment, no rescale."""
    search = _gradient_search(f"gradient.mode={mode}")
    none = search.space.zero_token
    arch = torch.tensor([[none, 3, 2, 3, 1, 3]])
    other = torch.tensor([3, 1, 3, 2, 3, 2]) if mode == "two" else None
    before = search.logits.detach().clone()
    search.arch_step(arch, other)
    after = search.logits.detach()
    assert torch.equal(after[0], before[0])
    assert not torch.equal(after[1:], before[1:])
    state = search.arch_optimizer.state_dict()["state"][0]
    assert state["step"].tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert bool((state["exp_avg_sq"][0] == 0).all())
    assert search.updated_positions(arch).tolist() == [False] + [True] * 5


def _state(run_dir: Path) -> dict:
    return load_checkpoint(RunFolder(run_dir).latest_checkpoint())["state"]


def test_run_resumes_bit_for_bit_and_writes_its_outputs(tmp_path, capsys):
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    assert main(TINY + [f"out={straight}"]) == 0
    assert main(TINY + [f"out={halves}", "run.stop_at=4"]) == 0
    assert _state(halves)["step"] == 4
    assert main(["--resume", str(halves), "progress=false"]) == 0
    a, b = _state(straight), _state(halves)
    assert a["arch_digest"] == b["arch_digest"]
    assert torch.equal(a["gradient"]["logits"], b["gradient"]["logits"])
    adam_a, adam_b = (s["gradient"]["arch_optimizer"]["state"][0] for s in (a, b))
    assert torch.equal(adam_a["exp_avg_sq"], adam_b["exp_avg_sq"])
    for key, tensor in a["supernet"].items():
        assert torch.equal(tensor, b["supernet"][key]), key
    found = json.loads((straight / "architecture.json").read_text())
    assert found["tokens"] == json.loads((halves / "architecture.json").read_text())["tokens"]
    assert found["steps"] == 6 and found["distinct_trained"] >= 1
    assert [point["step"] for point in found["curve"]] == list(range(1, 7))
    for name in ("diversity.png", "child.pt", "report.md", "config.yaml"):
        assert (halves / name).is_file(), name
    assert "found architecture" in capsys.readouterr().out


def test_the_found_network_loads_from_the_run_folder_and_the_report_costs_it(tmp_path, supernet_logits):
    """As the one-shot run's: load_found_network(run) gives the supernet's logits for the argmax
    architecture, and the report costs that network (before: the space's default child, 1 M
    parameters for this 4-channel one)."""
    from vaenas.config import load_config
    from vaenas.data import build_search_data
    from vaenas.search.gradient import GradientConfig, GradientSearch
    from vaenas.supernet import load_found_network

    run = tmp_path / "run"
    assert main(TINY + [f"out={run}"]) == 0
    found = json.loads((run / "architecture.json").read_text())
    assert found["network"]["options"] == {"channels": 4, "cells_per_stage": 1, "num_classes": 10}
    assert found["network"]["image_size"] == 8 and found["network"]["tokens"] == found["tokens"]
    network = load_found_network(run)
    params = sum(p.numel() for p in network.parameters())
    assert found["cost"]["params"] == params < 20_000 and f"params {params}," in (run / "report.md").read_text()
    config = load_config(run / "config.yaml", [], cls=GradientConfig)
    search = GradientSearch(config, build_search_data(config.data), torch.device("cpu"))
    search.load_state_dict(_state(run))
    images = next(iter(search.data.holdout))[0]
    with torch.no_grad():
        got = network(images)
    torch.testing.assert_close(got, supernet_logits(search, torch.tensor(found["tokens"]), images),
                               rtol=1e-4, atol=1e-5)


def test_baseline_runs_plain_proxylessnas_alongside(tmp_path):
    run_dir = tmp_path / "run"
    assert main(TINY + [f"out={run_dir}", "gradient.baseline=true", "gradient.mode=full", "train.steps=3"]) == 0
    baseline = json.loads((run_dir / "proxylessnas" / "architecture.json").read_text())
    assert baseline["sampling"] == "softmax" and baseline["mode"] == "full"
    assert (run_dir / "diversity.png").is_file()
    assert "softmax" in (run_dir / "report.md").read_text()


def test_bad_configs_are_refused(capsys):
    assert main(TINY + ["space=nasbench101"]) == 2
    assert main(TINY + ["gradient.mode=three"]) == 2


@pytest.mark.parametrize(("override", "message"), [
    ("train.group_size=2", "train.group_size: the gradient search trains one path per step"),
    ("search.max_params=1", "search.max_params: the gradient search returns the argmax of its architecture logits"),
    ("vaenas.epsilon_inc=0.1", "vaenas.epsilon_inc: the gradient search samples every path from the VAE"),
    ("vaenas.compare_samples=4", "vaenas.compare_samples: only the one-shot search"),
])
def test_keys_the_gradient_search_does_not_use_are_refused_and_not_listed(override, message, capsys):
    """They exist in the one-shot config it extends; accepted, they would be silently ignored."""
    assert main(TINY + [override]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1, error
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert f"  {override.partition('=')[0]}=" not in listed and "  gradient.arch_lr=" in listed
    assert "method=tabular" in listed and "method=oneshot" in listed


def test_validation_stream_shards_by_rank_cycles_and_resumes():
    from vaenas.search.gradient import ValidationStream

    loader = [(torch.arange(10)[:, None].float() + 10 * b, torch.arange(10) + 10 * b) for b in range(2)]  # 20 rows
    streams = [ValidationStream(loader, 4, rank, 2) for rank in range(2)]
    taken = [[next(s)[1].tolist() for _ in range(3)] for s in streams]
    # 4 chunks per pass (the last 2 rows of each loader batch are dropped), alternated between ranks
    assert taken[0] == [[0, 1, 2, 3], [10, 11, 12, 13], [0, 1, 2, 3]]
    assert taken[1] == [[4, 5, 6, 7], [14, 15, 16, 17], [4, 5, 6, 7]]
    resumed = ValidationStream(loader, 4, 1, 2)
    resumed.load_state_dict(streams[1].state_dict())
    assert next(resumed)[1].tolist() == next(streams[1])[1].tolist()


def test_two_gloo_ranks_finish_with_identical_logits(tmp_path):
    """torchrun, 2 CPU ranks: the run checks that w (averaged gradients) and the VAE agree on every
    rank (check_identical raises otherwise) and writes the outputs once."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(port), "-m", "vaenas.search", *TINY, "train.steps=4", "vaenas.refit_every=2",
               "train.device=cpu", f"out={tmp_path / 'run'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "architecture.json").read_text())["steps"] == 4


def test_path_entropy_is_zero_for_repeats_and_log_k_for_all_ops():
    from vaenas.search.gradient import path_entropy

    space = get_space("nasbench201")
    assert path_entropy(torch.zeros(7, 6, dtype=torch.long), space) == 0.0
    every_op = torch.arange(5)[:, None].expand(5, 6)
    assert abs(path_entropy(every_op, space) - math.log(5)) < 1e-12
