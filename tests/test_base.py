"""The shared component base: devices, seeding, initialise, pickling."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone

from conchshell.base import (
    TorchComponent,
    load_state_dict_strictly,
    resolve_device,
    seed_from_random_state,
    seeded,
)


class Linear(TorchComponent):
    def __init__(self, width=3, device="cpu", random_state=None):
        self.width = width
        self.device = device
        self.random_state = random_state

    def _build_module(self):
        return torch.nn.Linear(self.width, 2)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_seed_from_random_state():
    assert seed_from_random_state(3) == seed_from_random_state(3)
    assert seed_from_random_state(3) != seed_from_random_state(4)
    assert 0 <= seed_from_random_state(None) < 2**31
    rs = np.random.RandomState(0)
    assert seed_from_random_state(rs) != seed_from_random_state(rs)
    with pytest.raises(ValueError, match="random_state"):
        seed_from_random_state(1.5)


def test_seeded_restores_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with seeded(7):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected)
    with seeded(7):
        assert torch.equal(torch.rand(3), inside)


def test_initialize_is_deterministic_for_a_random_state():
    a = Linear(random_state=0).initialize()
    b = Linear(random_state=0).initialize()
    c = Linear(random_state=1).initialize()
    assert torch.equal(a.module_.weight, b.module_.weight)
    assert not torch.equal(a.module_.weight, c.module_.weight)
    assert a.n_parameters() == 3 * 2 + 2
    assert a.device_ == torch.device("cpu")


def test_init_stores_only_params_and_clone_drops_weights():
    comp = Linear(width=5, random_state=0)
    assert comp.get_params() == {"width": 5, "device": "cpu", "random_state": 0}
    comp.initialize()
    copy = clone(comp)
    assert not hasattr(copy, "module_")
    assert copy.get_params() == comp.get_params()


def test_pickle_roundtrip_keeps_weights():
    comp = Linear(random_state=0).initialize()
    back = pickle.loads(pickle.dumps(comp))
    assert torch.equal(back.module_.weight, comp.module_.weight)
    assert back.device_ == torch.device("cpu")


def test_load_state_dict_strictly_names_every_misfit():
    module = torch.nn.Linear(3, 2)
    state = {k: v.clone() + 1 for k, v in module.state_dict().items()}
    load_state_dict_strictly(module, state, source="w.pt")
    assert torch.equal(module.weight, state["weight"])
    bad = {"weight": torch.zeros(2, 4), "bias": [0.0, 0.0], "extra": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"w\.pt does not match the model") as info:
        load_state_dict_strictly(module, bad, source="w.pt")
    message = str(info.value)
    assert "unexpected keys: extra" in message
    assert "bias: file list vs model (2,)" in message
    assert "weight: file (2, 4) vs model (2, 3)" in message
    with pytest.raises(ValueError, match="does not hold a state dict, got list"):
        load_state_dict_strictly(module, [], source="w.pt")
