"""Shared test configuration."""

import pytest
import torch

# The test models are tiny: one thread avoids synchronisation costs that dominate
# them (measured 10-20x slower with two threads on a busy two-core machine).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic_seed():
    torch.manual_seed(0)
    yield
