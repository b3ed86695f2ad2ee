"""The image side as a scikit-learn pipeline: images -> encoder -> forged video -> I3D features."""

import warnings

import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from conchshell.image.forging import TemporalForger
from conchshell.image.tcnn import TCNNEncoder
from conchshell.image.vgg import VGGEncoder
from conchshell.video.i3d import I3DExtractor

pytestmark = pytest.mark.filterwarnings("ignore:.*(random|seeded) initialisation:UserWarning")


def _data(n=4):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 224, 224, generator=g), torch.arange(n) % 2


def _tcnn(**params):
    return TCNNEncoder(
        **{"max_epochs": 1, "batch_size": 2, "device": "cpu", "random_state": 0, **params}
    )


def test_tcnn_forger_i3d_pipeline_gives_2048_features():
    images, categories = _data()
    pipe = make_pipeline(
        _tcnn(), TemporalForger(size=32, device="cpu"), I3DExtractor(device="cpu", random_state=0)
    )
    assert pipe.fit(images, categories) is pipe
    assert len(pipe[0].history_) == 1  # the encoder was trained as a classifier
    features = pipe.transform(images[:1])
    assert features.shape == (1, 2048)
    # The same as running the steps by hand.
    by_hand = pipe[2].transform(pipe[1].transform(pipe[0].transform(images[:1])))
    torch.testing.assert_close(features, by_hand)


def test_pipeline_with_default_components_has_paper_shapes():
    pipe = make_pipeline(TCNNEncoder(device="cpu"), TemporalForger(device="cpu"))
    pipe[0].initialize()  # untrained: only the shapes matter here
    video = pipe.transform(torch.randn(1, 3, 224, 224))
    assert video.shape == (1, 3, 18, 224, 224)
    pipe.set_params(tcnnencoder__n_blocks=18)
    pipe[0].initialize()
    assert pipe.transform(torch.randn(1, 3, 224, 224)).shape == (1, 3, 54, 224, 224)


def test_components_swap_with_set_params_and_clone():
    images, categories = _data(2)
    pipe = make_pipeline(
        _tcnn(validation_fraction=0),
        TemporalForger(size=32, device="cpu"),
        I3DExtractor(width=8, device="cpu", random_state=0),
    )
    params = pipe.get_params()
    assert params["tcnnencoder__n_blocks"] == 6
    assert params["temporalforger__repeats"] == 3
    assert params["i3dextractor__width"] == 8
    other = clone(pipe).set_params(temporalforger__repeats=1, i3dextractor__width=4)
    assert other.fit(images, categories).transform(images[:1]).shape == (1, 128)
    assert not hasattr(pipe[0], "module_")  # clone left the original untouched
    # VGG in place of TCNN, and the no-forging baseline.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        vgg = make_pipeline(
            VGGEncoder(arch="vgg11", device="cpu", random_state=0),
            TemporalForger(size=32, device="cpu"),
            I3DExtractor(width=8, device="cpu", random_state=0),
        ).fit(images, categories)
        assert vgg.transform(images[:1]).shape == (1, 256)
        static = make_pipeline(
            TemporalForger(mode="repeat", size=32, device="cpu"),
            I3DExtractor(width=8, device="cpu", random_state=0),
        ).fit(images, categories)
        assert static.transform(images[:1]).shape == (1, 256)


def test_pipeline_input_errors_come_from_the_first_step():
    pipe = make_pipeline(_tcnn(), TemporalForger(device="cpu"), I3DExtractor(width=8))
    with pytest.raises(ValueError, match=r"dimension 2 is 64, expected 224"):
        pipe.fit(torch.randn(2, 3, 64, 64), [0, 1])
