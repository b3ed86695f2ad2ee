"""The main job end to end at the tiny size: dataset, training, gallery, summary."""

import json

import pytest

from conchshell.demo import run_demo


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:I3DExtractor has no weights:UserWarning")
def test_demo_writes_a_gallery(tmp_path, capsys):
    index = run_demo(tmp_path / "data", tmp_path / "out", minutes=0.5, size="tiny")
    gallery = tmp_path / "out" / "gallery"
    assert index == gallery / "index.html"
    page = index.read_text()
    wavs = sorted(gallery.glob("*.wav"))
    assert len(wavs) == 63  # every val image of the stand-in dataset
    assert page.count("<figure>") == 63
    for wav in wavs:
        assert wav.with_suffix(".png").is_file()
        assert (gallery / f"{wav.stem}.spec.png").is_file()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for key in ("relevance_accuracy", "descriptor_agreement", "pesq_wb", "stoi", "gan_steps"):
        assert key in summary
    assert summary["gan_steps"] >= 1
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
    assert "[demo] relevance_accuracy" in capsys.readouterr().out
