"""Presets: each baseline is the same estimator with other component settings.

Presets and sized components share one vocabulary: ``size`` in ("paper", "small", "tiny").
"""

import numpy as np
import pytest
from sklearn.base import clone

from conchshell import presets
from conchshell.base import SIZES
from conchshell.cli import build_parser
from conchshell.codec.jukebox import JukeboxCodec
from conchshell.datasets import make_toy_dataset
from conchshell.gan.discriminator import MultiScaleDiscriminator
from conchshell.gan.generator import Generator
from conchshell.image.vgg import VGGEncoder


def _plain(params):
    """Parameters with component objects replaced by their class and settings."""
    out = {}
    for key, value in params.items():
        if hasattr(value, "get_params"):
            out[key] = (type(value).__name__, _plain(value.get_params(deep=False)))
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("baseline_1", {"level": "high"}),
        ("baseline_2", {"level": "low"}),
        ("baseline_3", {"encoder__n_blocks": 18}),
        ("vgg_baseline", {"encoder": VGGEncoder(), "forger__mode": "static"}),
    ],
)
def test_each_baseline_is_conchshell_with_other_params(size, name, changes):
    model = presets.conchshell(size)
    model.set_params(**{k: clone(v) if hasattr(v, "get_params") else v for k, v in changes.items()})
    assert _plain(model.get_params(deep=False)) == _plain(
        presets.get(name, size).get_params(deep=False)
    )


def test_presets_are_unfitted_and_named():
    for name in presets.PRESETS:
        model = presets.get(name, "tiny")
        assert not hasattr(model, "generator_")
    with pytest.raises(ValueError, match="unknown preset 'baseline_9'"):
        presets.get("baseline_9")
    with pytest.raises(ValueError, match="size must be one of"):
        presets.conchshell("huge")


@pytest.mark.parametrize("size", SIZES)
def test_presets_use_the_sized_components(size):
    params = presets.conchshell(size).get_params(deep=False)
    tiny_codec = {"downs_t": (3, 2, 2), "max_steps": 2} if size == "tiny" else {}
    # The paper size keeps the paper's generator; the CPU sizes add issue 19's recipe.
    recipe = {
        "paper": {},
        "small": {"noise_dim": 32, "n_candidates": 8, "search_frames": 2000},
        "tiny": {"noise_dim": 4, "n_candidates": 2},
    }[size]
    if recipe:
        recipe.update(init_std="he", feature_scaling=True, lr=3e-4)
    expected = {
        "codec": JukeboxCodec.sized(size, **tiny_codec),
        "discriminator": MultiScaleDiscriminator.sized(size),
        "generator": Generator.sized(
            size, level=None, in_features=None, n_categories=None, emb_width=None, **recipe
        ),
    }
    for slot, component in expected.items():
        assert _plain(params[slot].get_params(deep=False)) == _plain(component.get_params())
    assert params["generator"].size == size


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_scale_and_cpu_stay_aliases_of_size_and_small(name):
    small = _plain(presets.get(name, "small").get_params(deep=False))
    assert _plain(presets.get(name, "cpu").get_params(deep=False)) == small
    assert _plain(presets.get(name, scale="cpu").get_params(deep=False)) == small
    assert _plain(presets.PRESETS[name](scale="cpu").get_params(deep=False)) == small
    with pytest.raises(TypeError, match="not both"):
        presets.get(name, "tiny", scale="small")


def test_component_aliases():
    assert JukeboxCodec.paper().get_params() == JukeboxCodec.sized("paper").get_params()
    assert JukeboxCodec.paper().get_params() == JukeboxCodec().get_params()
    for size in ("small", "tiny"):
        alias = getattr(JukeboxCodec, size)(random_state=1)
        assert alias.get_params() == JukeboxCodec.sized(size, random_state=1).get_params()
    assert (
        MultiScaleDiscriminator.small(ndf=8).get_params()
        == MultiScaleDiscriminator.sized("small", ndf=8).get_params()
    )
    assert MultiScaleDiscriminator.sized("paper").get_params() == (
        MultiScaleDiscriminator().get_params()
    )
    with pytest.warns(FutureWarning, match=r'sized\("tiny"\)'):
        tiny = MultiScaleDiscriminator.tiny()
    assert tiny.get_params() == MultiScaleDiscriminator.sized("tiny").get_params()
    assert Generator.sized("small", level="high").get_params() == (
        Generator("high", size="small").get_params()
    )
    for sized in (JukeboxCodec.sized, MultiScaleDiscriminator.sized, Generator.sized):
        with pytest.raises(ValueError, match="size must be one of"):
            sized("cpu")  # the presets' old name is not a component size


def test_cli_size_and_its_scale_alias():
    parser = build_parser()
    fit = ["fit", "--data", "d", "--out", "o"]
    assert parser.parse_args(fit).size == "small"
    assert parser.parse_args([*fit, "--size", "tiny"]).size == "tiny"
    assert parser.parse_args([*fit, "--scale", "cpu"]).size == "small"
    assert parser.parse_args(["report", "table1", "--scale", "paper"]).size == "paper"
    assert parser.parse_args(["demo", "--scale", "cpu"]).size == "small"
    with pytest.raises(SystemExit):
        parser.parse_args([*fit, "--size", "huge"])


@pytest.mark.filterwarnings("ignore:.*has no weights.*:UserWarning")
@pytest.mark.filterwarnings("ignore:.*random initiali[sz]ation.*:UserWarning")
def test_vgg_baseline_fits_and_predicts_at_tiny_size():
    data = make_toy_dataset(n_per_category=1, n_categories=6, n_samples=16000, random_state=0)
    model = presets.vgg_baseline("tiny", level="high", random_state=0, verbose=0).fit(data)
    assert model.category_model_ is not None  # VGG cannot classify: features do
    clips = model.predict(data.stack_images()[:2])
    assert clips.shape == (2, 16000) and np.isfinite(clips).all()
