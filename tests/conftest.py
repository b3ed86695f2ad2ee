"""Shared test configuration."""

import os

import pytest
import torch

# Two cores: keep torch from oversubscribing them when tests run in parallel helpers.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _deterministic_seed():
    torch.manual_seed(0)
    yield
