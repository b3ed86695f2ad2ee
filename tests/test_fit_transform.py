"""fit_transform: every component that transforms fits and transforms the same input in one call.

Each equals ``fit(...).transform(...)`` of a twin with the same seed, exactly, and returns the
shape its ``transform`` documents.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import TransformerMixin, clone
from sklearn.pipeline import make_pipeline

from conchshell.codec.jukebox import JukeboxCodec
from conchshell.evaluation.descriptors import DescriptorProfile
from conchshell.evaluation.relevance import RelevanceClassifier
from conchshell.gan.generator import Generator
from conchshell.image.forging import TemporalForger
from conchshell.image.tcnn import TCNNEncoder
from conchshell.image.vgg import VGGEncoder
from conchshell.video.i3d import I3DExtractor

pytestmark = pytest.mark.filterwarnings("ignore:.*(random|seeded) initiali[sz]ation:UserWarning")

TRANSFORMERS = [
    TCNNEncoder,
    VGGEncoder,
    TemporalForger,
    I3DExtractor,
    JukeboxCodec,
    Generator,
    DescriptorProfile,
    RelevanceClassifier,
]


def _same(a, b):
    """Exact equality of tensors, arrays or lists of them."""
    if isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        np.testing.assert_array_equal(a, b)


def _shapes(maps):
    return [tuple(m.shape) for m in maps]


@pytest.mark.parametrize("cls", TRANSFORMERS, ids=lambda c: c.__name__)
def test_every_transforming_component_is_a_transformer(cls):
    assert issubclass(cls, TransformerMixin)
    assert callable(cls.fit_transform)


def test_tcnn_fit_transform_needs_categories_and_matches_fit_then_transform():
    encoder = TCNNEncoder(
        max_epochs=1, validation_fraction=0.0, batch_size=4, device="cpu", random_state=0
    )
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 224, 224, generator=g)
    categories = [0, 1, 0, 1]
    maps = clone(encoder).fit_transform(images, categories)
    _same(maps, clone(encoder).fit(images, categories).transform(images))
    assert _shapes(maps) == [
        (4, 16, 224, 224),
        (4, 32, 112, 112),
        (4, 64, 56, 56),
        (4, 128, 28, 28),
        (4, 256, 14, 14),
        (4, 128, 7, 7),
    ]
    # groups reach fit, as in fit(images, categories, groups=...)
    grouped = clone(encoder).fit_transform(images, categories, groups=[0, 1, 2, 3])
    _same(grouped, clone(encoder).fit(images, categories, groups=[0, 1, 2, 3]).transform(images))
    with pytest.raises(TypeError, match="categories"):
        clone(encoder).fit_transform(images)


def test_vgg_fit_transform():
    encoder = VGGEncoder(arch="vgg11", device="cpu", random_state=0)
    images = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        maps = clone(encoder).fit_transform(images)
        expected = clone(encoder).fit().transform(images)
    _same(maps, expected)
    assert _shapes(maps) == [
        (2, 64, 32, 32),
        (2, 128, 16, 16),
        (2, 256, 8, 8),
        (2, 512, 4, 4),
        (2, 512, 2, 2),
    ]


def test_forger_fit_transform():
    forger = TemporalForger(size=32, device="cpu")
    maps = [torch.rand(2, 4, 8, 8), torch.rand(2, 6, 4, 4)]
    video = clone(forger).fit_transform(maps)
    _same(video, clone(forger).fit().transform(maps))
    assert video.shape == (2, 3, 3 * len(maps), 32, 32)  # repeats=3 frames per map


def test_i3d_fit_transform():
    extractor = I3DExtractor(width=8, device="cpu", random_state=0)
    video = torch.randn(2, 3, 4, 32, 32)
    features = clone(extractor).fit_transform(video)
    _same(features, clone(extractor).fit().transform(video))
    assert features.shape == (2, 32 * 8)


def test_image_side_pipeline_uses_fit_transform():
    # A scikit-learn Pipeline fits each step with fit_transform.
    pipe = make_pipeline(
        TemporalForger(size=32, device="cpu"), I3DExtractor(width=8, device="cpu", random_state=0)
    )
    maps = [torch.rand(2, 4, 8, 8), torch.rand(2, 6, 4, 4)]
    features = pipe.fit_transform(maps)
    assert features.shape == (2, 256)
    _same(features, pipe.transform(maps))


def test_codec_fit_transform_passes_level_to_transform():
    codec = JukeboxCodec.sized("tiny", max_steps=2, device="cpu", random_state=0)
    t = torch.arange(2048) / 16000.0
    audio = torch.stack([torch.sin(2 * torch.pi * f * t) for f in (220.0, 330.0)]) * 0.5
    for level in ("deep", "high"):
        latents = clone(codec).fit_transform(audio, level=level)
        _same(latents, clone(codec).fit(audio).transform(audio, level=level))
        expected = (2, codec.emb_width, codec.latent_length(2048, level))
        assert latents.shape == expected
    assert clone(codec).fit_transform(audio).shape == (2, 16, 1024)  # default level: deep
    with pytest.raises(TypeError, match="audio array"):
        clone(codec).fit_transform(object())


def test_generator_fit_transform_takes_fits_arguments():
    generator = Generator(
        "deep",
        in_features=12,
        emb_width=5,
        n_frames=24,
        size="tiny",
        max_epochs=2,
        batch_size=4,
        device="cpu",
        random_state=0,
    )
    rng = np.random.RandomState(0)
    features = rng.randn(6, 12).astype(np.float32)
    latents = rng.randn(6, 5, 24).astype(np.float32)
    categories = rng.randint(0, 6, 6)
    out = clone(generator).fit_transform(features, latents, categories)
    expected = clone(generator).fit(features, latents, categories).transform(features, categories)
    _same(out, expected)
    assert out.shape == (6, 5, 24)


def test_descriptor_profile_fit_transform():
    d = np.array([[90, 60, -20, 0.3], [92, 61, -21, 0.2], [140, 72, -12, -0.3], [138, 71, -13, 0]])
    out = DescriptorProfile(precomputed=True).fit_transform(d, [0, 0, 1, 1])
    _same(out, DescriptorProfile(precomputed=True).fit(d, [0, 0, 1, 1]).transform(d))
    assert out.shape == (4, 4) and out.dtype == np.float64


def test_relevance_classifier_fit_transform():
    t = np.arange(8000) / 16000.0
    clips = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in (220, 247, 880, 988)])
    y = [0, 0, 1, 1]
    clf = RelevanceClassifier(features=("chroma",))
    out = clone(clf).fit_transform(clips, y)
    fitted = clone(clf).fit(clips, y)
    _same(out, fitted.transform(clips))
    assert out.shape == (4, fitted.n_features_)
