"""The main job end to end at the tiny size: dataset, training, gallery, summary."""

import json

import pytest
import torch

from conchshell.demo import pretrained_model, run_demo


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:I3DExtractor has no weights:UserWarning")
def test_demo_writes_a_gallery(tmp_path, capsys):
    # The tiny size has no shipped model: the demo trains it (the mosaic preset, as shipped).
    index = run_demo(
        tmp_path / "data",
        tmp_path / "out",
        minutes=0.5,
        size="tiny",
        settings={"generator__continue_prob": 0.8},
    )
    gallery = tmp_path / "out" / "gallery"
    assert index == gallery / "index.html"
    page = index.read_text()
    wavs = sorted(p for p in gallery.glob("*.wav") if not p.name.endswith(".real.wav"))
    # Each of the 21 distinct val photos once, beside the real clip paired with it.
    assert len(wavs) == 21
    assert page.count("<figure>") == 21
    assert page.count("band flatness 0.") == 21 and page.count(", real 0.") == 21
    for wav in wavs:
        assert wav.with_suffix(".png").is_file()
        assert (gallery / f"{wav.stem}.spec.png").is_file()
        assert (gallery / f"{wav.stem}.real.wav").is_file()
    assert not any("-1" in w.stem.split("-", 1)[1] for w in wavs)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for key in (
        "music_fraction",
        "real_music_fraction",
        "relevance_accuracy",
        "relevance_accuracy_end_to_end",
        "codec_ceiling_relevance",
        "descriptor_agreement",
        "variety_ratio",
        "near_copy_fraction",
        "image_accuracy",
    ):
        assert 0.0 <= summary[key] <= 1.0 or key == "variety_ratio", key
    assert summary["val_images"] == 63 and summary["val_photos"] == 21
    notes = summary["notes_by_category"]
    assert (
        set(notes["generated"])
        == set(notes["real"])
        == {"ocean", "forest", "mountain", "night_sky", "sunset", "city"}
    )
    assert notes["real"]["ocean"]["n_clips"] == 12
    assert summary["trained_here"] is True and summary["gan_steps"] == 0
    assert summary["preset"] == "mosaic" and summary["reused"] is None
    assert summary["settings"] == {"generator__continue_prob": 0.8}
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
    assert "[demo] relevance_accuracy" in capsys.readouterr().out

    # --reuse: another generator fitted on this model's encoder, extractor and codec.
    from conchshell.demo import _train

    first = pretrained_model(tmp_path / "out" / "model")
    again = _train(
        tmp_path / "data", tmp_path / "again", "tiny", 1, 0.2, "mosaic", tmp_path / "out" / "model"
    )
    for name in ("encoder_", "extractor_", "codec_"):
        mine, theirs = (
            getattr(again, name).module_.state_dict(),
            getattr(first, name).module_.state_dict(),
        )
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), name
    assert again.generator_.random_state != first.generator_.random_state


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:I3DExtractor has no weights:UserWarning")
def test_demo_trains_another_preset(tmp_path):
    run_demo(
        tmp_path / "data",
        tmp_path / "out",
        minutes=0.3,
        size="tiny",
        preset="conchshell",
        settings={"generator__guidance": 2.0},
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["preset"] == "conchshell" and summary["gan_steps"] >= 1
    assert summary["settings"] == {"generator__guidance": 2.0}


def test_demo_refuses_a_missing_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="conchshell demo --train"):
        pretrained_model(tmp_path)


def test_demo_checks_its_settings_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="bogus"):
        run_demo(tmp_path / "data", tmp_path / "out", size="tiny", settings={"bogus": 1})
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()


def test_demo_refuses_a_setting_a_fitted_model_cannot_take(tmp_path):
    with pytest.raises(ValueError, match="generator__n_frames cannot change on a fitted"):
        run_demo(tmp_path / "d", tmp_path / "o", size="tiny", settings={"generator__n_frames": 2})
    with pytest.raises(ValueError, match="generator__noise_dim cannot change on a fitted"):
        run_demo(
            tmp_path / "d",
            tmp_path / "o",
            size="tiny",
            preset="conchshell",
            settings={"generator__noise_dim": 2},
        )
    assert not (tmp_path / "d").exists()


def test_demo_checks_its_preset_and_reuse_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'gan'; choose one of"):
        run_demo(tmp_path / "d", tmp_path / "o", size="tiny", preset="gan")
    with pytest.raises(ValueError, match="pass train=True too"):
        run_demo(tmp_path / "d", tmp_path / "o", reuse=tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no model"):
        run_demo(tmp_path / "d", tmp_path / "o", size="tiny", reuse=tmp_path / "nowhere")
    assert not (tmp_path / "d").exists() and not (tmp_path / "o").exists()
