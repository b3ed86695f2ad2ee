"""Presets: each baseline is the same estimator with other component settings."""

import numpy as np
import pytest
from sklearn.base import clone

from conchshell import presets
from conchshell.datasets import make_toy_dataset
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


@pytest.mark.parametrize("scale", ["paper", "cpu", "tiny"])
@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("baseline_1", {"level": "high"}),
        ("baseline_2", {"level": "low"}),
        ("baseline_3", {"encoder__n_blocks": 18}),
        ("vgg_baseline", {"encoder": VGGEncoder(), "forger__mode": "static"}),
    ],
)
def test_each_baseline_is_conchshell_with_other_params(scale, name, changes):
    model = presets.conchshell(scale)
    model.set_params(**{k: clone(v) if hasattr(v, "get_params") else v for k, v in changes.items()})
    assert _plain(model.get_params(deep=False)) == _plain(
        presets.get(name, scale).get_params(deep=False)
    )


def test_presets_are_unfitted_and_named():
    for name in presets.PRESETS:
        model = presets.get(name, "tiny")
        assert not hasattr(model, "generator_")
    with pytest.raises(ValueError, match="unknown preset 'baseline_9'"):
        presets.get("baseline_9")
    with pytest.raises(ValueError, match="scale must be one of"):
        presets.conchshell("huge")


@pytest.mark.filterwarnings("ignore:.*has no weights.*:UserWarning")
@pytest.mark.filterwarnings("ignore:.*random initiali[sz]ation.*:UserWarning")
def test_vgg_baseline_fits_and_predicts_at_tiny_scale():
    data = make_toy_dataset(n_per_category=1, n_categories=6, n_samples=16000, random_state=0)
    model = presets.vgg_baseline("tiny", level="high", random_state=0, verbose=0).fit(data)
    assert model.category_model_ is not None  # VGG cannot classify: features do
    clips = model.predict(data.stack_images()[:2])
    assert clips.shape == (2, 16000) and np.isfinite(clips).all()
