"""Folding BatchNorm into convolutions must not change what the network computes."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import VARIANTS
from torch import nn

from convnextpose_eval.network.fuse import (
    fold_batchnorm,
    fold_into_next,
    fold_into_previous,
)


@pytest.mark.parametrize("variant", VARIANTS)
def test_folded_network_computes_the_same_function(variant, source_networks, sample_images):
    network = source_networks[variant]
    folded = fold_batchnorm(copy.deepcopy(network))
    # Only the backbone's final BN remains: it feeds a zero-padded conv, where folding would be inexact.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 1
    with torch.no_grad():
        expected, got = network(sample_images), folded(sample_images)
    assert torch.allclose(got, expected, atol=1e-3, rtol=0), (got - expected).abs().max()


def _random_bn(channels: int) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels).eval()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.2, 3.0)
    return norm


def test_fold_into_previous_matches_conv_then_bn():
    conv, norm = nn.Conv2d(4, 6, 3, padding=1), _random_bn(6)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    conv, norm = conv.double(), norm.double()
    with torch.no_grad():
        expected = norm(conv(x))
        fold_into_previous(conv, norm)
        assert torch.allclose(conv(x), expected, atol=1e-10)


def test_fold_into_next_matches_bn_then_unpadded_conv():
    norm, conv = _random_bn(4).double(), nn.Conv2d(4, 6, 2, stride=2).double()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = conv(norm(x))
        fold_into_next(norm, conv)
        assert torch.allclose(conv(x), expected, atol=1e-10)


def test_fold_refuses_a_model_in_training_mode(source_networks):
    network = copy.deepcopy(source_networks["XS"]).train()
    with pytest.raises(AssertionError):
        fold_batchnorm(network)
