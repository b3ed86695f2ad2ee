"""TemporalForger: Algorithm 1's video shape and values, the repeat baseline, input checks."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from conchshell.image.forging import TemporalForger
from conchshell.image.tcnn import ARCHITECTURES

SMALL = [32, 16, 8, 4, 2, 1]
SIDES_18 = [224] * 3 + [112] * 2 + [56] * 3 + [28] * 5 + [14] * 3 + [7] * 2


def _maps(n_blocks, batch=1, sides=None):
    sides = sides or [224, 112, 56, 28, 14, 7]
    channels = [b.out_channels for b in ARCHITECTURES[n_blocks]]
    return [torch.rand(batch, c, s, s) for c, s in zip(channels, sides, strict=True)]


def test_tcnn6_maps_give_an_18_frame_video():
    video = TemporalForger(device="cpu").transform(_maps(6, batch=2))
    assert video.shape == (2, 3, 18, 224, 224)
    assert video.dtype == torch.float32


def test_tcnn18_maps_give_a_54_frame_video():
    video = TemporalForger(device="cpu").transform(_maps(18, sides=SIDES_18))
    assert video.shape == (1, 3, 54, 224, 224)


def test_frames_are_group_means_resized_and_repeated():
    maps = [torch.rand(2, 16, 224, 224), torch.rand(2, 32, 112, 112), torch.rand(2, 7, 5, 5)]
    video = TemporalForger(repeats=3, device="cpu").transform(maps)
    assert video.shape == (2, 3, 9, 224, 224)
    # 16 channels split 6 / 5 / 5 (torch.tensor_split); 224 px maps are not resized.
    torch.testing.assert_close(video[:, 0, 0], maps[0][:, :6].mean(1))
    torch.testing.assert_close(video[:, 1, 0], maps[0][:, 6:11].mean(1))
    torch.testing.assert_close(video[:, 2, 0], maps[0][:, 11:].mean(1))
    # Each block's frame is repeated 3 times, blocks in order from shallow to deep.
    for t in (1, 2):
        torch.testing.assert_close(video[:, :, t], video[:, :, 0])
    # 32 channels: 11 / 11 / 10, the 112 px frame resized bilinearly.
    second = torch.stack(
        [maps[1][:, :11].mean(1), maps[1][:, 11:22].mean(1), maps[1][:, 22:].mean(1)], 1
    )
    second = F.interpolate(second, size=(224, 224), mode="bilinear", align_corners=False)
    for t in (3, 4, 5):
        torch.testing.assert_close(video[:, :, t], second)
    # 7 channels: 3 / 2 / 2.
    small = F.interpolate(
        torch.stack([maps[2][:, :3].mean(1), maps[2][:, 3:5].mean(1), maps[2][:, 5:].mean(1)], 1),
        size=(224, 224),
        mode="bilinear",
        align_corners=False,
    )
    torch.testing.assert_close(video[:, :, 8], small)


def test_size_and_repeats_are_parameters():
    video = TemporalForger(repeats=2, size=32, device="cpu").transform(_maps(6, sides=SMALL))
    assert video.shape == (1, 3, 12, 32, 32)


def test_repeat_mode_is_a_static_video_of_the_image():
    images = torch.randn(2, 3, 224, 224)
    video = TemporalForger(mode="repeat", device="cpu").transform(images)
    assert video.shape == (2, 3, 18, 224, 224)
    for t in range(18):
        torch.testing.assert_close(video[:, :, t], images)
    small = TemporalForger(mode="repeat", n_frames=4, size=64, device="cpu").transform(images)
    assert small.shape == (2, 3, 4, 64, 64)
    torch.testing.assert_close(
        small[:, :, 2], F.interpolate(images, size=(64, 64), mode="bilinear")
    )


def test_stateless_fit_and_differentiable_module():
    forger = TemporalForger(size=16, device="cpu")
    assert forger.fit(None, [0, 1]) is forger
    maps = [m.requires_grad_() for m in _maps(6, sides=SMALL)]
    forger.module_(maps).sum().backward()
    assert all(m.grad is not None and float(m.grad.abs().sum()) > 0 for m in maps)
    # transform needs no fit and follows set_params without a refit.
    assert TemporalForger(size=8, device="cpu").transform(_maps(6, sides=SMALL)).shape[-1] == 8
    forger.set_params(repeats=1)
    assert forger.transform(_maps(6, sides=SMALL)).shape[2] == 6


def test_numpy_maps_are_accepted():
    maps = [m.numpy() for m in _maps(6, sides=SMALL)]
    assert TemporalForger(size=16, device="cpu").transform(maps).shape == (1, 3, 18, 16, 16)


@pytest.mark.parametrize(
    ("params", "inputs", "match"),
    [
        ({}, torch.zeros(1, 3, 224, 224), "mode='groups' expects the list of block"),
        ({}, [], "at least one block"),
        ({}, [torch.zeros(1, 2, 8, 8)], "2 channels"),
        ({}, [torch.zeros(16, 8, 8)], "block map 0 must have 4 dimensions"),
        ({}, [torch.zeros(1, 4, 8, 8), torch.zeros(2, 4, 8, 8)], "batch size 2"),
        ({}, [torch.zeros(0, 4, 8, 8)], "empty batch"),
        ({}, [torch.full((1, 4, 8, 8), float("nan"))], "NaN"),
        ({"mode": "repeat"}, [torch.zeros(1, 3, 8, 8)], "mode='repeat' expects an image"),
        ({"mode": "repeat"}, torch.zeros(1, 1, 8, 8), "dimension 1 is 1, expected 3"),
        ({"mode": "repeat"}, torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "floating-point"),
        ({"mode": "bogus"}, torch.zeros(1, 3, 8, 8), "mode must be one of"),
        ({"repeats": 0}, [torch.zeros(1, 3, 8, 8)], "repeats must be a positive integer"),
    ],
)
def test_bad_input_is_named(params, inputs, match):
    with pytest.raises(ValueError, match=match):
        TemporalForger(device="cpu", **params).transform(inputs)


def test_fit_checks_parameters():
    with pytest.raises(ValueError, match="n_frames"):
        TemporalForger(n_frames=np.int64(0)).fit()
    with pytest.raises(TypeError, match=r"size must be a positive integer, got 2\.5"):
        TemporalForger(device="cpu", size=2.5).transform([torch.zeros(1, 3, 8, 8)])


def test_static_mode_repeats_the_last_block_map():
    from conchshell.image.forging import TemporalForger

    maps = [torch.randn(2, 16, 8, 8), torch.randn(2, 7, 4, 4)]
    video = TemporalForger(mode="static", size=16, n_frames=5, device="cpu").transform(maps)
    assert video.shape == (2, 3, 5, 16, 16)
    assert torch.equal(video[:, :, 0], video[:, :, 4])
    # first group of 7 channels is 3 wide (tensor_split), averaged then resized
    expected = torch.nn.functional.interpolate(
        maps[1][:, :3].mean(1, keepdim=True), size=(16, 16), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(video[:, :1, 2], expected)
