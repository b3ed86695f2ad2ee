"""The shipped small Deep model: its provenance, its files, and a recorded output."""

import hashlib
import json
import warnings

import numpy as np
import pytest

from conchshell.data.build import STANDIN_DIR
from conchshell.demo import PRETRAINED, pretrained_model


def test_provenance_names_the_command_seed_data_and_files():
    prov = json.loads((PRETRAINED / "PROVENANCE.json").read_text())
    assert prov["command"].startswith("conchshell demo --train")
    assert prov["seed"] == 0 and prov["data"]["seed"] == 0
    assert len(prov["data"]["content_hash"]) == 64 and len(prov["commit"]) == 40
    assert prov["generator_history"] and prov["summary"]["music_fraction"] == 1.0
    for name, digest in prov["files"].items():
        assert hashlib.sha256((PRETRAINED / name).read_bytes()).hexdigest() == digest
    assert prov["size_mb"] <= 40.0


def test_the_shipped_model_plays_its_recorded_clip():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = pretrained_model()
    photo = str(STANDIN_DIR / "images" / "ocean" / "ocean001.jpg")
    clip = model.predict([photo], seed=0)[0]
    assert clip.shape == (128000,)
    # Recorded when the model shipped (scripts/ship_model.py); the encoder hears "city" (5).
    assert model.predict_categories([photo]).tolist() == [5]
    assert float(np.sqrt((clip**2).mean())) == pytest.approx(0.2385009, rel=1e-3)
    np.testing.assert_allclose(
        clip[::20000],
        [-0.00195, -0.276883, -0.1707884, 0.3232764, 0.3667252, -0.0295303, 0.1350414],
        atol=2e-3,
    )


def test_the_shipped_model_is_a_mosaic_on_the_earlier_models_components():
    prov = json.loads((PRETRAINED / "PROVENANCE.json").read_text())
    assert "--reuse conchshell/pretrained/small-deep" in prov["command"]
    earlier = prov["reused"]["provenance"]
    # The encoder, extractor and codec were trained by the earlier shipped model's command.
    assert earlier["command"].startswith("conchshell demo --train --minutes 80")
    assert earlier["data"] == prov["data"]
    assert prov["summary"]["preset"] == "mosaic" and prov["summary"]["relevance_accuracy"] >= 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = pretrained_model()
    record = model.generator_.history_[0]
    assert type(model.generator_).__name__ == "MosaicGenerator"
    assert record["n_sources"] == 120 and record["n_vectors"] <= model.codec_.l_bins
