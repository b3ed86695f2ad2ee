"""I3DExtractor: pytorchvideo's i3d_r50 backbone, checkpoint loading, freezing, input checks."""

import pickle
import warnings

import pytest
import torch
from pytorchvideo.models.hub import i3d_r50

from conchshell.base import seeded
from conchshell.video.i3d import I3DExtractor


def _extractor(**params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return I3DExtractor(**{"width": 8, "device": "cpu", "random_state": 0, **params}).fit()


def _checkpoint(path, width=8, seed=123, drop=(), extra=None):
    """A checkpoint in pytorchvideo's format, from a freshly built full model."""
    with seeded(seed):
        full = i3d_r50(pretrained=False, stem_dim_out=width)
    state = {k: v for k, v in full.state_dict().items() if k not in drop}
    state.update(extra or {})
    torch.save({"model_state": state, "epoch": 1}, path)
    return full.eval()


def _reference(full, video):
    with torch.no_grad():
        x = video
        for block in full.blocks[:6]:
            x = block(x)
        return x.mean(dim=(2, 3, 4))


def test_full_width_gives_2048_features():
    ext = _extractor(width=64)
    assert ext.n_features_out_ == 2048
    # i3d_r50 has 28,043,472 parameters; its head (2048 -> 400) 819,600 of them.
    assert ext.n_parameters() == 28_043_472 - 819_600
    out = ext.transform(torch.randn(1, 3, 8, 64, 64))
    assert out.shape == (1, 2048) and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all()) and float(out.std()) > 0


def test_small_width_and_batching():
    ext = _extractor(width=8, batch_size=1)
    assert ext.n_features_out_ == 256
    video = torch.randn(3, 3, 4, 32, 32)
    out = ext.transform(video)
    assert out.shape == (3, 256)
    torch.testing.assert_close(out, _extractor(width=8, batch_size=3).transform(video))
    assert not any(p.requires_grad for p in ext.module_.parameters())


def test_checkpoint_in_pytorchvideo_format_loads_strictly(tmp_path):
    path = tmp_path / "I3D_8x8_R50.pyth"
    full = _checkpoint(path)
    saved = torch.load(path, weights_only=True)["model_state"]
    assert len(saved) == 320 and "blocks.6.proj.weight" in saved
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "own initialisation" warning with weights
        ext = I3DExtractor(weights=path, width=8, device="cpu", random_state=7).fit()
    video = torch.randn(2, 3, 4, 32, 32)
    torch.testing.assert_close(ext.transform(video), _reference(full, video))
    # The head is gone; the backbone keeps pytorchvideo's key names.
    assert set(ext.module_.state_dict()) == {k for k in saved if not k.startswith("blocks.6.")}


def test_full_width_checkpoint_round_trip(tmp_path):
    path = tmp_path / "I3D_8x8_R50.pyth"
    full = _checkpoint(path, width=64)
    ext = I3DExtractor(weights=str(path), device="cpu").fit()
    video = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(ext.transform(video), _reference(full, video))


def test_mismatched_checkpoints_are_clear_errors(tmp_path):
    cases = [
        (dict(width=16), r"shape mismatches: blocks\.0\.conv\.weight"),
        (dict(drop=("blocks.6.proj.bias",)), r"missing keys: blocks\.6\.proj\.bias"),
        (dict(extra={"blocks.7.w": torch.zeros(1)}), r"unexpected keys: blocks\.7\.w"),
    ]
    for i, (kwargs, match) in enumerate(cases):
        path = tmp_path / f"case{i}.pyth"
        _checkpoint(path, **kwargs)
        with pytest.raises(ValueError, match=match):
            I3DExtractor(weights=path, width=8, device="cpu").fit()
    flat = tmp_path / "flat.pyth"
    torch.save({"blocks.0.conv.weight": torch.zeros(1)}, flat)
    with pytest.raises(ValueError, match="'model_state'"):
        I3DExtractor(weights=flat, width=8, device="cpu").fit()
    junk = tmp_path / "junk.pyth"
    junk.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="could not be read"):
        I3DExtractor(weights=junk, width=8, device="cpu").fit()
    with pytest.raises(ValueError, match="does not exist"):
        I3DExtractor(weights=tmp_path / "missing.pyth", width=8, device="cpu").fit()


class _Payload:
    def __reduce__(self):
        return (print, ("payload ran",))


def test_checkpoint_with_a_pickled_payload_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pyth"
    with open(path, "wb") as f:
        pickle.dump({"model_state": _Payload()}, f, protocol=2)
    with pytest.raises(ValueError, match="weights_only"):
        I3DExtractor(weights=path, width=8, device="cpu").fit()
    assert "payload ran" not in capsys.readouterr().out


def test_warns_without_weights_and_is_seeded():
    with pytest.warns(UserWarning, match="own seeded initialisation"):
        a = I3DExtractor(width=8, device="cpu", random_state=3).fit()
    video = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(a.transform(video), _extractor(random_state=3).transform(video))
    assert not torch.allclose(a.transform(video), _extractor(random_state=4).transform(video))


def test_unfrozen_extractor_can_be_fine_tuned():
    ext = _extractor(frozen=False)
    assert all(p.requires_grad for p in ext.module_.parameters())
    ext.module_.train()
    ext.module_(torch.randn(2, 3, 4, 32, 32)).pow(2).mean().backward()
    assert all(p.grad is not None for p in ext.module_.parameters())
    # transform still runs in eval mode, without gradients.
    out = ext.transform(torch.randn(1, 3, 4, 32, 32))
    assert not out.requires_grad and not ext.module_.training


@pytest.mark.parametrize(
    ("video", "match"),
    [
        (torch.zeros(1, 3, 32, 32), "5 dimensions"),
        (torch.zeros(1, 1, 4, 32, 32), "dimension 1 is 1, expected 3"),
        (torch.zeros(1, 3, 1, 32, 32), "at least 2 frames"),
        (torch.zeros(1, 3, 4, 16, 32), "32x32 px"),
        (torch.zeros(1, 3, 4, 32, 32, dtype=torch.uint8), "floating-point"),
        (torch.full((1, 3, 4, 32, 32), float("nan")), "NaN"),
        (torch.zeros(0, 3, 4, 32, 32), "empty batch"),
    ],
)
def test_bad_video(video, match):
    with pytest.raises(ValueError, match=match):
        _extractor().transform(video)


@pytest.mark.parametrize(
    ("params", "match"), [({"width": 6}, "multiple of 4"), ({"batch_size": 0}, "batch_size")]
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        _extractor(**params)


@pytest.mark.slow
def test_paper_sized_video():
    out = _extractor(width=64).transform(torch.randn(1, 3, 18, 224, 224))
    assert out.shape == (1, 2048)
