"""VGGEncoder: block features, torchvision-format weights files, warnings and input checks."""

import pickle
import warnings

import pytest
import torch
import torchvision

from conchshell.image.forging import TemporalForger
from conchshell.image.vgg import VGGEncoder


def _encoder(**params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return VGGEncoder(**{"arch": "vgg11", "device": "cpu", "random_state": 0, **params}).fit()


def test_vgg16_block_features_at_224():
    enc = _encoder(arch="vgg16", batch_size=1)
    maps = enc.transform(torch.randn(1, 3, 224, 224))
    assert [tuple(m.shape) for m in maps] == [
        (1, 64, 224, 224),
        (1, 128, 112, 112),
        (1, 256, 56, 56),
        (1, 512, 28, 28),
        (1, 512, 14, 14),
    ]
    assert all(bool((m >= 0).all()) for m in maps)  # after the ReLU, before the max-pool
    assert sum(p.numel() for p in enc.module_.parameters()) == 14_714_688  # vgg16 features


def test_blocks_are_the_maps_before_each_max_pool():
    enc = _encoder()
    x = torch.randn(2, 3, 32, 32)
    maps = enc.transform(x)
    # Recompute with torchvision's layer stack directly.
    feats, want, h = enc.module_.features, [], x
    for layer in feats:
        if isinstance(layer, torch.nn.MaxPool2d):
            want.append(h.clone())
        h = layer(h)
    for got, ref in zip(maps, want, strict=True):
        torch.testing.assert_close(got, ref)
    # A subset of blocks, and batching, give the same maps.
    sub = _encoder(blocks=(1, 3), batch_size=1).transform(x)
    assert len(sub) == 2
    torch.testing.assert_close(sub[0], want[1])
    torch.testing.assert_close(sub[1], want[3])


def test_state_dict_keys_are_torchvision_features_keys():
    for arch in ("vgg11", "vgg13_bn"):
        enc = _encoder(arch=arch)
        with torch.device("meta"):
            full = getattr(torchvision.models, arch)()
        want = {k for k in full.state_dict() if k.startswith("features.")}
        assert set(enc.module_.state_dict()) == want
    assert not any(p.requires_grad for p in enc.module_.parameters())


def test_warns_without_weights_and_is_seeded():
    with pytest.warns(UserWarning, match="random initialisation"):
        a = VGGEncoder(arch="vgg11", device="cpu", random_state=1).fit()
    b = _encoder(random_state=1)
    c = _encoder(random_state=2)
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(a.transform(x)[2], b.transform(x)[2])
    assert not torch.allclose(a.transform(x)[2], c.transform(x)[2])


def test_weights_file_loads_strictly(tmp_path):
    source = _encoder(random_state=5)
    path = tmp_path / "vgg11.pth"
    torch.save(source.module_.state_dict(), path)  # torchvision's key names
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no random-initialisation warning with weights
        loaded = VGGEncoder(arch="vgg11", weights=path, device="cpu", random_state=9).fit()
    x = torch.randn(1, 3, 32, 32)
    for got, want in zip(loaded.transform(x), source.transform(x), strict=True):
        torch.testing.assert_close(got, want)

    state = source.module_.state_dict()
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "features.3.weight"}, "missing keys"),
        "unexpected": ({**state, "head.weight": torch.zeros(1)}, "unexpected keys: head.weight"),
        "classifier shape": (
            {**state, "classifier.6.bias": torch.zeros(10)},
            r"classifier\.6\.bias: file \(10,\) vs vgg11 \(1000,\)",
        ),
        "feature shape": (
            {**state, "features.0.bias": torch.zeros(3)},
            r"shape mismatches: features\.0\.bias",
        ),
    }
    for name, (bad_state, match) in cases.items():
        bad = tmp_path / f"{name}.pth"
        torch.save(bad_state, bad)
        with pytest.raises(ValueError, match=match):
            VGGEncoder(arch="vgg11", weights=bad, device="cpu").fit()
    # The right keys for another architecture are refused too.
    with pytest.raises(ValueError, match="is not a torchvision vgg13 state dict"):
        VGGEncoder(arch="vgg13", weights=path, device="cpu").fit()


class _Payload:
    def __reduce__(self):
        return (print, ("payload ran",))


def test_weights_file_never_runs_pickled_code(tmp_path, capsys):
    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        pickle.dump({"features.0.weight": _Payload()}, f, protocol=2)
    with pytest.raises(ValueError, match="weights_only"):
        VGGEncoder(arch="vgg11", weights=bad, device="cpu").fit()
    assert "payload ran" not in capsys.readouterr().out
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="could not be read"):
        VGGEncoder(arch="vgg11", weights=junk, device="cpu").fit()
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="holds a list"):
        VGGEncoder(arch="vgg11", weights=tmp_path / "list.pth", device="cpu").fit()


def test_maps_feed_the_forger():
    maps = _encoder().transform(torch.randn(2, 3, 32, 32))
    assert TemporalForger(size=32, device="cpu").transform(maps).shape == (2, 3, 15, 32, 32)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"arch": "resnet18"}, "arch must be one of"),
        ({"blocks": (3, 1)}, "blocks must be increasing"),
        ({"blocks": (5,)}, "blocks must be increasing"),
        ({"blocks": ()}, "blocks must be increasing"),
        ({"batch_size": 0}, "batch_size"),
        ({"weights": "/nonexistent/vgg.pth"}, "does not exist"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        _encoder(**params)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.zeros(3, 32, 32), "4 dimensions"),
        (torch.zeros(1, 4, 32, 32), "expected 3"),
        (torch.zeros(1, 3, 8, 8), "at least 16x16"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.int32), "floating-point"),
        (torch.full((1, 3, 32, 32), float("inf")), "NaN or infinite"),
        (torch.zeros(0, 3, 32, 32), "empty batch"),
    ],
)
def test_bad_images(images, match):
    with pytest.raises(ValueError, match=match):
        _encoder().transform(images)
