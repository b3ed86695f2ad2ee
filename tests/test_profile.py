"""The parameter and MAC counter's convention, on layers with known costs."""

import torch
from torch import nn

from conchshell.profile import count_macs, count_parameters, profile


def test_conv_costs_output_elements_times_fan_in():
    conv = nn.Conv2d(4, 8, kernel_size=3, padding=1, groups=2)
    p = profile(conv, torch.zeros(1, 4, 10, 10))
    # 8*10*10 outputs, each 4/2 input channels x 9 taps; bias not counted
    assert p.macs == 8 * 100 * 2 * 9
    assert p.params == 8 * 2 * 9 + 8
    assert p.flops == 2 * p.macs


def test_transposed_conv_costs_input_elements_times_fan_out():
    conv = nn.ConvTranspose1d(3, 5, kernel_size=4, stride=2, padding=1)
    assert count_macs(conv, torch.zeros(2, 3, 7)) == 2 * 3 * 7 * 5 * 4


def test_linear_pooling_and_free_layers():
    model = nn.Sequential(
        nn.Linear(6, 4),
        nn.ReLU(),
        nn.Unflatten(1, (1, 4)),
        nn.AvgPool1d(2),
        nn.MaxPool1d(1),
        nn.BatchNorm1d(1),
    )
    p = profile(model, torch.zeros(3, 6))
    assert p.macs == 3 * 6 * 4 + 3 * 2
    assert [name for name, _, _ in p.layers] == ["0", "3"]


def test_exclude_embedding_parameters():
    model = nn.ModuleDict({"emb": nn.Embedding(6, 256), "lin": nn.Linear(2, 2)})
    assert count_parameters(model) == 6 * 256 + 6
    assert count_parameters(model, exclude=(nn.Embedding,)) == 6


def test_profile_restores_training_mode():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    profile(model, torch.zeros(1, 2))
    assert model.training
