"""The multi-scale discriminator: Table 1 sizes, per-scale outputs, flattening, API."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import (
    check_estimator_cloneable,
    check_estimator_repr,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)
from torch.nn.utils import parametrize

from conchshell.gan.discriminator import MultiScaleDiscriminator
from conchshell.profile import count_parameters, profile

# Table 1: D-High / D-Low / D-Deep, input (1, 1, 64 T)
PAPER_GMACS = {1000: 2.7335, 4000: 10.9757, 16000: 43.9501}


@pytest.fixture(scope="module")
def paper():
    return MultiScaleDiscriminator(device="cpu", random_state=0).initialize()


@pytest.fixture(scope="module")
def paper_macs(paper):
    """MACs per latent length. They depend on shapes only, so the counter's forward
    pass runs on a meta-device copy of the module (no arithmetic, same layers)."""
    module = MultiScaleDiscriminator(device="cpu").initialize().module_.to("meta")
    figures = {}
    for frames in PAPER_GMACS:
        prof = profile(module, torch.zeros(1, 1, 64 * frames, device="meta"))
        pooling = sum(macs for _, kind, macs in prof.layers if kind == "AvgPool1d")
        figures[frames] = (prof.macs, pooling)
    return figures


def test_paper_parameter_counts(paper):
    scales = paper.module_.scales
    assert [count_parameters(s) for s in scales] == [3_070_786] * 3
    assert count_parameters(paper.module_) == 9_212_358


@pytest.mark.parametrize("frames", list(PAPER_GMACS))
def test_paper_macs_within_half_a_percent(paper_macs, frames):
    macs, pooling = paper_macs[frames]
    # The counter charges the two AvgPool1d between scales one MAC per output
    # sample (64 T / 2 + 64 T / 4); Table 1 agrees with or without them.
    assert pooling == 64 * frames // 2 + 64 * frames // 4
    assert macs == pytest.approx(PAPER_GMACS[frames] * 1e9, rel=5e-3)
    assert macs - pooling == pytest.approx(PAPER_GMACS[frames] * 1e9, rel=5e-3)


def test_paper_layer_outputs(paper):
    outs = paper.transform(torch.randn(1, 64, 1000))
    assert len(outs) == 3
    # Per scale: first conv, 4 strided convs, the k5 conv, the logits.
    channels = [[o.shape[1] for o in scale] for scale in outs]
    assert channels == [[32, 128, 512, 1024, 1024, 512, 1]] * 3
    lengths = [scale[-1].shape[-1] for scale in outs]
    assert lengths == [248, 123, 61]  # 64000, 32000, 16000 samples in
    assert all(parametrize.is_parametrized(conv, "weight") for conv in _convs(paper.module_))


def _convs(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.Conv1d)]


def test_flattening_is_channel_major():
    d = MultiScaleDiscriminator.sized("tiny", device="cpu", random_state=0).initialize()
    latents = torch.randn(2, 8, 16)
    flat = latents.reshape(2, 1, -1)  # channel 0's 16 steps, then channel 1's, ...
    for a, b in zip(d.transform(latents), d.transform(flat), strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)
    transposed = latents.transpose(1, 2).reshape(2, 1, -1)
    assert not torch.allclose(d.transform(transposed)[0][-1], d.transform(latents)[0][-1])


def test_module_forward_has_gradients_and_transform_does_not():
    d = MultiScaleDiscriminator.sized("tiny", device="cpu", random_state=0).initialize()
    latents = torch.randn(3, 8, 16, requires_grad=True)
    outs = d.module_(latents)
    assert len(outs) == 2 and all(len(scale) == 2 + 3 for scale in outs)
    sum(scale[-1].mean() for scale in outs).backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0
    assert all(p.grad is not None for p in d.module_.parameters())
    assert not any(t.requires_grad for scale in d.transform(latents) for t in scale)


@pytest.mark.parametrize(
    ("preset", "params"), [("small", 103_134), ("tiny", 5_636)], ids=["small", "tiny"]
)
def test_small_presets(preset, params):
    d = MultiScaleDiscriminator.sized(preset, device="cpu", random_state=0).initialize()
    assert count_parameters(d.module_) == params
    length = d.module_.min_length()
    outs = d.transform(torch.randn(2, 1, length))
    assert all(scale[-1].shape[:2] == (2, 1) for scale in outs)
    with pytest.raises(ValueError, match=f"at least {length}"):
        d.transform(torch.randn(2, 1, length - 1))
    # Presets are ordinary parameter sets: overridable, clonable.
    assert MultiScaleDiscriminator.sized(preset, num_scales=1).num_scales == 1


def test_small_preset_macs_as_documented():
    module = MultiScaleDiscriminator.sized("small", device="cpu").initialize().module_.to("meta")
    gmacs = [
        profile(module, torch.zeros(1, 1, 64 * frames, device="meta")).macs / 1e9
        for frames in (1000, 4000, 16000)
    ]
    assert gmacs == pytest.approx([0.191, 0.762, 3.050], abs=5e-4)


def test_init_std():
    with torch.no_grad():
        d = MultiScaleDiscriminator(ndf=8, n_layers=2, device="cpu", random_state=0).initialize()
        big = max(_convs(d.module_), key=lambda m: m.weight.numel())
        assert float(big.weight.std()) == pytest.approx(0.02, rel=0.05)
    with pytest.raises(ValueError, match="init_std"):
        MultiScaleDiscriminator(init_std=0, device="cpu").initialize()


def test_sklearn_api_checks():
    d = MultiScaleDiscriminator(device="cpu")
    for check in (
        check_no_attributes_set_in_init,
        check_get_params_invariance,
        check_set_params,
        check_estimator_cloneable,
        check_estimator_repr,
        check_parameters_default_constructible,
    ):
        check("MultiScaleDiscriminator", d)


def test_clone_set_params_and_pickle():
    d = MultiScaleDiscriminator.sized("tiny", device="cpu", random_state=0).initialize()
    twin = clone(d)
    assert not hasattr(twin, "module_") and twin.get_params() == d.get_params()
    assert twin.set_params(ndf=8).initialize().module_.scales[0].layers[0][1].out_channels == 8
    loaded = pickle.loads(pickle.dumps(d))
    x = torch.randn(2, 8, 16)
    assert torch.equal(loaded.transform(x)[1][-1], d.transform(x)[1][-1])
    assert isinstance(d.device_, torch.device)  # pickling leaves the live object alone


@pytest.mark.parametrize(
    ("latents", "message"),
    [
        (np.zeros((2, 128)), "3 dimensions"),
        (np.zeros((1, 2, 2, 64)), "3 dimensions"),
        (np.full((2, 8, 16), np.nan), "NaN"),
        (np.zeros((2, 1, 10)), "too short"),
    ],
)
def test_bad_inputs_raise_value_errors(latents, message):
    d = MultiScaleDiscriminator.sized("tiny", device="cpu").initialize()
    with pytest.raises(ValueError, match=message):
        d.transform(latents)


def test_bad_settings_and_state():
    with pytest.raises(NotFittedError):
        MultiScaleDiscriminator.sized("tiny", device="cpu").transform(np.zeros((1, 1, 64)))
    with pytest.raises(ValueError, match="num_scales"):
        MultiScaleDiscriminator(num_scales=0, device="cpu").initialize()
    with pytest.raises(ValueError, match="max_channels"):
        MultiScaleDiscriminator(ndf=64, max_channels=32, device="cpu").initialize()
    with pytest.raises(ValueError, match="groups"):
        MultiScaleDiscriminator(ndf=8, max_channels=36, device="cpu").initialize()
    module = MultiScaleDiscriminator.sized("tiny", device="cpu").initialize().module_
    with pytest.raises(ValueError, match="latents must have shape"):
        module(torch.zeros(2, 128))
