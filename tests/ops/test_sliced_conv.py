"""vaenas.ops.sliced_conv2d against F.conv2d on a copied slice: forward, backward, errors."""

import pytest
import torch
import torch.nn.functional as F

from vaenas import ops


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(20261128)


@pytest.mark.parametrize(
    ("out_channels", "in_channels", "kernel_size", "stride", "padding"),
    [(7, 5, 3, 1, 1), (13, 11, 3, 2, 1), (1, 3, 1, 1, 0), (6, 11, 1, 2, 0)],
)
def test_matches_conv2d_on_a_copied_slice(generator, out_channels, in_channels, kernel_size, stride, padding):
    weight = torch.randn(13, 11, kernel_size, kernel_size, generator=generator, dtype=torch.float64)
    weight.requires_grad_(True)
    x = torch.randn(3, in_channels, 9, 9, generator=generator, dtype=torch.float64, requires_grad=True)
    y = ops.sliced_conv2d(x, weight, out_channels, in_channels, stride=stride, padding=padding)

    copy = weight.detach()[:out_channels, :in_channels].clone().requires_grad_(True)
    x_copy = x.detach().clone().requires_grad_(True)
    expected = F.conv2d(x_copy, copy, stride=stride, padding=padding)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)

    upstream = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    y.backward(upstream)
    expected.backward(upstream)
    torch.testing.assert_close(x.grad, x_copy.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(weight.grad[:out_channels, :in_channels], copy.grad, rtol=0, atol=1e-12)
    outside = weight.grad.clone()
    outside[:out_channels, :in_channels] = 0
    assert not outside.any(), "the shared weight got gradient outside the slice"


def test_default_in_channels_and_whole_weight(generator):
    weight = torch.randn(4, 5, 3, 3, generator=generator, dtype=torch.float64)
    x = torch.randn(2, 5, 6, 6, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(ops.sliced_conv2d(x, weight, 4, padding=1), F.conv2d(x, weight, padding=1))


@pytest.mark.parametrize(
    ("x_channels", "out_channels", "in_channels", "message"),
    [
        (3, 5, None, "does not fit"),  # more output channels than the weight
        (3, 0, None, "does not fit"),
        (6, 2, None, "does not fit"),  # more input channels than the weight
        (3, 2, 4, "in_channels"),  # in_channels disagrees with x
    ],
)
def test_bad_slices_are_errors(x_channels, out_channels, in_channels, message):
    weight, x = torch.zeros(4, 5, 1, 1), torch.zeros(1, x_channels, 2, 2)
    with pytest.raises(ValueError, match=message):
        ops.sliced_conv2d(x, weight, out_channels, in_channels)
