"""I3D's stem on distinct forged frames: the wrapped Conv3d's output, from fewer multiply-adds."""

import numpy as np
import pytest
import torch
from einops import repeat
from torch import nn

from conchshell import presets
from conchshell.inference import optimize
from conchshell.video.stem import RepeatedFramesConv3d, distinct_frame_stem, frame_runs

pytestmark = pytest.mark.filterwarnings("ignore:I3DExtractor has no weights file")


def _stem(seed: int = 0) -> nn.Conv3d:
    # I3D-R50's stem shape (narrower), with a bias as after batch-norm folding.
    torch.manual_seed(seed)
    return nn.Conv3d(3, 8, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3)).double()


def _video(distinct: int, repeats: int, batch: int = 2, side: int = 20) -> torch.Tensor:
    frames = torch.randn(batch, 3, distinct, side, side, dtype=torch.float64)
    return repeat(frames, "b c n h w -> b c (n r) h w", r=repeats)


@pytest.mark.parametrize(("distinct", "repeats"), [(6, 3), (1, 18), (4, 2), (3, 5)])
def test_same_output_as_the_conv3d(distinct, repeats):
    conv = _stem()
    video = _video(distinct, repeats)
    expected = conv(video)
    got = RepeatedFramesConv3d(conv)(video)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_uneven_runs_and_a_batch_item_that_breaks_a_run():
    conv = _stem(1)
    video = torch.cat([_video(2, 4, batch=1), _video(3, 1, batch=1)], dim=2).repeat(2, 1, 1, 1, 1)
    video[1, :, 1] += 1.0  # frames 0 and 1 now differ in the second item only
    assert frame_runs(video) == [0, 1, 2, 2, 3, 3, 3, 3, 4, 5, 6]
    torch.testing.assert_close(RepeatedFramesConv3d(conv)(video), conv(video), rtol=0, atol=1e-12)


def test_distinct_frames_go_to_the_wrapped_convolution_unchanged():
    conv = _stem()
    video = torch.randn(1, 3, 6, 16, 16, dtype=torch.float64)
    assert torch.equal(RepeatedFramesConv3d(conv)(video), conv(video))


def test_i3d_stem_does_42_percent_of_the_multiply_adds(monkeypatch):
    # Count the 2-D convolutions' multiply-adds on the paper's forged video (6 frames x 3).
    calls = []
    original = torch.nn.functional.conv2d

    def counting(x, weight, *args, **kwargs):
        calls.append(x.shape[0] * weight.shape[1])  # frames x (runs x channels) per output
        return original(x, weight, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", counting)
    conv = _stem()
    RepeatedFramesConv3d(conv)(_video(6, 3, batch=1, side=16))
    merged = sum(calls)
    assert merged == 114  # input channels x slices, summed over the 18 outputs
    assert round(merged / (18 * 3 * 5), 2) == 0.42
    calls.clear()
    RepeatedFramesConv3d(conv)(_video(1, 18, batch=1, side=16))  # static: 5 window patterns
    assert sum(calls) == 5 * 3  # one run per window: 5 jobs of 3 channels, not 18 x 15


def test_only_an_exact_rewrite_is_accepted():
    with pytest.raises(ValueError, match="time stride 1"):
        RepeatedFramesConv3d(nn.Conv3d(3, 4, 3, stride=2))
    net = nn.Sequential(nn.Conv3d(3, 4, 3, groups=1, dilation=2), nn.Conv3d(4, 4, 3))
    assert distinct_frame_stem(net) == 0 and isinstance(net[0], nn.Conv3d)
    net = nn.Sequential(nn.Conv3d(3, 4, 3), nn.ReLU(), nn.Conv3d(4, 4, 3))
    assert distinct_frame_stem(net) == 1
    assert isinstance(net[0], RepeatedFramesConv3d) and isinstance(net[2], nn.Conv3d)


def test_fast_path_wraps_the_stem_and_keeps_the_features():
    model = presets.conchshell("tiny", level="deep", random_state=0, verbose=0).initialize()
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    video = model.forger_.transform(model.encoder_.transform(images))
    assert frame_runs(video) == [t // 3 for t in range(video.shape[2])]
    fast = optimize(model, precision="float32")
    assert fast.inference_["distinct_frame_stems"] == 1
    wrapped = [m for m in fast.extractor_.module_.modules() if isinstance(m, RepeatedFramesConv3d)]
    assert len(wrapped) == 1
    np.testing.assert_allclose(
        fast.extractor_.transform(video).numpy(),
        model.extractor_.transform(video).numpy(),
        rtol=0,
        atol=1e-5,
    )
