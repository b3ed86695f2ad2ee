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
    assert float(np.sqrt((clip**2).mean())) == pytest.approx(0.1059211, rel=1e-3)
    np.testing.assert_allclose(
        clip[::20000],
        [-0.0039757, -0.0140171, -0.0694256, 0.0064072, -0.0282642, 0.033702, -0.0957891],
        atol=2e-3,
    )
