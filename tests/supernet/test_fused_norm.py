"""SegmentedSequential runs a SegmentedBatchNorm2d and the nn.ReLU / nn.SiLU after it as one op
(activation= of ops.segmented_batch_norm), with the values of the two modules run one by one."""

import pytest
import torch
from torch import nn

from vaenas import ops
from vaenas.supernet.base import SegmentedBatchNorm2d, SegmentedSequential


@pytest.mark.parametrize(("module", "name"), [(nn.ReLU(inplace=True), "relu"), (nn.SiLU(), "silu")])
@pytest.mark.parametrize("training", [True, False])
def test_norm_and_activation_run_fused_with_the_same_values(module, name, training, monkeypatch):
    torch.manual_seed(0)
    norm = SegmentedBatchNorm2d(6)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    norm.running_mean.normal_()
    norm.running_var.uniform_(0.5, 1.5)
    sequence = SegmentedSequential(nn.Conv2d(3, 6, 3, padding=1), norm, module).train(training)
    x, segments = torch.randn(3 * 4, 3, 5, 5, dtype=torch.float64), torch.arange(3)
    sequence.double()
    calls = []
    original = ops.segmented_batch_norm
    monkeypatch.setattr(ops, "segmented_batch_norm", lambda *a, **k: calls.append(k.get("activation")) or original(*a, **k))
    fused = sequence(x, segments)
    assert calls == [name]  # one call, the activation inside it
    monkeypatch.setattr(ops, "segmented_batch_norm", original)
    unfused = module(norm(sequence[0](x), segments).clone())
    torch.testing.assert_close(fused, unfused, rtol=1e-12, atol=1e-12)


def test_a_norm_without_activation_after_it_runs_alone():
    norm = SegmentedBatchNorm2d(4)
    sequence = SegmentedSequential(norm, nn.Identity())
    x, segments = torch.randn(2 * 3, 4, 2, 2), torch.arange(2)
    torch.testing.assert_close(sequence(x, segments), norm(x, segments))
